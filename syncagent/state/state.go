// Package state is the agent's durable memory, one SQLite database (pure Go) under the
// state dir: the synced tree (the merge base), the remote tree as the changes feed
// described it, the local index cache (stat key → content hash and blocks, so a file is
// re-hashed only when it changed) and the feed's cursor and folder id.
//
// Crash safety: WAL with synchronous=NORMAL. A crash may lose the last transactions but
// never tears one, and losing them is safe: the executor records state only after the
// effect on disk or server, so an older merge base makes the next plan see both sides
// equal (a record) or re-check them, never lose content.
package state

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// FileName is the database's name inside the state dir.
const FileName = "state.db"

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS synced (
  path TEXT PRIMARY KEY, type TEXT NOT NULL, sha256 TEXT NOT NULL, target TEXT NOT NULL,
  mode INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS remote (
  path TEXT PRIMARY KEY, type TEXT NOT NULL, sha256 TEXT NOT NULL, target TEXT NOT NULL,
  mode INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, seq INTEGER NOT NULL,
  blocks BLOB);
CREATE TABLE IF NOT EXISTS local (
  path TEXT PRIMARY KEY, type TEXT NOT NULL, sha256 TEXT NOT NULL, target TEXT NOT NULL,
  mode INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL, ino INTEGER NOT NULL,
  blocks BLOB, fast BLOB);
CREATE TABLE IF NOT EXISTS blockloc (hash TEXT NOT NULL, path TEXT NOT NULL, off INTEGER NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS blockloc_hash ON blockloc (hash);
CREATE INDEX IF NOT EXISTS blockloc_path ON blockloc (path);
CREATE INDEX IF NOT EXISTS local_sha256 ON local (sha256);
`

// The blockloc table lists where each block of a file of several blocks sits. A file of
// one block is not listed there: its block is its whole content, whose hash is the
// file's own (the local table's sha256, indexed), so FindBlock finds it in the local
// table. That spares three B-tree writes per small file; rows that earlier agents wrote
// for such files stay valid.

// DB is the open state database. Its methods are safe for concurrent use, but the agent
// writes from one goroutine.
type DB struct {
	db  *sql.DB
	dir string // the state dir, which holds the snapshot file

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // prepared once per query text; see prepared

	// armed says that the snapshot's triggers may be in the database (Open and
	// SaveSnapshot create them); the next transaction that writes the trees' tables
	// drops them with the snapshot row (see snapshot.go).
	armed atomic.Bool
}

// prepared returns the statement of q, prepared on first use. The pure-Go SQLite driver
// would otherwise parse and plan the SQL text on every call: that was over half of an
// agent's CPU while it recorded the first sync of 10,000 small files.
//
// The lock is not held while preparing: that waits for the database's one connection,
// which a transaction may hold while its own statements look up d.stmts (UpdateLater).
func (d *DB) prepared(q string) (*sql.Stmt, error) {
	d.stmtMu.Lock()
	st, ok := d.stmts[q]
	d.stmtMu.Unlock()
	if ok {
		return st, nil
	}
	st, err := d.db.Prepare(q)
	if err != nil {
		return nil, err
	}
	d.stmtMu.Lock()
	defer d.stmtMu.Unlock()
	if prev, ok := d.stmts[q]; ok {
		st.Close() // prepared meanwhile by another caller
		return prev, nil
	}
	if d.stmts == nil {
		d.stmts = map[string]*sql.Stmt{}
	}
	d.stmts[q] = st
	return st, nil
}

// Open opens (creating if needed) the state database in dir.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	dsn := "file:" + filepath.Join(dir, FileName) +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open state db: %w", err)
	}
	// One connection: SQLite serializes writers anyway, and one connection keeps the
	// pragmas and avoids SQLITE_BUSY between our own goroutines.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + snapshotSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("state db schema in %s: %w", dir, err)
	}
	if err := addFastColumn(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("state db schema in %s: %w", dir, err)
	}
	d := &DB{db: db, dir: dir}
	d.armed.Store(true)
	return d, nil
}

// addFastColumn adds the sums column (fast, see encodeSums) to a local table made before it. An older
// agent that writes a row leaves the column empty (INSERT OR REPLACE), so the sums never
// describe another list than the row's.
func addFastColumn(db *sql.DB) error {
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('local') WHERE name = 'fast'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := db.Exec(`ALTER TABLE local ADD COLUMN fast BLOB`)
	return err
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Meta returns a meta value ("" when unset).
func (d *DB) Meta(key string) (string, error) {
	var v string
	err := d.db.QueryRow(`SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read meta %q: %w", key, err)
	}
	return v, nil
}

