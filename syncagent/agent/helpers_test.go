package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
)

// testServer is a real sync server (embedded store, block store on disk) on loopback.
type testServer struct {
	url string
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	url, _ := testserver.Start(t, t.TempDir(), nil)
	return &testServer{url: url}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newAgent opens an agent on dir (created if needed) against srv.
func newAgent(t *testing.T, srv *testServer, dir, id string, mod func(*Config)) *Agent {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// As cmd/syncagent sets it, with a small FeedMaxBlocks so that the tests' files take
	// the omitted-list paths too.
	cl, err := client.New(client.Options{BaseURL: srv.url, Timeout: 20 * time.Second, FeedMaxBlocks: 2, OmitCommitBlocks: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: dir, AgentID: id, Server: cl, Log: testLogger(t), LongPollWait: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func once(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Once(ctx); err != nil {
		t.Fatalf("%s: Once: %v", a.cfg.AgentID, err)
	}
}

// manifest maps every synced path of dir to its type and content hash.
func manifest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if d.Name() == ".syncfolder" {
			return filepath.SkipDir
		}
		// A running agent's downloads in progress are its own and never synced; one can
		// also vanish between the listing and the read below.
		if strings.HasPrefix(d.Name(), scan.TempPrefix) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[filepath.ToSlash(rel)] = "link:" + target
		case d.IsDir():
			out[filepath.ToSlash(rel)] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			out[filepath.ToSlash(rel)] = "file:" + hex.EncodeToString(s[:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameManifest(t *testing.T, a, b string) {
	t.Helper()
	ma, mb := manifest(t, a), manifest(t, b)
	for p, v := range ma {
		if mb[p] != v {
			t.Errorf("%s: %q in %s, %q in %s", p, v, a, mb[p], b)
		}
	}
	for p, v := range mb {
		if _, ok := ma[p]; !ok {
			t.Errorf("%s: only in %s (%q)", p, b, v)
		}
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runAgents runs each agent's Run loop until the test ends, and fails the test if one
// of them returns an error.
func runAgents(t *testing.T, agents ...*Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(agents))
	for _, a := range agents {
		go func() { done <- a.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range agents {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
}
