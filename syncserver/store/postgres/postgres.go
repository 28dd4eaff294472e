// Package postgres implements store.Store on PostgreSQL with pgx. One database holds one
// folder: its schema is created and upgraded at Open by versioned migrations embedded in the
// binary (pressly/goose, under a session advisory lock so two servers never migrate at
// once). Every change writes its entry, its version and its files_log audit row in one
// transaction.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// Store is the PostgreSQL store of one folder. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	folderID string
	log      *slog.Logger
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	connectTimeout time.Duration
	firstRetry     time.Duration
	maxRetry       time.Duration
	logger         *slog.Logger
}

// WithConnectTimeout sets how long Open keeps trying to reach the database before it gives
// up (default 30 s, the original system's 10 tries 3 s apart). Zero means one try.
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) { o.connectTimeout = d }
}

// WithRetryBackoff sets the wait after the first failed connection attempt and the cap of
// the wait, which doubles after every failure (default 100 ms and 3 s).
func WithRetryBackoff(first, maxWait time.Duration) Option {
	return func(o *options) { o.firstRetry, o.maxRetry = first, maxWait }
}

// WithLogger sets the logger of connection retries and migrations (default slog.Default).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Open connects to the database at url, retrying with exponential backoff while it cannot
// be reached, applies the pending schema migrations and returns the store. A URL that
// cannot be parsed, a refused login or a missing database fails at once. The URL may set
// pgxpool's parameters, such as pool_max_conns (default: 4 or the number of CPUs).
//
// Once open, the store lives through restarts of PostgreSQL: while the database cannot be
// reached, calls fail with errors that wrap store.ErrUnavailable, and they succeed again
// once it is back, on new connections.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{
		connectTimeout: 30 * time.Second,
		firstRetry:     100 * time.Millisecond,
		maxRetry:       3 * time.Second,
		logger:         slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("parse database URL: not a valid postgres:// URL or key=value connection string")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A server that is down but whose host drops packets would otherwise hold every
		// request for the kernel's TCP timeout.
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	s := &Store{pool: pool, log: o.logger}
	if err := s.connect(ctx, o); err != nil {
		pool.Close()
		return nil, err
	}
	if err := migrate(ctx, pool, o.logger); err != nil {
		pool.Close()
		return nil, wrap("migrate schema", err)
	}
	if err := pool.QueryRow(ctx, "SELECT folder_id FROM folder WHERE id = 1").Scan(&s.folderID); err != nil {
		pool.Close()
		return nil, wrap("read folder id", err)
	}
	return s, nil
}

// connect pings the database until it answers, the deadline passes or the error says that
// waiting will not help.
func (s *Store) connect(ctx context.Context, o options) error {
	deadline := time.Now().Add(o.connectTimeout)
	wait := o.firstRetry
	for attempt := 1; ; attempt++ {
		err := s.pool.Ping(ctx)
		if err == nil {
			return nil
		}
		if !isUnavailable(err) {
			return fmt.Errorf("connect to database: %w", err)
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("connect to database: gave up after %d attempts in %s: %w: %w",
				attempt, o.connectTimeout, store.ErrUnavailable, err)
		}
		s.log.Warn("database not reachable, retrying", "attempt", attempt, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to database: %w: %w", store.ErrUnavailable, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, o.maxRetry)
	}
}

// FolderID returns the random identifier made when the schema was created.
func (s *Store) FolderID() string { return s.folderID }

// Ping reports whether the database answers now.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("ping database", s.pool.Ping(ctx))
}

// Close closes every connection of the store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// wrap adds op to err and marks the errors that mean "the database cannot be reached now"
// with store.ErrUnavailable, so that the server answers 503 and clients retry.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if isUnavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isUnavailable reports whether err comes from a database that is down, restarting, out of
// connections or unreachable, as opposed to a statement it refused.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case strings.HasPrefix(pgErr.Code, "53"): // insufficient resources
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, starting up
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	case pgconn.Timeout(err), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}
