package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

const selectCurrent = "SELECT " + entryColumns + " FROM entries e JOIN versions v ON v.seq = e.seq"

// Get returns the current entry of path, tombstones included.
func (s *Store) Get(ctx context.Context, path string) (proto.Entry, error) {
	e, err := scanEntry(s.pool.QueryRow(ctx, selectCurrent+" WHERE e.path = $1", path))
	if errors.Is(err, pgx.ErrNoRows) {
		return proto.Entry{}, fmt.Errorf("get %q: %w", path, store.ErrNotFound)
	}
	return e, wrap(fmt.Sprintf("get %q", path), err)
}

// Changes returns up to limit current entries with Seq > since in Seq order; limit <= 0
// means no limit. The answer is a gap-free run of seq values (see Apply).
func (s *Store) Changes(ctx context.Context, since int64, limit int) ([]proto.Entry, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, err := s.pool.Query(ctx, selectCurrent+" WHERE e.seq > $1 ORDER BY e.seq LIMIT $2", since, lim)
	if err != nil {
		return nil, wrap("changes", err)
	}
	entries, err := collectEntries(rows)
	return entries, wrap("changes", err)
}

// Live calls fn for every live current entry in path (byte) order, streaming them.
func (s *Store) Live(ctx context.Context, fn func(proto.Entry) error) error {
	rows, err := s.pool.Query(ctx, selectCurrent+" WHERE NOT v.deleted ORDER BY e.path")
	if err != nil {
		return wrap("list live entries", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return wrap("list live entries", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return wrap("list live entries", rows.Err())
}

// Versions returns the retained versions of path, newest first.
func (s *Store) Versions(ctx context.Context, path string) ([]proto.Entry, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+entryColumns+" FROM versions v WHERE v.path = $1 ORDER BY v.seq DESC", path)
	if err != nil {
		return nil, wrap(fmt.Sprintf("versions of %q", path), err)
	}
	entries, err := collectEntries(rows)
	if err != nil {
		return nil, wrap(fmt.Sprintf("versions of %q", path), err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("versions of %q: %w", path, store.ErrNotFound)
	}
	return entries, nil
}

// Version returns the retained version seq of path.
func (s *Store) Version(ctx context.Context, path string, seq int64) (proto.Entry, error) {
	e, err := scanEntry(s.pool.QueryRow(ctx, "SELECT "+entryColumns+" FROM versions v WHERE v.path = $1 AND v.seq = $2", path, seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return proto.Entry{}, fmt.Errorf("version %d of %q: %w", seq, path, store.ErrNotFound)
	}
	return e, wrap(fmt.Sprintf("version %d of %q", seq, path), err)
}

func collectEntries(rows pgx.Rows) ([]proto.Entry, error) {
	defer rows.Close()
	entries := []proto.Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, rows.Err()
}

// defaultAuditLimit is the size of an Audit answer when the query sets none.
const defaultAuditLimit = 100

// Audit returns the files_log rows matching q, newest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]proto.AuditRecord, error) {
	// Only the filters in use go into the statement, so that the planner can use the
	// path index (a generic "$1 = '' OR path = $1" plan cannot).
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if q.Path != "" {
		add("path = ?", q.Path)
	}
	if q.Agent != "" {
		add("agent = ?", q.Agent)
	}
	if q.Before > 0 {
		add("id < ?", q.Before)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	sql := `SELECT id, action, path, version, coalesce(sha, ''), coalesce(prev_sha, ''), size, agent, "timestamp" FROM files_log`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	sql += " ORDER BY id DESC LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap("audit", err)
	}
	defer rows.Close()
	records := []proto.AuditRecord{}
	for rows.Next() {
		var r proto.AuditRecord
		if err := rows.Scan(&r.ID, &r.Action, &r.Path, &r.Seq, &r.SHA256, &r.PrevSHA, &r.Size, &r.Agent, &r.Timestamp); err != nil {
			return nil, wrap("audit", err)
		}
		r.Timestamp = r.Timestamp.UTC()
		records = append(records, r)
	}
	return records, wrap("audit", rows.Err())
}

// Stats returns the folder's live figures, which every change keeps up to date in the
// folder row.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	var last *time.Time
	err := s.pool.QueryRow(ctx, `
SELECT f.seq, f.files, f.dirs, f.symlinks, f.bytes, f.conflicts,
       (SELECT modified_at FROM versions WHERE seq = f.seq)
FROM folder f WHERE f.id = 1`).Scan(&st.Seq, &st.Files, &st.Dirs, &st.Symlinks, &st.Bytes, &st.Conflicts, &last)
	if err != nil {
		return store.Stats{}, wrap("stats", err)
	}
	if last != nil {
		st.LastChange = last.UTC()
	}
	return st, nil
}

// BlockRefs calls fn once for every block hash a retained version refers to.
func (s *Store) BlockRefs(ctx context.Context, fn func(hash string) error) error {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT b->>'hash' FROM versions v, jsonb_array_elements(v.blocks) b`)
	if err != nil {
		return wrap("block refs", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return wrap("block refs", err)
		}
		if err := fn(h); err != nil {
			return err
		}
	}
	return wrap("block refs", rows.Err())
}

// Prune deletes the superseded versions that r does not keep. It takes no lock: a change
// committed meanwhile only makes a version superseded that the next Prune will see, and
// the versions entries refers to (the current ones, in this snapshot or a later one)
// are never candidates.
func (s *Store) Prune(ctx context.Context, r store.Retention, now time.Time) (int, error) {
	var cutoff *time.Time
	if r.MaxAge > 0 {
		c := now.Add(-r.MaxAge)
		cutoff = &c
	}
	tag, err := s.pool.Exec(ctx, `
DELETE FROM versions WHERE seq IN (
    SELECT seq FROM (
        SELECT v.seq, v.modified_at,
               row_number() OVER (PARTITION BY v.path ORDER BY v.seq DESC) AS rank
        FROM versions v
        WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.seq = v.seq)
    ) superseded
    WHERE rank > $1 AND ($2::timestamptz IS NULL OR modified_at <= $2)
)`, max(r.Keep, 0), cutoff)
	if err != nil {
		return 0, wrap("prune", err)
	}
	return int(tag.RowsAffected()), nil
}
