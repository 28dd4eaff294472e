package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// defaultAuditLimit is the size of an audit page whose query names no limit.
const defaultAuditLimit = 100

// Get returns the current entry of path (possibly a tombstone) or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, path string) (proto.Entry, error) {
	e, err := scanEntry(s.r.QueryRowContext(ctx, `SELECT `+entryCols+` FROM current c JOIN versions v ON v.seq = c.seq WHERE c.path = ?`, path))
	if errors.Is(err, sql.ErrNoRows) {
		return proto.Entry{}, fmt.Errorf("get %q: %w", path, store.ErrNotFound)
	}
	if err != nil {
		return proto.Entry{}, fmt.Errorf("get %q: %w", path, err)
	}
	return e, nil
}

// Changes returns up to limit current entries with Seq > since in increasing Seq order;
// limit <= 0 means no limit.
func (s *Store) Changes(ctx context.Context, since int64, limit int) ([]proto.Entry, error) {
	if es, ok := s.tail.changes(since, limit); ok {
		return es, nil
	}
	return s.changesStored(ctx, since, limit)
}

// changesStored is Changes read from the database.
func (s *Store) changesStored(ctx context.Context, since int64, limit int) ([]proto.Entry, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+entryCols+` FROM current c JOIN versions v ON v.seq = c.seq WHERE c.seq > ? ORDER BY c.seq LIMIT ?`, since, limit)
	if err != nil {
		return nil, fmt.Errorf("changes since %d: %w", since, err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("changes since %d: %w", since, err)
	}
	return es, nil
}

// Live calls fn for every live current entry in path (byte) order. The entries come
// from one snapshot; fn's error stops the walk and is returned as is.
func (s *Store) Live(ctx context.Context, fn func(proto.Entry) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT `+entryCols+` FROM current c JOIN versions v ON v.seq = c.seq WHERE v.deleted = 0 ORDER BY c.path`)
	if err != nil {
		return fmt.Errorf("list live entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("list live entries: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list live entries: %w", err)
	}
	return nil
}

// Versions returns the retained versions of path, newest first, or store.ErrNotFound.
func (s *Store) Versions(ctx context.Context, path string) ([]proto.Entry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+entryCols+` FROM versions v WHERE v.path = ? ORDER BY v.seq DESC`, path)
	if err != nil {
		return nil, fmt.Errorf("versions of %q: %w", path, err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("versions of %q: %w", path, err)
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("versions of %q: %w", path, store.ErrNotFound)
	}
	return es, nil
}

// Version returns the retained version seq of path or store.ErrNotFound.
func (s *Store) Version(ctx context.Context, path string, seq int64) (proto.Entry, error) {
	e, err := scanEntry(s.r.QueryRowContext(ctx, `SELECT `+entryCols+` FROM versions v WHERE v.seq = ? AND v.path = ?`, seq, path))
	if errors.Is(err, sql.ErrNoRows) {
		return proto.Entry{}, fmt.Errorf("version %d of %q: %w", seq, path, store.ErrNotFound)
	}
	if err != nil {
		return proto.Entry{}, fmt.Errorf("version %d of %q: %w", seq, path, err)
	}
	return e, nil
}

// Audit returns the audit rows matching q, newest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]proto.AuditRecord, error) {
	var where []string
	var args []any
	if q.Path != "" {
		where = append(where, "path = ?")
		args = append(args, q.Path)
	}
	if q.Agent != "" {
		where = append(where, "agent = ?")
		args = append(args, q.Agent)
	}
	if q.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, q.Before)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	query := `SELECT id, action, path, seq, sha256, prev_sha256, size, agent, ts FROM audit`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit log: %w", err)
	}
	defer rows.Close()
	out := []proto.AuditRecord{}
	for rows.Next() {
		var r proto.AuditRecord
		var ts int64
		if err := rows.Scan(&r.ID, &r.Action, &r.Path, &r.Seq, &r.SHA256, &r.PrevSHA, &r.Size, &r.Agent, &ts); err != nil {
			return nil, fmt.Errorf("query audit log: %w", err)
		}
		r.Timestamp = fromNanos(ts)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit log: %w", err)
	}
	return out, nil
}

// BlockRefs calls fn once for every block hash a retained version refers to. It reads
// the block lists of all versions and remembers the hashes it has passed on (32 bytes
// and map overhead each): the price of keeping Apply free of a per-block index, whose
// random-key writes halved the commit rate.
func (s *Store) BlockRefs(ctx context.Context, fn func(hash string) error) error {
	rows, err := s.r.QueryContext(ctx, `SELECT blocks FROM versions WHERE blocks != x''`)
	if err != nil {
		return fmt.Errorf("list block references: %w", err)
	}
	defer rows.Close()
	seen := map[[hashLen]byte]struct{}{}
	var blocks []byte
	for rows.Next() {
		if err := rows.Scan(&blocks); err != nil {
			return fmt.Errorf("list block references: %w", err)
		}
		err := eachHash(blocks, func(h [hashLen]byte) error {
			if _, dup := seen[h]; dup {
				return nil
			}
			seen[h] = struct{}{}
			return fn(hex.EncodeToString(h[:]))
		})
		if err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list block references: %w", err)
	}
	return nil
}