// Cursor returns the changes feed's folder id and cursor.
func (d *DB) Cursor() (folderID string, since int64, err error) {
	if folderID, err = d.Meta("folderId"); err != nil {
		return "", 0, err
	}
	s, err := d.Meta("cursor")
	if err != nil || s == "" {
		return folderID, 0, err
	}
	since, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("state cursor %q: %w", s, err)
	}
	return folderID, since, nil
}

// Trees loads the synced and remote trees and the index cache: from the snapshot when a
// valid one is stored (see snapshot.go), else from the rows. The store's Local tree is
// left empty.
func (d *DB) Trees() (*trees.Trees, error) {
	t, _, err := d.TreesQuiet()
	return t, err
}

// TreesQuiet is Trees that also reports whether the trees, with the index cache's nodes
// as the Local tree, are quiet (plan.Quiet: nothing to plan): known when they come from
// a snapshot, which checks it while decoding; false when the rows were read.
func (d *DB) TreesQuiet() (t *trees.Trees, quiet bool, err error) {
	if t, quiet, ok := d.loadSnapshotQuiet(); ok {
		return t, quiet, nil
	}
	t, err = loadRows(d.db)
	return t, false, err
}

// loadRows loads the trees from the rows of the tables.
func loadRows(db queryer) (*trees.Trees, error) {
	// Sized up front: a map grown one doubling at a time allocates about twice its
	// final size on the way, and a large folder's trees are most of the agent's memory.
	var counts [3]int
	for i, t := range []string{"synced", "remote", "local"} {
		if err := db.QueryRow(`SELECT COUNT(*) FROM ` + t).Scan(&counts[i]); err != nil {
			return nil, fmt.Errorf("count %s rows: %w", t, err)
		}
	}
	t := trees.New(max(counts[0], counts[1], counts[2]))
	load := func(q string, fn func(*sql.Rows) error) error {
		rows, err := db.Query(q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := fn(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	// The three tables repeat each path: one string per distinct value. Hashes are not
	// interned: the store keeps them as bytes.
	in := make(interner, max(counts[0], counts[1], counts[2]))
	var p, typ, sha, target sql.RawBytes
	scanNode := func(tree trees.Side) func(*sql.Rows) error {
		return func(r *sql.Rows) error {
			var n plan.Node
			if err := r.Scan(&p, &typ, &sha, &target, &n.Mode, &n.Size, &n.MTimeNs, &n.Seq); err != nil {
				return err
			}
			h, err := plan.ParseHash(string(sha))
			if err != nil {
				return fmt.Errorf("path %q: %w", p, err)
			}
			n.Type, n.SHA256, n.Target = proto.EntryType(in.get(typ)), h, in.get(target)
			tree.Set(in.get(p), n)
			return nil
		}
	}
	if err := load(`SELECT path, type, sha256, target, mode, size, mtime, seq FROM synced`, scanNode(t.Synced)); err != nil {
		return nil, fmt.Errorf("load synced tree: %w", err)
	}
	if err := load(`SELECT path, type, sha256, target, mode, size, mtime, seq FROM remote`, scanNode(t.Remote)); err != nil {
		return nil, fmt.Errorf("load remote tree: %w", err)
	}
	err := load(`SELECT path, type, sha256, target, mode, size, mtime, ino FROM local`, func(r *sql.Rows) error {
		var e trees.IndexEntry
		var ino int64
		if err := r.Scan(&p, &typ, &sha, &target, &e.Mode, &e.Size, &e.MTimeNs, &ino); err != nil {
			return err
		}
		h, err := plan.ParseHash(string(sha))
		if err != nil {
			return fmt.Errorf("path %q: %w", p, err)
		}
		e.Type, e.SHA256, e.Target = proto.EntryType(in.get(typ)), h, in.get(target)
		e.Ino = uint64(ino)
		t.Index.Set(in.get(p), e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load index cache: %w", err)
	}
	return t, nil
}

// interner hands out one string per distinct value.
type interner map[string]string

func (in interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}

// RemoteBlocks returns the block list of the remote entry of path.
func (d *DB) RemoteBlocks(path string) ([]proto.Block, error) {
	return d.blocks(`SELECT blocks FROM remote WHERE path = ?`, path)
}

// RemoteVersion returns the seq and block list of the server's entry of path that the
// state records; seq 0 when there is none, a nil list when the feed left it out.
func (d *DB) RemoteVersion(path string) (int64, []proto.Block, error) {
	st, err := d.prepared(`SELECT seq, blocks FROM remote WHERE path = ?`)
	if err != nil {
		return 0, nil, fmt.Errorf("read remote %q: %w", path, err)
	}
	var seq int64
	var raw []byte
	err = st.QueryRow(path).Scan(&seq, &raw)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read remote %q: %w", path, err)
	}
	blocks, err := decodeBlocks(raw)
	if err != nil {
		return 0, nil, err
	}
	return seq, blocks, nil
}

// LocalBlockSums returns the block list the index cache holds for path and the sums
// kept with it (empty when the index has none).
func (d *DB) LocalBlockSums(path string) ([]proto.Block, chunk.Sums, error) {
	st, err := d.prepared(`SELECT blocks, fast FROM local WHERE path = ?`)
	if err != nil {
		return nil, chunk.Sums{}, fmt.Errorf("read blocks of %q: %w", path, err)
	}
	var raw, sums []byte
	err = st.QueryRow(path).Scan(&raw, &sums)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, chunk.Sums{}, nil
	}
	if err != nil {
		return nil, chunk.Sums{}, fmt.Errorf("read blocks of %q: %w", path, err)
	}
	blocks, err := decodeBlocks(raw)
	if err != nil {
		return nil, chunk.Sums{}, err
	}
	return blocks, decodeSums(sums, len(blocks)), nil
}

// LocalBlocks returns the block list the index cache holds for path.
func (d *DB) LocalBlocks(path string) ([]proto.Block, error) {
	return d.blocks(`SELECT blocks FROM local WHERE path = ?`, path)
}

func (d *DB) blocks(q, path string) ([]proto.Block, error) {
	st, err := d.prepared(q)
	if err != nil {
		return nil, fmt.Errorf("read blocks of %q: %w", path, err)
	}
	var raw []byte
	err = st.QueryRow(path).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read blocks of %q: %w", path, err)
	}
	return decodeBlocks(raw)
}

// BlockLocation is where a block's bytes were last seen on disk.
type BlockLocation struct {
	Path   string
	Offset int64
	Size   int64
}

// FindBlock returns up to 4 local places that held the block hash when last indexed:
// blocks of files of several blocks, and whole files whose content is the block.
func (d *DB) FindBlock(hash string) ([]BlockLocation, error) {
	st, err := d.prepared(`SELECT path, off, size FROM blockloc WHERE hash = ?1
		UNION SELECT path, 0, size FROM local WHERE sha256 = ?1 AND type = 'file' AND size > 0 LIMIT 4`)
	if err != nil {
		return nil, fmt.Errorf("find block %s: %w", hash, err)
	}
	rows, err := st.Query(hash)
	if err != nil {
		return nil, fmt.Errorf("find block %s: %w", hash, err)
	}
	defer rows.Close()
	var out []BlockLocation
	for rows.Next() {
		var l BlockLocation
		if err := rows.Scan(&l.Path, &l.Offset, &l.Size); err != nil {
			return nil, fmt.Errorf("find block %s: %w", hash, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Update runs fn in one transaction. The transaction ignores ctx's cancellation: the
// caller records effects that already happened (on disk, on the server), so a shutdown
// must not drop the record halfway through a batch.
func (d *DB) Update(ctx context.Context, fn func(tx *Tx) error) error {
	sqlTx, err := d.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return fmt.Errorf("begin state transaction: %w", err)
	}
	return d.finish(sqlTx, fn)
}

// UpdateLater runs fn in one transaction like Update, but in the background: the
// transaction is begun before UpdateLater returns, so that every later use of the
// database (which has one connection) waits for it and sees its writes; wait returns
// its outcome. For writes the caller need not wait for, such as an index the agent
// already holds in memory.
func (d *DB) UpdateLater(ctx context.Context, fn func(tx *Tx) error) (wait func() error) {
	sqlTx, err := d.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		err = fmt.Errorf("begin state transaction: %w", err)
		return func() error { return err }
	}
	done := make(chan error, 1)
	go func() { done <- d.finish(sqlTx, fn) }()
	var once sync.Once
	var result error
	return func() error {
		once.Do(func() { result = <-done })
		return result
	}
}

// finish runs fn in the begun transaction and commits it.
func (d *DB) finish(sqlTx *sql.Tx, fn func(tx *Tx) error) error {
	tx := &Tx{tx: &stmtTx{db: d, tx: sqlTx}}
	err := fn(tx)
	if err == nil {
		err = tx.tx.writeQueued()
	}
	if err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit state transaction: %w", err)
	}
	if tx.tx.disarmed {
		d.armed.Store(false)
	}
	for _, q := range tx.tx.fresh {
		// The connection is free again: later transactions reuse the statement. A
		// failure only means it is prepared again next time.
		_, _ = d.prepared(q)
	}
	return nil
}

// Tx is one state transaction.
type Tx struct {
	tx *stmtTx
}

// stmtTx runs a transaction's statements through the database's prepared ones.
type stmtTx struct {
	db    *DB
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // the transaction's handles of db's statements
	fresh []string             // queries the database had not prepared yet
	// queued are the rows the Put methods left for multi-row statements (rows.go), and
	// writing is set while they are written.
	queued  [queueCount]queuedRows
	writing bool
	// disarmed: the transaction dropped the snapshot and its triggers (exec).
	disarmed bool
}

// Exec runs q with args in the transaction, after the queued rows.
func (t *stmtTx) Exec(q string, args ...any) (sql.Result, error) {
	if err := t.writeQueued(); err != nil {
		return nil, err
	}
	return t.exec(q, args...)
}

// exec runs q with args in the transaction. A statement other than a meta value's,
// while the snapshot's triggers may be there, first drops them with the snapshot.
func (t *stmtTx) exec(q string, args ...any) (sql.Result, error) {
	if !t.disarmed && q != setMetaSQL && t.db.armed.Load() {
		if _, err := t.tx.Exec(disarmSnapshotSQL); err != nil {
			return nil, fmt.Errorf("drop the snapshot: %w", err)
		}
		t.disarmed = true
	}
	st, ok := t.stmts[q]
	if !ok {
		// The database's one connection is this transaction's: a statement the database
		// has not prepared yet is prepared for the transaction only, and for the
		// database once the transaction is over (see DB.Update).
		t.db.stmtMu.Lock()
		p := t.db.stmts[q]
		t.db.stmtMu.Unlock()
		var err error
		if p != nil {
			st = t.tx.Stmt(p)
		} else if st, err = t.tx.Prepare(q); err != nil {
			return nil, err
		} else {
			t.fresh = append(t.fresh, q)
		}
		if t.stmts == nil {
			t.stmts = map[string]*sql.Stmt{}
		}
		t.stmts[q] = st
	}
	return st.Exec(args...)
}

// The rows the Put methods write, after INSERT and its conflict clause (constants, so
// that each statement's text is made once, at compile time).
const (
	syncedInto = `synced (path, type, sha256, target, mode, size, mtime, seq)`
	remoteInto = `remote (path, type, sha256, target, mode, size, mtime, seq, blocks)`
	localInto  = `local (path, type, sha256, target, mode, size, mtime, ino, blocks, fast)`
	syncedRow  = syncedInto + ` VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	remoteRow  = remoteInto + ` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	localRow   = localInto + ` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// insertNew runs insert, an INSERT OR IGNORE, and reports whether it added the row.
func (t *Tx) insertNew(insert string, args ...any) (bool, error) {
	res, err := t.tx.Exec(insert, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// put writes a row with insert, an INSERT OR IGNORE, and when the row was there already
// with replace, the same row's INSERT OR REPLACE; it reports whether the row is new.
//
// Most rows of a first sync are new, and a plain insert is the cheaper statement: a
// REPLACE into a table with more than one index keeps a statement journal, because it
// deletes the old row before it may still fail; that journal and the search for a row
// to replace were a quarter of BenchmarkRecordFiles.
func (t *Tx) put(insert, replace string, args ...any) (bool, error) {
	inserted, err := t.insertNew(insert, args...)
	if err != nil || inserted {
		return inserted, err
	}
	_, err = t.tx.Exec(replace, args...)
	return false, err
}

// setMetaSQL sets a meta value, which is not part of the trees (nor of the snapshot).
const setMetaSQL = `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`

// SetMeta sets a meta value.
func (t *Tx) SetMeta(key, value string) error {
	_, err := t.tx.Exec(setMetaSQL, key, value)
	if err != nil {
		return fmt.Errorf("write meta %q: %w", key, err)
	}
	return nil
}

// SetCursor records the changes feed's folder id and cursor.
func (t *Tx) SetCursor(folderID string, since int64) error {
	if err := t.SetMeta("folderId", folderID); err != nil {
		return err
	}
	return t.SetMeta("cursor", strconv.FormatInt(since, 10))
}

// PutSynced sets the merge base of path.
func (t *Tx) PutSynced(path string, n plan.Node) error {
	args := []any{path, string(n.Type), n.SHA256.String(), n.Target, n.Mode, n.Size, n.MTimeNs, n.Seq}
	return t.tx.queueRow(syncedQueue, path, func(t *Tx) error {
		if _, err := t.put(`INSERT OR IGNORE INTO `+syncedRow, `INSERT OR REPLACE INTO `+syncedRow, args...); err != nil {
			return fmt.Errorf("write synced %q: %w", path, err)
		}
		return nil
	}, args...)
}

// DeleteSynced forgets the merge base of path.
func (t *Tx) DeleteSynced(path string) error {
	if _, err := t.tx.Exec(`DELETE FROM synced WHERE path = ?`, path); err != nil {
		return fmt.Errorf("delete synced %q: %w", path, err)
	}
	return nil
}

// PutRemote records the server's live entry e. An entry sent without its block list
// (BlocksOmitted) keeps the list already recorded for the same seq and content, and
// records none otherwise (RemoteBlocks then returns nil).
func (t *Tx) PutRemote(e proto.Entry) error {
	raw, err := encodeBlocks(e.Blocks)
	if err != nil {
		return err
	}
	args := []any{e.Path, string(e.Type), e.SHA256, e.Target, e.Mode, e.Size, e.MTimeNs, e.Seq, raw}
	return t.tx.queueRow(remoteQueue, e.Path, func(t *Tx) error {
		inserted, err := t.insertNew(`INSERT OR IGNORE INTO `+remoteRow, args...)
		if err == nil && !inserted {
			_, err = t.tx.Exec(`INSERT INTO `+remoteRow+`
		ON CONFLICT (path) DO UPDATE SET type = excluded.type, target = excluded.target, mode = excluded.mode,
		  size = excluded.size, mtime = excluded.mtime,
		  blocks = CASE WHEN excluded.blocks IS NULL AND ? AND remote.seq = excluded.seq AND remote.sha256 = excluded.sha256
		    THEN remote.blocks ELSE excluded.blocks END,
		  sha256 = excluded.sha256, seq = excluded.seq`, append(args, e.BlocksOmitted)...)
		}
		if err != nil {
			return fmt.Errorf("write remote %q: %w", e.Path, err)
		}
		return nil
	}, args...)
}

// SetRemoteBlocks records the block list of the remote entry of path when its seq is
// still seq (a list fetched after the feed omitted it).
func (t *Tx) SetRemoteBlocks(path string, seq int64, blocks []proto.Block) error {
	raw, err := encodeBlocks(blocks)
	if err != nil {
		return err
	}
	if _, err := t.tx.Exec(`UPDATE remote SET blocks = ? WHERE path = ? AND seq = ?`, raw, path, seq); err != nil {
		return fmt.Errorf("write remote blocks %q: %w", path, err)
	}
	return nil
}

// DeleteRemote forgets the server's entry of path (a tombstone).
func (t *Tx) DeleteRemote(path string) error {
	if _, err := t.tx.Exec(`DELETE FROM remote WHERE path = ?`, path); err != nil {
		return fmt.Errorf("delete remote %q: %w", path, err)
	}
	return nil
}

// ResetTrees empties the synced and remote trees and the cursor: the server's folder was
// replaced, so neither describes it any more. The index cache stays valid.
func (t *Tx) ResetTrees() error {
	for _, q := range []string{`DELETE FROM synced`, `DELETE FROM remote`, `DELETE FROM meta WHERE key IN ('cursor', 'folderId')`} {
		if _, err := t.tx.Exec(q); err != nil {
			return fmt.Errorf("reset state: %w", err)
		}
	}
	return nil
}

// PutIndex records what hashing path found at stat key e; blocks may be nil for
// non-files, sums empty (its fast sums are kept only when there is one per block).
func (t *Tx) PutIndex(path string, e trees.IndexEntry, blocks []proto.Block, sums chunk.Sums) error {
	raw, err := encodeBlocks(blocks)
	if err != nil {
		return err
	}
	sum := e.SHA256.String()
	args := []any{path, string(e.Type), sum, e.Target, e.Mode, e.Size, e.MTimeNs, int64(e.Ino), raw, encodeSums(sums, len(blocks))}
	put := func(t *Tx) error {
		inserted, err := t.put(`INSERT OR IGNORE INTO `+localRow, `INSERT OR REPLACE INTO `+localRow, args...)
		if err != nil {
			return fmt.Errorf("write index %q: %w", path, err)
		}
		if !inserted {
			if _, err := t.tx.Exec(`DELETE FROM blockloc WHERE path = ?`, path); err != nil {
				return fmt.Errorf("write index %q: %w", path, err)
			}
		}
		return nil
	}
	if len(blocks) == 0 || len(blocks) == 1 && blocks[0].Hash == sum && blocks[0].Size == e.Size {
		// No block is listed in blockloc (its one block is found through the local row):
		// the row can wait for a multi-row statement.
		return t.tx.queueRow(localQueue, path, put, args...)
	}
	if err := put(t); err != nil {
		return err
	}
	var off int64
	seen := map[string]bool{}
	for _, b := range blocks {
		if !seen[b.Hash] {
			seen[b.Hash] = true
			if _, err := t.tx.Exec(`INSERT INTO blockloc (hash, path, off, size) VALUES (?, ?, ?, ?)`, b.Hash, path, off, b.Size); err != nil {
				return fmt.Errorf("write index %q: %w", path, err)
			}
		}
		off += b.Size
	}
	return nil
}

// ForgetSums drops the sums the index holds for path's blocks: the next rehash of the
// file checks each block it finds again by its SHA-256, and hashes all of its bytes.
func (t *Tx) ForgetSums(path string) error {
	if _, err := t.tx.Exec(`UPDATE local SET fast = NULL WHERE path = ?`, path); err != nil {
		return fmt.Errorf("forget sums of %q: %w", path, err)
	}
	return nil
}

// DeleteIndex forgets path in the index cache.
func (t *Tx) DeleteIndex(path string) error {
	if _, err := t.tx.Exec(`DELETE FROM local WHERE path = ?`, path); err != nil {
		return fmt.Errorf("delete index %q: %w", path, err)
	}
	if _, err := t.tx.Exec(`DELETE FROM blockloc WHERE path = ?`, path); err != nil {
		return fmt.Errorf("delete index %q: %w", path, err)
	}
	return nil
}

// Block lists are stored as JSON: compact enough beside the hash strings and readable
// with the sqlite3 shell when debugging a user's state. They are written by hand, the
// bytes json.Marshal writes: through reflection, a list of one block per small file was
// 1.5 % of an agent's CPU in a first sync of 10,000 of them.
func encodeBlocks(b []proto.Block) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	raw := make([]byte, 0, len(b)*(len(`{"hash":"","size":}`)+64+8)+2)
	raw = append(raw, '[')
	for i, bl := range b {
		if !plainJSONString(bl.Hash) {
			return marshalBlocks(b)
		}
		if i > 0 {
			raw = append(raw, ',')
		}
		raw = append(raw, `{"hash":"`...)
		raw = append(raw, bl.Hash...)
		raw = append(raw, `","size":`...)
		raw = strconv.AppendInt(raw, bl.Size, 10)
		raw = append(raw, '}')
	}
	return append(raw, ']'), nil
}

// marshalBlocks is encodeBlocks through encoding/json, for hashes that would need
// escaping (the server checks hashes; a state may hold anything).
func marshalBlocks(b []proto.Block) ([]byte, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode blocks: %w", err)
	}
	return raw, nil
}

func isASCIIAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// plainJSONString reports whether s is written in JSON as it is between quotes: ASCII
// letters and digits only (what json.Marshal would escape or rewrite never is).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isASCIIAlnum(c) {
			return false
		}
	}
	return true
}

