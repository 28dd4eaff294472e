package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// Apply commits a batch in one transaction of one round trip whatever its size when its
// paths are distinct (applyOneTrip), and of two otherwise: BEGIN, lock and read in one
// pipeline, then every write and COMMIT in another.
//
// Seq values must become visible in order: a reader of the changes feed that saw seq N+1
// while N was still uncommitted would move its cursor past N and never see it. A sequence
// (nextval) cannot give that, since two transactions can take N and N+1 and commit in the
// other order. So every Apply first locks the single folder row (SELECT … FOR UPDATE) that
// holds the counter, and keeps the lock until it commits: writers run one at a time, the
// next one reads the counter only after the previous one's commit is visible to every new
// snapshot, and so any snapshot holds a gap-free prefix of the seq values. The lock also
// makes the base-seq check exact: under READ COMMITTED each statement after the lock sees
// every change committed before it, so of two commits on one path the second sees the
// first and conflicts.
func (s *Store) Apply(ctx context.Context, agent string, changes []store.Change) ([]store.Result, error) {
	if len(changes) == 0 {
		return []store.Result{}, nil
	}
	paths := make([]string, 0, len(changes))
	seen := make(map[string]bool, len(changes))
	for i, c := range changes {
		if _, err := proto.CleanPath(c.Entry.Path); err != nil {
			return nil, fmt.Errorf("apply: change %d: %w", i, err)
		}
		if !c.Entry.Deleted {
			switch c.Entry.Type {
			case proto.TypeFile, proto.TypeDir, proto.TypeSymlink:
			default:
				return nil, fmt.Errorf("apply: change %d (%q): unknown entry type %q", i, c.Entry.Path, c.Entry.Type)
			}
		}
		if c.BaseSeq < 0 {
			return nil, fmt.Errorf("apply: change %d (%q): negative base seq %d", i, c.Entry.Path, c.BaseSeq)
		}
		if !seen[c.Entry.Path] {
			seen[c.Entry.Path] = true
			paths = append(paths, c.Entry.Path)
		}
	}
	// PostgreSQL keeps microseconds; rounding here makes the returned entries equal to
	// what a later read gives.
	now := time.Now().UTC().Truncate(time.Microsecond)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap("apply", err)
	}
	// A connection given back inside the transaction (any error below) is closed by the
	// pool, and the server rolls the transaction back.
	defer conn.Release()
	if len(paths) == len(changes) {
		// The usual batch: each path once, so that the checks can run as one set.
		results, err := applyOneTrip(ctx, conn, agent, now, changes)
		return results, wrap("apply", err)
	}
	// A path more than once: each item must be checked against what the items before
	// it did, which is done here, between a read and a write round trip.
	seq, current, err := lockAndRead(ctx, conn, paths)
	if err != nil {
		return nil, wrap("apply", err)
	}
	results := make([]store.Result, len(changes))
	var w batchWriter
	for i, c := range changes {
		cur, exists := current[c.Entry.Path]
		live := exists && !cur.Deleted
		ok := (c.BaseSeq == 0 && !live) || (exists && c.BaseSeq == cur.Seq)
		if !ok {
			results[i] = store.Result{Entry: cur, Conflict: true}
			continue
		}
		seq++
		e := c.Entry
		e.Seq, e.ModifiedBy, e.ModifiedAt = seq, agent, now
		if len(e.Blocks) == 0 {
			e.Blocks = nil
		} else {
			e.Blocks = append([]proto.Block(nil), e.Blocks...)
		}
		prevSHA := ""
		if live {
			prevSHA = cur.SHA256
			w.counts.add(cur, -1)
		}
		w.counts.add(e, 1)
		if err := w.add(e, action(c), prevSHA); err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		current[e.Path] = e
		results[i] = store.Result{Entry: e}
	}
	if err := w.writeAndCommit(ctx, conn, current, seq, agent, now); err != nil {
		return nil, wrap("apply", err)
	}
	return results, nil
}

