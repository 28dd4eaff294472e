package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// applySetSQL checks and writes a whole batch whose paths are distinct in one statement:
// each item is checked against the current entry of its path, the matching ones take the
// next seq values in batch order, and their versions, entries, audit rows and the folder's
// counter and figures are written. It answers one row per item, in batch order: ok, the
// new seq, and the current entry when the item conflicts.
//
// It must run after the statement that locks the folder row, in the same transaction:
// under READ COMMITTED it then sees every change committed before the lock was granted.
const applySetSQL = `
WITH items AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
                         $8::text[], $9::text[], $10::text[], $11::boolean[], $12::boolean[], $13::text[])
        AS u(idx, path, base, type, size, mode, mtime_ns, sha256, blocks, target, deleted, conflict, action)
), checked AS (
    SELECT i.*, cur.seq AS cur_seq,
           coalesce(NOT cur.deleted, false) AS cur_live, cur.type AS cur_type, cur.size AS cur_size, cur.sha256 AS cur_sha,
           coalesce((i.base = 0 AND (cur.seq IS NULL OR cur.deleted)) OR i.base = cur.seq, false) AS ok
    FROM items i
    -- One index lookup per item, whatever the size of the folder: as a plain join the
    -- planner may hash the whole entries table instead (LIMIT keeps it from flattening).
    LEFT JOIN LATERAL (
        SELECT e.seq, v.deleted, v.type, v.size, v.sha256
        FROM entries e JOIN versions v ON v.seq = e.seq
        WHERE e.path = i.path LIMIT 1
    ) cur ON true
), numbered AS (
    SELECT c.*, (SELECT seq FROM folder WHERE id = 1) + row_number() OVER (ORDER BY c.idx) AS new_seq
    FROM checked c WHERE c.ok
), new_versions AS (
    INSERT INTO versions (seq, path, type, size, mode, mtime_ns, sha256, blocks, target, deleted, modified_by, modified_at)
    SELECT new_seq, path, type, size, mode, mtime_ns, sha256, blocks::jsonb, target, deleted, $14, $15 FROM numbered
), new_entries AS (
    INSERT INTO entries (path, seq) SELECT path, new_seq FROM numbered
    ON CONFLICT (path) DO UPDATE SET seq = EXCLUDED.seq
), log AS (
    INSERT INTO files_log (action, path, version, sha, prev_sha, size, agent, "timestamp")
    SELECT action, path, new_seq, CASE WHEN deleted THEN NULL ELSE NULLIF(sha256, '') END,
           CASE WHEN cur_live THEN NULLIF(cur_sha, '') END, CASE WHEN deleted THEN 0 ELSE size END, $14, $15
    FROM numbered ORDER BY new_seq
), figures AS (
    SELECT count(*) AS changes,
           coalesce(sum((NOT deleted AND type = 'file')::int - (cur_live AND cur_type = 'file')::int), 0) AS files,
           coalesce(sum((NOT deleted AND type = 'dir')::int - (cur_live AND cur_type = 'dir')::int), 0) AS dirs,
           coalesce(sum((NOT deleted AND type = 'symlink')::int - (cur_live AND cur_type = 'symlink')::int), 0) AS symlinks,
           coalesce(sum(CASE WHEN NOT deleted AND type = 'file' THEN size ELSE 0 END
                      - CASE WHEN cur_live AND cur_type = 'file' THEN cur_size ELSE 0 END), 0) AS bytes,
           coalesce(sum(((NOT deleted AND conflict)::int - (cur_live AND conflict)::int)), 0) AS conflicts
    FROM numbered
), counter AS (
    UPDATE folder f SET seq = f.seq + g.changes, files = f.files + g.files, dirs = f.dirs + g.dirs,
           symlinks = f.symlinks + g.symlinks, bytes = f.bytes + g.bytes, conflicts = f.conflicts + g.conflicts
    FROM figures g WHERE f.id = 1
)
SELECT c.idx, c.ok, n.new_seq,
       v.seq, v.path, v.type, v.size, v.mode, v.mtime_ns, v.sha256, v.blocks, v.target, v.deleted, v.modified_by, v.modified_at
FROM checked c
LEFT JOIN numbered n ON n.idx = c.idx
LEFT JOIN versions v ON v.seq = c.cur_seq AND NOT c.ok
ORDER BY c.idx`