// encodeSums stores the fast sums one after the other, then each mark as its offset,
// its state's length (both uvarints) and its state; nil unless there is a fast sum for
// each of n blocks (a list of one block needs none: Rehash takes lists of several).
func encodeSums(sums chunk.Sums, n int) []byte {
	if len(sums.Fast) != n || n < 2 {
		return nil
	}
	size := len(chunk.FastSum{}) * n
	for _, mk := range sums.Marks {
		size += 2*binary.MaxVarintLen64 + len(mk.State)
	}
	out := make([]byte, 0, size)
	for _, f := range sums.Fast {
		out = append(out, f[:]...)
	}
	for _, mk := range sums.Marks {
		out = binary.AppendUvarint(out, uint64(mk.Off))
		out = binary.AppendUvarint(out, uint64(len(mk.State)))
		out = append(out, mk.State...)
	}
	return out
}

// decodeSums reads what encodeSums stored for n blocks: no sums when it is not that, and
// no marks from the first that is cut short (Rehash checks what they hold).
func decodeSums(raw []byte, n int) chunk.Sums {
	size := len(chunk.FastSum{})
	if n < 2 || len(raw) < size*n {
		return chunk.Sums{}
	}
	fast := make([]chunk.FastSum, n)
	for i := range fast {
		copy(fast[i][:], raw[size*i:])
	}
	var marks []chunk.Mark
	for rest := raw[size*n:]; len(rest) > 0; {
		off, k := binary.Uvarint(rest)
		if k <= 0 || off > math.MaxInt64 {
			break
		}
		l, j := binary.Uvarint(rest[k:])
		if j <= 0 || l > uint64(len(rest)-k-j) {
			break
		}
		state := rest[k+j : k+j+int(l)]
		marks = append(marks, chunk.Mark{Off: int64(off), State: state})
		rest = rest[k+j+int(l):]
	}
	return chunk.Sums{Fast: fast, Marks: marks}
}

func decodeBlocks(raw []byte) ([]proto.Block, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var b []proto.Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("decode blocks: %w", err)
	}
	return b, nil
}

// NodeOf returns e as a tree node. Its type is one of the proto constants, not the
// decoder's own copy of the string. A hash that is not one (the server checks them) is
// an error.
func NodeOf(e proto.Entry) (plan.Node, error) {
	h, err := plan.ParseHash(e.SHA256)
	if err != nil {
		return plan.Node{}, fmt.Errorf("entry %q: %w", e.Path, err)
	}
	return plan.Node{Type: canonicalType(e.Type), SHA256: h, Target: e.Target, Mode: e.Mode, Size: e.Size, MTimeNs: e.MTimeNs, Seq: e.Seq}, nil
}

func canonicalType(t proto.EntryType) proto.EntryType {
	for _, c := range []proto.EntryType{proto.TypeFile, proto.TypeDir, proto.TypeSymlink} {
		if t == c {
			return c
		}
	}
	return t
}
