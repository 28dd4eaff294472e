package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/syncedfolder/synced-folder/internal/multirow"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// rowsPerStatement bounds the paths of one lookup of current entries, like the rows
// of one multi-row INSERT (multirow.Sizes).
const rowsPerStatement = 256

// insertSpec is a multi-row INSERT: prefix, then "(?, …)" with cols marks for each row,
// then suffix.
type insertSpec struct {
	prefix string
	cols   int
	suffix string
}

// The multi-row INSERTs of Apply.
var (
	insertVersions = insertSpec{`INSERT INTO versions (seq, path, type, size, mode, mtime_ns, sha256, blocks, target, deleted, conflict, modified_by, modified_at) VALUES `, 13, ``}
	insertCurrent  = insertSpec{`INSERT INTO current (path, seq) VALUES `, 2, ` ON CONFLICT (path) DO UPDATE SET seq = excluded.seq`}
	insertAudit    = insertSpec{`INSERT INTO audit (action, path, seq, sha256, prev_sha256, size, agent, ts) VALUES `, 8, ``}
)

// insertStmts holds an insertSpec's statement for each of multirow.Sizes: parsing a
// statement of 256 rows for every batch was 6 % of a server's CPU in the first sync of
// 10,000 small files.
type insertStmts [len(multirow.Sizes)]*sql.Stmt

// prepareInserts prepares the statements of Apply's inserts on the writer connection.
// A transaction reuses a statement prepared on its connection (sql.Tx.StmtContext).
func (s *Store) prepareInserts(ctx context.Context) error {
	s.inserted = map[insertSpec]*insertStmts{}
	for _, spec := range []insertSpec{insertVersions, insertCurrent, insertAudit} {
		var st insertStmts
		for k, n := range multirow.Sizes {
			var err error
			if st[k], err = s.w.PrepareContext(ctx, spec.prefix+multirow.Values(spec.cols, n)+spec.suffix); err != nil {
				return fmt.Errorf("prepare insert of %d rows: %w", n, err)
			}
		}
		s.inserted[spec] = &st
	}
	return nil
}