// lockAndRead begins the transaction, takes the writers' lock and reads the counter and
// the current entries of paths, in one round trip.
func lockAndRead(ctx context.Context, conn *pgxpool.Conn, paths []string) (int64, map[string]proto.Entry, error) {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT seq FROM folder WHERE id = 1 FOR UPDATE")
	// One index lookup per path: with "path = ANY($1)" or a plain join, the planner may
	// scan or hash the whole entries table instead (LIMIT keeps the lateral subquery
	// from being flattened into such a join).
	b.Queue(`SELECT `+entryColumns+` FROM unnest($1::text[]) AS p(path), LATERAL (
    SELECT v.* FROM entries e JOIN versions v ON v.seq = e.seq WHERE e.path = p.path LIMIT 1) v`, paths)
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return 0, nil, fmt.Errorf("begin: %w", err)
	}
	var seq int64
	if err := br.QueryRow().Scan(&seq); err != nil {
		return 0, nil, fmt.Errorf("lock folder: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return 0, nil, fmt.Errorf("read current entries: %w", err)
	}
	defer rows.Close()
	current := make(map[string]proto.Entry, len(paths))
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return 0, nil, err
		}
		current[e.Path] = e
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("read current entries: %w", err)
	}
	rows.Close()
	return seq, current, br.Close()
}

// action is the audit action of c: the caller's, or else the one the entry implies.
func action(c store.Change) string {
	switch {
	case c.Action != "":
		return c.Action
	case c.Entry.Deleted:
		return proto.ActionDelete
	case c.Entry.Type == proto.TypeDir:
		return proto.ActionMkdir
	case c.Entry.Type == proto.TypeSymlink:
		return proto.ActionSymlink
	}
	return proto.ActionUpload
}

// batchWriter gathers the rows of a batch column by column, so that each table gets one
// multi-row INSERT … SELECT FROM unnest(arrays) whatever the batch size.
type batchWriter struct {
	seq     []int64
	path    []string
	typ     []string
	size    []int64
	mode    []int64
	mtime   []int64
	sha     []string
	blocks  []string
	target  []string
	deleted []bool
	action  []string
	prevSHA []string
	counts  counts
}

// counts are changes of the live figures that the folder row keeps for Stats.
type counts struct{ files, dirs, symlinks, bytes, conflicts int64 }

// add counts live entry e in (sign 1) or out (sign -1); a tombstone counts for nothing.
func (c *counts) add(e proto.Entry, sign int64) {
	if e.Deleted {
		return
	}
	switch e.Type {
	case proto.TypeFile:
		c.files += sign
		c.bytes += sign * e.Size
	case proto.TypeDir:
		c.dirs += sign
	case proto.TypeSymlink:
		c.symlinks += sign
	}
	if proto.IsConflictPath(e.Path) {
		c.conflicts += sign
	}
}

func (w *batchWriter) add(e proto.Entry, action, prevSHA string) error {
	blocks, err := encodeBlocks(e.Blocks)
	if err != nil {
		return fmt.Errorf("encode blocks of %q: %w", e.Path, err)
	}
	w.seq = append(w.seq, e.Seq)
	w.path = append(w.path, e.Path)
	w.typ = append(w.typ, string(e.Type))
	w.size = append(w.size, e.Size)
	w.mode = append(w.mode, int64(e.Mode))
	w.mtime = append(w.mtime, e.MTimeNs)
	w.sha = append(w.sha, e.SHA256)
	w.blocks = append(w.blocks, blocks)
	w.target = append(w.target, e.Target)
	w.deleted = append(w.deleted, e.Deleted)
	w.action = append(w.action, action)
	w.prevSHA = append(w.prevSHA, prevSHA)
	return nil
}

const (
	insertVersions = `INSERT INTO versions (seq, path, type, size, mode, mtime_ns, sha256, blocks, target, deleted, modified_by, modified_at)
SELECT seq, path, type, size, mode, mtime_ns, sha256, blocks::jsonb, target, deleted, $11, $12
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::boolean[])
  AS u(seq, path, type, size, mode, mtime_ns, sha256, blocks, target, deleted)`

	upsertEntries = `INSERT INTO entries (path, seq)
SELECT path, seq FROM unnest($1::text[], $2::bigint[]) AS u(path, seq)
ON CONFLICT (path) DO UPDATE SET seq = EXCLUDED.seq`

	// A tombstone has no content, so its row has no sha and size 0; prev_sha is the
	// content it replaced.
	insertLog = `INSERT INTO files_log (action, path, version, sha, prev_sha, size, agent, "timestamp")
SELECT action, path, version, CASE WHEN deleted THEN NULL ELSE NULLIF(sha, '') END, NULLIF(prev_sha, ''),
       CASE WHEN deleted THEN 0 ELSE size END, $8, $9
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::boolean[])
  AS u(action, path, version, sha, prev_sha, size, deleted)`
)

