// Package testpg gives tests a real PostgreSQL: a fresh empty database per test on a shared
// server, or a private server a test can stop and start. The shared server is the one named
// by SYNC_TEST_DATABASE_URL (hack/test.sh starts it) or, when that is unset, one that this
// package starts once per test binary with hack/postgres.sh and stops in Main.
//
// When PostgreSQL cannot be had, a test fails if CI=true and is skipped, saying why,
// otherwise.
package testpg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncedfolder/synced-folder/internal/modroot"
)

// EnvURL names the environment variable holding the URL of an already running server.
const EnvURL = "SYNC_TEST_DATABASE_URL"

var shared struct {
	mainCalled bool
	once       sync.Once
	url        string
	dir        string
	err        error
}

// Main runs the package's tests (call it from TestMain) and stops the shared PostgreSQL
// server if URL had to start one. It calls os.Exit.
func Main(m *testing.M) {
	shared.mainCalled = true
	code := m.Run()
	if shared.dir != "" {
		if err := stopDir(shared.dir); err != nil {
			fmt.Fprintf(os.Stderr, "testpg: stop shared PostgreSQL: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// URL returns a connection URL to a fresh, empty database made for t on the shared server;
// the database is dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	server, err := sharedURL()
	if err != nil {
		unavailable(t, err)
	}
	return NewDatabase(t, server)
}

func sharedURL() (string, error) {
	if u := os.Getenv(EnvURL); u != "" {
		return u, nil
	}
	if !shared.mainCalled {
		// Without Main nobody would stop the server this package starts, and it would
		// outlive the test binary.
		return "", errors.New("testpg: " + EnvURL + " is unset and the package's TestMain does not call testpg.Main, which must stop the server it starts")
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "testpg-shared-")
		if err != nil {
			shared.err = err
			return
		}
		u, err := startDir(dir)
		if err != nil {
			_ = os.RemoveAll(dir)
			shared.err = err
			return
		}
		shared.url, shared.dir = u, dir
	})
	return shared.url, shared.err
}

// NewDatabase creates a database with a unique name on the server at serverURL, drops it
// (closing its connections) when t ends, and returns its URL.
func NewDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatalf("testpg: parse server URL: %v", err)
	}
	name := databaseName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		unavailable(t, fmt.Errorf("connect to %s: %w", u.Redacted(), err))
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testpg: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			t.Errorf("testpg: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testpg: drop database %s: %v", name, err)
		}
	})
	dbURL := *u
	dbURL.Path = "/" + name
	dbURL.RawPath = ""
	return dbURL.String()
}

// databaseName makes a valid, unique identifier (at most 63 bytes) that still says which
// test made it, for whoever looks at a leaked one.
func databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	prefix := b.String()
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	return "t_" + prefix + "_" + hex.EncodeToString(suffix[:])
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL is required (CI=true): %v", err)
	}
	t.Skipf("PostgreSQL unavailable, skipping: %v", err)
}

// startDir runs `hack/postgres.sh start dir` and returns the server's URL.
func startDir(dir string) (string, error) {
	root, err := modroot.Find()
	if err != nil {
		return "", fmt.Errorf("testpg: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, "hack", "postgres.sh"), "start", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/postgres.sh start: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	u := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(u, "postgres://") {
		return "", fmt.Errorf("hack/postgres.sh start printed %q, not a URL", u)
	}
	return u, nil
}

// stopDir runs `hack/postgres.sh stop dir`, which also removes dir.
func stopDir(dir string) error {
	root, err := modroot.Find()
	if err != nil {
		return fmt.Errorf("testpg: %w", err)
	}
	out, err := exec.Command("bash", filepath.Join(root, "hack", "postgres.sh"), "stop", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("hack/postgres.sh stop: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