// applyOneTrip commits a batch of distinct paths in a single round trip: BEGIN, the lock,
// applySetSQL and COMMIT go in one pipeline. On a busy machine every round trip waits for
// the server process and then for this one to be scheduled, which costs more than the
// statements themselves.
func applyOneTrip(ctx context.Context, conn *pgxpool.Conn, agent string, now time.Time, changes []store.Change) ([]store.Result, error) {
	n := len(changes)
	var (
		idx      = make([]int32, n)
		path     = make([]string, n)
		base     = make([]int64, n)
		typ      = make([]string, n)
		size     = make([]int64, n)
		mode     = make([]int64, n)
		mtime    = make([]int64, n)
		sha      = make([]string, n)
		blocks   = make([]string, n)
		target   = make([]string, n)
		deleted  = make([]bool, n)
		conflict = make([]bool, n)
		actions  = make([]string, n)
	)
	for i, c := range changes {
		e := c.Entry
		enc, err := encodeBlocks(e.Blocks)
		if err != nil {
			return nil, fmt.Errorf("encode blocks of %q: %w", e.Path, err)
		}
		idx[i], path[i], base[i], typ[i], size[i] = int32(i), e.Path, c.BaseSeq, string(e.Type), e.Size
		mode[i], mtime[i], sha[i], blocks[i], target[i] = int64(e.Mode), e.MTimeNs, e.SHA256, enc, e.Target
		deleted[i], conflict[i], actions[i] = e.Deleted, proto.IsConflictPath(e.Path), action(c)
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT seq FROM folder WHERE id = 1 FOR UPDATE")
	b.Queue(applySetSQL, idx, path, base, typ, size, mode, mtime, sha, blocks, target, deleted, conflict, actions, agent, now)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("lock folder: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("write batch: %w", err)
	}
	results := make([]store.Result, n)
	for rows.Next() {
		var (
			i      int32
			ok     bool
			newSeq *int64
			cur    nullableEntry
		)
		if err := rows.Scan(&i, &ok, &newSeq, &cur.seq, &cur.path, &cur.typ, &cur.size, &cur.mode, &cur.mtime, &cur.sha,
			&cur.blocks, &cur.target, &cur.deleted, &cur.modifiedBy, &cur.modifiedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("write batch: %w", err)
		}
		if ok {
			e := changes[i].Entry
			e.Seq, e.ModifiedBy, e.ModifiedAt = *newSeq, agent, now
			if len(e.Blocks) == 0 {
				e.Blocks = nil
			} else {
				e.Blocks = append([]proto.Block(nil), e.Blocks...)
			}
			results[i] = store.Result{Entry: e}
			continue
		}
		e, err := cur.entry()
		if err != nil {
			rows.Close()
			return nil, err
		}
		results[i] = store.Result{Entry: e, Conflict: true}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("write batch: %w", err)
	}
	// COMMIT of a transaction that failed answers ROLLBACK rather than an error.
	tag, err := br.Exec()
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if tag.String() != "COMMIT" {
		return nil, fmt.Errorf("commit: transaction rolled back (%s)", tag)
	}
	return results, br.Close()
}

// nullableEntry receives the columns of an outer-joined version, NULL when there is none.
type nullableEntry struct {
	seq, size, mode, mtime             *int64
	path, typ, sha, target, modifiedBy *string
	blocks                             []byte
	deleted                            *bool
	modifiedAt                         *time.Time
}

// entry is the version, or the zero Entry when there is none.
func (n nullableEntry) entry() (proto.Entry, error) {
	if n.seq == nil {
		return proto.Entry{}, nil
	}
	e := proto.Entry{
		Seq: *n.seq, Path: *n.path, Type: proto.EntryType(*n.typ), Size: *n.size, Mode: uint32(*n.mode),
		MTimeNs: *n.mtime, SHA256: *n.sha, Target: *n.target, Deleted: *n.deleted,
		ModifiedBy: *n.modifiedBy, ModifiedAt: n.modifiedAt.UTC(),
	}
	if err := json.Unmarshal(n.blocks, &e.Blocks); err != nil {
		return proto.Entry{}, fmt.Errorf("read blocks of %q: %w", e.Path, err)
	}
	if len(e.Blocks) == 0 {
		e.Blocks = nil
	}
	return e, nil
}
