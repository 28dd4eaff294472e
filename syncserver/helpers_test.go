package syncserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/postgres"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

// testEnv is a real server on a loopback listener over real stores.
type testEnv struct {
	t      *testing.T
	srv    *Server
	http   *httptest.Server
	store  store.Store
	blocks *blobs.Store
	token  string
}

type envOption func(*Config, *testEnvOpts)

type testEnvOpts struct {
	auth Authenticator
}

func withConfig(f func(*Config)) envOption {
	return func(c *Config, _ *testEnvOpts) { f(c) }
}

func withAuth(a Authenticator) envOption {
	return func(_ *Config, o *testEnvOpts) { o.auth = a }
}

func newEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	cfg := Config{GCInterval: -1}
	var o testEnvOpts
	for _, f := range opts {
		f(&cfg, &o)
	}
	st := openStore(t)
	bs, err := blobs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(cfg, st, bs, o.auth, logger)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Shutdown()
		hs.Close()
	})
	tt, _ := t.(*testing.T)
	return &testEnv{t: tt, srv: srv, http: hs, store: st, blocks: bs}
}

// openStore opens the metadata store of a test server: the embedded store, unless
// TestPostgresBackend swaps in PostgreSQL (tests of this package do not run in parallel).
var openStore = openSQLiteStore

func openSQLiteStore(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatalf("open sqlite store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var (
	pgOnce sync.Once
	pgURL  string
	pgErr  error
)

// testPostgresURL returns the URL of the test PostgreSQL: SYNC_TEST_DATABASE_URL (make
// test starts one), else a throwaway server this test binary starts with
// hack/postgres.sh and stops when the tests end.
func testPostgresURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("SYNC_TEST_DATABASE_URL"); u != "" {
		return u
	}
	pgOnce.Do(func() {
		dir, err := os.MkdirTemp("", "syncserver-pg-")
		if err != nil {
			pgErr = err
			return
		}
		out, err := exec.Command("bash", "../hack/postgres.sh", "start", filepath.Join(dir, "pg")).Output()
		if err != nil {
			pgErr = fmt.Errorf("hack/postgres.sh start: %w", err)
			return
		}
		pgURL = strings.TrimSpace(string(out))
		pgStop = func() {
			_ = exec.Command("bash", "../hack/postgres.sh", "stop", filepath.Join(dir, "pg")).Run()
			_ = os.RemoveAll(dir)
		}
	})
	if pgErr != nil {
		t.Fatalf("start PostgreSQL for the tests: %v", pgErr)
	}
	return pgURL
}

// pgStop stops the PostgreSQL that testPostgresURL started, if any.
var pgStop = func() {}

func TestMain(m *testing.M) {
	code := m.Run()
	pgStop()
	os.Exit(code)
}

// openPostgresStore opens a fresh database of the test PostgreSQL (a database per test,
// dropped afterwards).
func openPostgresStore(t testing.TB) store.Store {
	t.Helper()
	url := testPostgresURL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to test PostgreSQL: %v", err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "syncserver_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	dbURL := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	st, err := postgres.Open(ctx, dbURL, postgres.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	t.Cleanup(func() {
		st.Close()
		a, err := pgx.Connect(ctx, url)
		if err == nil {
			_, _ = a.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close(ctx)
		}
	})
	return st
}

// do sends a request and decodes a JSON answer into out (when not nil); it returns the
// status code and the raw body.
func (e *testEnv) do(method, path string, body any, out any, hdr ...string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if out != nil && len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// putBlock uploads b as a block and checks the answer is 200 or 201.
func (e *testEnv) putBlock(b []byte) string {
	e.t.Helper()
	h := sha(b)
	code, raw := e.do("PUT", proto.RouteBlocks+h, b, nil)
	if code != http.StatusCreated && code != http.StatusOK {
		e.t.Fatalf("PUT block: %d %s", code, raw)
	}
	return h
}

// commitFile commits content at p over base through blocks of at most blockSize bytes,
// uploading them first, and returns the item result.
func (e *testEnv) commitFile(p string, base int64, content []byte, blockSize int) proto.ItemResult {
	e.t.Helper()
	it := proto.CommitItem{Path: p, BaseSeq: base, Type: proto.TypeFile, Size: int64(len(content)),
		Mode: 0o644, MTimeNs: 1, SHA256: sha(content)}
	for off := 0; off < len(content); off += blockSize {
		part := content[off:min(off+blockSize, len(content))]
		it.Blocks = append(it.Blocks, proto.Block{Hash: e.putBlock(part), Size: int64(len(part))})
	}
	return e.commit(it)[0]
}

func (e *testEnv) commit(items ...proto.CommitItem) []proto.ItemResult {
	e.t.Helper()
	var resp proto.CommitResponse
	code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: items}, &resp)
	if code != http.StatusOK {
		e.t.Fatalf("commit: %d %s", code, raw)
	}
	if len(resp.Results) != len(items) {
		e.t.Fatalf("commit: %d results for %d items: %s", len(resp.Results), len(items), raw)
	}
	return resp.Results
}

func inlineItem(p string, base int64, content []byte) proto.CommitItem {
	return proto.CommitItem{Path: p, BaseSeq: base, Type: proto.TypeFile, Size: int64(len(content)),
		Mode: 0o644, MTimeNs: 1, SHA256: sha(content), Data: content}
}

// snapshot is what must not change after a refused request.
type snapshot struct {
	seq    int64
	blocks int64
	audit  int
}

func (e *testEnv) snapshot() snapshot {
	e.t.Helper()
	st, err := e.store.Stats(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	n, _, err := e.blocks.Stats()
	if err != nil {
		e.t.Fatal(err)
	}
	recs, err := e.store.Audit(context.Background(), store.AuditQuery{Limit: 10000})
	if err != nil {
		e.t.Fatal(err)
	}
	return snapshot{seq: st.Seq, blocks: n, audit: len(recs)}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
