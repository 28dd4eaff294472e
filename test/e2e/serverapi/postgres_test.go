package serverapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// postgresURL returns a fresh database on the test PostgreSQL: SYNC_TEST_DATABASE_URL's
// server (make test starts one), else one this test starts with hack/postgres.sh.
func postgresURL(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("SYNC_TEST_DATABASE_URL")
	if admin == "" {
		dir := filepath.Join(t.TempDir(), "pg")
		out, err := exec.Command("bash", "../../../hack/postgres.sh", "start", dir).Output()
		if err != nil {
			t.Fatalf("start PostgreSQL: %v", err)
		}
		t.Cleanup(func() { _ = exec.Command("bash", "../../../hack/postgres.sh", "stop", dir).Run() })
		admin = strings.TrimSpace(string(out))
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "serverapi_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
}

// TestDatabaseURL runs the binary on PostgreSQL (given through the environment, as the
// operator does) and checks that what it commits survives a restart.
func TestDatabaseURL(t *testing.T) {
	url := postgresURL(t)
	t.Setenv("SYNCSERVER_DATABASE_URL", url)
	data := t.TempDir()
	s := start(t, "--data-dir", data, "--token-file", writeTokens(t))
	var cr proto.CommitResponse
	item := proto.CommitItem{Path: "pg.txt", Type: proto.TypeFile, Size: 2, Mode: 0o644, SHA256: hash([]byte("pg")), Data: []byte("pg")}
	s.json("POST", "/v1/commit", proto.CommitRequest{Items: []proto.CommitItem{item}}, &cr, 200)
	if cr.Results[0].Status != proto.StatusOK {
		t.Fatalf("commit: %+v", cr.Results[0])
	}
	s.stop()
	if _, err := os.Stat(filepath.Join(data, "meta.db")); err == nil {
		t.Fatal("the embedded database was created although --database-url was given")
	}
	s2 := start(t, "--data-dir", data, "--token-file", writeTokens(t))
	if code, got, _ := s2.req("GET", "/download?path=pg.txt", token, nil); code != 200 || string(got) != "pg" {
		t.Fatalf("after restart: %d %q", code, got)
	}
	s2.stop()
}