// writeAndCommit sends the batch's versions, entries, audit rows, the new counter and
// the COMMIT in one round trip. current holds the final entry of every path of the batch.
func (w *batchWriter) writeAndCommit(ctx context.Context, conn *pgxpool.Conn, current map[string]proto.Entry, seq int64, agent string, now time.Time) error {
	b := &pgx.Batch{}
	if len(w.seq) > 0 {
		// A path changed twice in one batch gets one entries row, pointing at its last
		// version (ON CONFLICT cannot touch one row twice in a statement).
		var entryPaths []string
		var entrySeqs []int64
		for i, p := range w.path {
			if current[p].Seq == w.seq[i] {
				entryPaths = append(entryPaths, p)
				entrySeqs = append(entrySeqs, w.seq[i])
			}
		}
		b.Queue(insertVersions, w.seq, w.path, w.typ, w.size, w.mode, w.mtime, w.sha, w.blocks, w.target, w.deleted, agent, now)
		b.Queue(upsertEntries, entryPaths, entrySeqs)
		b.Queue(insertLog, w.action, w.path, w.seq, w.sha, w.prevSHA, w.size, w.deleted, agent, now)
		c := w.counts
		b.Queue(`UPDATE folder SET seq = $1, files = files + $2, dirs = dirs + $3, symlinks = symlinks + $4,
    bytes = bytes + $5, conflicts = conflicts + $6 WHERE id = 1`, seq, c.files, c.dirs, c.symlinks, c.bytes, c.conflicts)
	}
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("write batch: %w", err)
		}
	}
	// COMMIT of a transaction that failed answers ROLLBACK rather than an error.
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: transaction rolled back (%s)", tag)
	}
	return br.Close()
}

// encodeBlocks renders blocks as the JSON array the blocks column holds, by hand: it is
// on the hot path of every commit, and nil must become [] rather than null.
func encodeBlocks(blocks []proto.Block) (string, error) {
	if len(blocks) == 0 {
		return "[]", nil
	}
	var b strings.Builder
	b.Grow(len(blocks) * 90)
	b.WriteByte('[')
	for i, bl := range blocks {
		if i > 0 {
			b.WriteByte(',')
		}
		hash, err := json.Marshal(bl.Hash)
		if err != nil {
			return "", err
		}
		b.WriteString(`{"hash":`)
		b.Write(hash)
		b.WriteString(`,"size":`)
		b.WriteString(strconv.FormatInt(bl.Size, 10))
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.String(), nil
}

// entryColumns are the columns scanEntry reads, from versions aliased v.
const entryColumns = "v.seq, v.path, v.type, v.size, v.mode, v.mtime_ns, v.sha256, v.blocks, v.target, v.deleted, v.modified_by, v.modified_at"

func scanEntry(row pgx.Row) (proto.Entry, error) {
	var e proto.Entry
	var mode int64
	var blocks []byte
	if err := row.Scan(&e.Seq, &e.Path, &e.Type, &e.Size, &mode, &e.MTimeNs, &e.SHA256, &blocks, &e.Target, &e.Deleted, &e.ModifiedBy, &e.ModifiedAt); err != nil {
		return proto.Entry{}, fmt.Errorf("read entry: %w", err)
	}
	e.Mode = uint32(mode)
	e.ModifiedAt = e.ModifiedAt.UTC()
	if err := json.Unmarshal(blocks, &e.Blocks); err != nil {
		return proto.Entry{}, fmt.Errorf("read blocks of %q: %w", e.Path, err)
	}
	if len(e.Blocks) == 0 {
		e.Blocks = nil
	}
	return e, nil
}