// closeInserts closes what prepareInserts prepared.
func (s *Store) closeInserts() error {
	var errs []error
	for _, st := range s.inserted {
		for _, stmt := range st {
			if stmt != nil {
				errs = append(errs, stmt.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// inserts writes rows with spec's statements, in chunks of multirow.Sizes.
func (s *Store) inserts(ctx context.Context, tx *sql.Tx, spec insertSpec, rows [][]any) error {
	st := s.inserted[spec]
	for len(rows) > 0 {
		k := multirow.Next(len(rows))
		n := multirow.Sizes[k]
		args := make([]any, 0, n*spec.cols)
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		if _, err := tx.StmtContext(ctx, st[k]).ExecContext(ctx, args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// head is what Apply needs of a path's current entry.
type head struct {
	seq      int64
	typ      string
	size     int64
	sha      string
	deleted  bool
	conflict bool
	// entry is the full entry when this batch committed it; nil when it was committed
	// before and must be read back for a conflict result.
	entry *proto.Entry
}

// loadHeads reads the current entries of paths within tx.
func (s *Store) loadHeads(ctx context.Context, tx *sql.Tx, paths []string) (map[string]*head, error) {
	heads := make(map[string]*head, len(paths))
	for len(paths) > 0 {
		n := min(len(paths), rowsPerStatement)
		args := make([]any, n)
		for i, p := range paths[:n] {
			args[i] = p
		}
		q := `SELECT c.path, v.seq, v.type, v.size, v.sha256, v.deleted, v.conflict FROM current c JOIN versions v ON v.seq = c.seq WHERE c.path IN (` +
			strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + `)`
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var p string
			h := &head{}
			if err := rows.Scan(&p, &h.seq, &h.typ, &h.size, &h.sha, &h.deleted, &h.conflict); err != nil {
				rows.Close()
				return nil, err
			}
			heads[p] = h
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		paths = paths[n:]
	}
	return heads, nil
}

type counterDelta store.Stats

// live adds (sign 1) or removes (sign -1) a live entry's share of the counters.
func (c *counterDelta) live(typ string, size int64, conflict bool, sign int64) {
	switch proto.EntryType(typ) {
	case proto.TypeFile:
		c.Files += sign
		c.Bytes += sign * size
	case proto.TypeDir:
		c.Dirs += sign
	case proto.TypeSymlink:
		c.Symlinks += sign
	}
	if conflict {
		c.Conflicts += sign
	}
}

// defaultAction names a change whose caller gave no action, by what it does.
func defaultAction(e proto.Entry) string {
	switch {
	case e.Deleted:
		return proto.ActionDelete
	case e.Type == proto.TypeDir:
		return proto.ActionMkdir
	case e.Type == proto.TypeSymlink:
		return proto.ActionSymlink
	default:
		return proto.ActionUpload
	}
}

// Apply commits the batch in one transaction; see store.Store. Items are checked in
// batch order against the current entries as the items before them left them.
func (s *Store) Apply(ctx context.Context, agent string, changes []store.Change) ([]store.Result, error) {
	results := make([]store.Result, len(changes))
	if len(changes) == 0 {
		return results, ctx.Err()
	}
	// Encoding first: a malformed block list fails the batch before it takes the lock.
	encoded := make([][]byte, len(changes))
	paths := make([]string, 0, len(changes))
	seen := make(map[string]struct{}, len(changes))
	for i, c := range changes {
		var err error
		if encoded[i], err = encodeBlocks(c.Entry.Blocks); err != nil {
			return nil, fmt.Errorf("apply %q: %w", c.Entry.Path, err)
		}
		if _, dup := seen[c.Entry.Path]; !dup {
			seen[c.Entry.Path] = struct{}{}
			paths = append(paths, c.Entry.Path)
		}
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	seq := s.counters.Seq
	s.mu.Unlock()

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("apply batch: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	heads, err := s.loadHeads(ctx, tx, paths)
	if err != nil {
		return nil, fmt.Errorf("apply batch: read current entries: %w", err)
	}

	now := time.Now().UTC().Round(0)
	nowNs := now.UnixNano()
	var delta counterDelta
	var versionRows, auditRows [][]any
	var applied []proto.Entry // in seq order, for the tail
	newHead := map[string]int64{}
	for i, c := range changes {
		e := c.Entry
		h := heads[e.Path]
		ok := c.BaseSeq == 0 && (h == nil || h.deleted) || h != nil && c.BaseSeq == h.seq
		if !ok {
			results[i].Conflict = true
			if h != nil {
				if h.entry == nil {
					cur, err := s.currentIn(ctx, tx, h.seq)
					if err != nil {
						return nil, fmt.Errorf("apply %q: %w", e.Path, err)
					}
					h.entry = &cur
				}
				results[i].Entry = *h.entry
			}
			continue
		}

		seq++
		conflict := proto.IsConflictPath(e.Path)
		versionRows = append(versionRows, []any{seq, e.Path, string(e.Type), e.Size, e.Mode, e.MTimeNs, e.SHA256, encoded[i], e.Target, e.Deleted, conflict, agent, nowNs})
		action := c.Action
		if action == "" {
			action = defaultAction(e)
		}
		newSHA, newSize, prevSHA := e.SHA256, e.Size, ""
		if e.Deleted {
			newSHA, newSize = "", 0
		}
		if h != nil {
			prevSHA = h.sha
			if !h.deleted {
				delta.live(h.typ, h.size, h.conflict, -1)
			}
		}
		auditRows = append(auditRows, []any{action, e.Path, seq, newSHA, prevSHA, newSize, agent, nowNs})
		if !e.Deleted {
			delta.live(string(e.Type), e.Size, conflict, 1)
		}
		newHead[e.Path] = seq

		e.Seq, e.ModifiedBy, e.ModifiedAt = seq, agent, now
		if len(e.Blocks) == 0 {
			e.Blocks = nil
		}
		results[i].Entry = e
		applied = append(applied, e)
		heads[e.Path] = &head{seq: seq, typ: string(e.Type), size: e.Size, sha: e.SHA256, deleted: e.Deleted, conflict: conflict, entry: &results[i].Entry}
	}
	if len(versionRows) == 0 {
		return results, nil // nothing to commit; the deferred Rollback ends the transaction
	}

	if err := s.inserts(ctx, tx, insertVersions, versionRows); err != nil {
		return nil, fmt.Errorf("apply batch: insert versions: %w", err)
	}
	currentRows := make([][]any, 0, len(newHead))
	for _, p := range paths {
		if sq, ok := newHead[p]; ok {
			currentRows = append(currentRows, []any{p, sq})
		}
	}
	if err := s.inserts(ctx, tx, insertCurrent, currentRows); err != nil {
		return nil, fmt.Errorf("apply batch: set current versions: %w", err)
	}
	if err := s.inserts(ctx, tx, insertAudit, auditRows); err != nil {
		return nil, fmt.Errorf("apply batch: insert audit rows: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("apply batch: commit: %w", err)
	}
	s.tail.add(applied)

	s.mu.Lock()
	c := &s.counters
	c.Files += delta.Files
	c.Dirs += delta.Dirs
	c.Symlinks += delta.Symlinks
	c.Bytes += delta.Bytes
	c.Conflicts += delta.Conflicts
	c.Seq = seq
	c.LastChange = now
	s.mu.Unlock()
	return results, nil
}

// currentIn reads the full version seq within tx, for a conflict result.
func (s *Store) currentIn(ctx context.Context, tx *sql.Tx, seq int64) (proto.Entry, error) {
	e, err := scanEntry(tx.QueryRowContext(ctx, `SELECT `+entryCols+` FROM versions v WHERE v.seq = ?`, seq))
	if err != nil {
		return proto.Entry{}, fmt.Errorf("read current entry: %w", err)
	}
	return e, nil
}

// Prune removes the superseded versions that r no longer keeps as of now, in one
// transaction.
func (s *Store) Prune(ctx context.Context, r store.Retention, now time.Time) (int, error) {
	keep := max(r.Keep, 0)
	// A version younger than MaxAge is kept; with no MaxAge, age keeps nothing.
	cutoff := int64(1<<63 - 1)
	if r.MaxAge > 0 {
		cutoff = now.Add(-r.MaxAge).UnixNano()
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	res, err := tx.ExecContext(ctx, `
		DELETE FROM versions WHERE seq IN (
			SELECT seq FROM (
				SELECT seq, modified_at,
					ROW_NUMBER() OVER (PARTITION BY path ORDER BY seq DESC) AS newer
				FROM versions
				WHERE seq NOT IN (SELECT seq FROM current)
			)
			WHERE newer > ? AND modified_at <= ?
		)`, keep, cutoff)
	if err != nil {
		return 0, fmt.Errorf("prune: delete versions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("prune: commit: %w", err)
	}
	return int(n), nil
}
