package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrationFiles are the schema versions, applied in order of their number prefix. A
// released file is never edited: a change of schema is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockID keys the session advisory lock held while migrating (advisory locks are
// per database, so folders in other databases of one server do not wait for each other).
// It differs from goose's default so that another goose user in the same database does not
// share it by accident.
const migrationLockID int64 = 0x73796e63666f6c64 // "syncfold"

// migrate applies the pending migrations. A server that finds the lock taken waits for
// the other one to finish, then finds nothing left to apply.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	// Poll every second, for up to 10 minutes: a long migration of a big folder by another
	// server must not make this one give up.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 600))
	if err != nil {
		return err
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithTableName("schema_migrations"),
	)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return err
	}
	for _, r := range results {
		log.Info("applied schema migration", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}
