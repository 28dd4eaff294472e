// Package sqlite is the embedded store.Store: one SQLite database file (pure Go driver
// modernc.org/sqlite, so binaries stay static) in WAL mode with synchronous=FULL, so that
// a committed batch survives a crash or power loss.
//
// All writes go through one connection, one batch at a time, behind a mutex: seq values
// are assigned in commit order, and a reader (WAL snapshot) that sees seq N+1 also sees
// seq N. Reads use a separate pool of read-only connections and never wait for writers.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/syncedfolder/synced-folder/syncserver/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout bounds how long a connection waits for a lock held by another; with one
// writer it only matters for checkpoints and migrations.
const busyTimeout = 10 * time.Second

// Store is the embedded store.Store. Every method is safe for concurrent use.
type Store struct {
	path     string
	folderID string
	w        *sql.DB // the single writer connection
	r        *sql.DB // read-only connections
	// inserted holds Apply's multi-row INSERTs, prepared on w (prepareInserts).
	inserted map[insertSpec]*insertStmts
	// tail holds the latest committed entries for Changes.
	tail *tail

	// writeMu orders batches: seq assignment, the commit and the counters below change
	// together under it.
	writeMu sync.Mutex

	// mu guards counters, which mirror the committed state for a cheap Stats.
	mu       sync.Mutex
	counters store.Stats
}

var _ store.Store = (*Store)(nil)

// Open opens the store in the database file at path, creating the file and its
// directory when needed and migrating the schema to the current version.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s := &Store{path: path}
	var err error
	s.w, err = sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.init(); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	if err := s.prepareInserts(context.Background()); err != nil {
		_ = s.closeInserts()
		s.w.Close()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s.r, err = sql.Open("sqlite", dsn(path, true))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if err := s.loadCounters(context.Background()); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s.tail = newTail(s.counters.Seq)
	return s, nil
}

// dsn is the connection string of the database at path: WAL, synchronous=FULL (a
// commit is durable when Apply returns; batching keeps that cheap), foreign keys on,
// and BEGIN IMMEDIATE so a write transaction never has to upgrade its lock.
func dsn(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// init migrates the schema, makes the folder's identity on first use and prepares the
// write statements.
func (s *Store) init() error {
	ctx := context.Background()
	provider, err := goose.NewProvider(goose.DialectSQLite3, s.w, mustSub(migrations, "migrations"),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(slog.Default().With("component", "sqliteMigrations")),
	)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	// A database migrated by a newer release must not be used by an older one, which
	// would not know what its tables mean now.
	have, known, err := provider.GetVersions(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > known {
		return fmt.Errorf("schema version %d is newer than this program knows (%d): use a newer release", have, known)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return fmt.Errorf("make folder id: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO folder (id, folder_id) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`, hex.EncodeToString(id)); err != nil {
		return fmt.Errorf("make folder id: %w", err)
	}
	if err := s.w.QueryRowContext(ctx, `SELECT folder_id FROM folder WHERE id = 1`).Scan(&s.folderID); err != nil {
		return fmt.Errorf("read folder id: %w", err)
	}
	return nil
}

// loadCounters computes the live figures from the committed state once; Apply keeps
// them up to date afterwards.
func (s *Store) loadCounters(ctx context.Context) error {
	var c store.Stats
	var lastNs sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT
			COALESCE(SUM(v.type = 'file'), 0),
			COALESCE(SUM(v.type = 'dir'), 0),
			COALESCE(SUM(v.type = 'symlink'), 0),
			COALESCE(SUM(CASE WHEN v.type = 'file' THEN v.size ELSE 0 END), 0),
			COALESCE(SUM(v.conflict), 0)
		FROM current c JOIN versions v ON v.seq = c.seq
		WHERE v.deleted = 0`).Scan(&c.Files, &c.Dirs, &c.Symlinks, &c.Bytes, &c.Conflicts)
	if err != nil {
		return fmt.Errorf("count live entries: %w", err)
	}
	// The highest seq is always some path's current entry, which is never pruned.
	err = s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM versions`).Scan(&c.Seq)
	if err != nil {
		return fmt.Errorf("read last seq: %w", err)
	}
	if c.Seq > 0 {
		if err := s.r.QueryRowContext(ctx, `SELECT modified_at FROM versions WHERE seq = ?`, c.Seq).Scan(&lastNs); err != nil {
			return fmt.Errorf("read last change: %w", err)
		}
		c.LastChange = fromNanos(lastNs.Int64)
	}
	s.counters = c
	return nil
}

// FolderID returns the random identifier made when the database was created.
func (s *Store) FolderID() string { return s.folderID }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1 FROM folder`).Scan(&one); err != nil {
		return fmt.Errorf("ping sqlite store %q: %w", s.path, err)
	}
	return nil
}

// Stats returns the folder's live figures, kept in memory as batches commit.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	if err := ctx.Err(); err != nil {
		return store.Stats{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters, nil
}

// Close waits for a running batch, then closes the database; SQLite checkpoints the WAL
// into the main file as the last connection closes.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.closeInserts(), s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite store %q: %w", s.path, err)
	}
	return nil
}

func fromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }
