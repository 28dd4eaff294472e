package testpg

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestURLGivesFreshEmptyDatabasesDroppedAtCleanup(t *testing.T) {
	ctx := context.Background()
	var names [2]string
	var server string
	for i := range names {
		t.Run("db", func(t *testing.T) {
			u := URL(t)
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&names[i]); err != nil {
				t.Fatal(err)
			}
			var tables int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("fresh database has %d tables", tables)
			}
			// Leave something behind: the next database must not see it.
			if _, err := conn.Exec(ctx, "CREATE TABLE leftover (x int)"); err != nil {
				t.Fatal(err)
			}
			server, _ = sharedURL()
		})
	}
	if names[0] == "" || names[0] == names[1] {
		t.Fatalf("database names %q and %q: want two distinct names", names[0], names[1])
	}
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names[:]).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of the test databases %v still exist after their tests ended", left, names)
	}
}

func TestServerStopStartKeepsData(t *testing.T) {
	ctx := context.Background()
	s := Start(t)
	u := NewDatabase(t, s.URL())
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a connection still answers after Stop")
	}
	conn.Close(ctx)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c, err := pgx.Connect(short, u); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := s.Stop(); err == nil {
		t.Error("stopping a stopped server: want an error")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect after Start: %v", err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after restart: x=%d err=%v, want 42", x, err)
	}
}
