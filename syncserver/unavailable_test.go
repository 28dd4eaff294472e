package syncserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store/postgres"
)

// TestStoreUnavailableIs503 stops a real PostgreSQL under a running server: requests
// that need the store answer 503 (retry later), readiness fails, health does not.
func TestStoreUnavailableIs503(t *testing.T) {
	dir, err := os.MkdirTemp("", "syncserver-pgdown-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pgDir := filepath.Join(dir, "pg")
	out, err := exec.Command("bash", "../hack/postgres.sh", "start", pgDir).Output()
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = exec.Command("bash", "../hack/postgres.sh", "stop", pgDir).Run()
		}
	}
	defer stop()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := postgres.Open(context.Background(), strings.TrimSpace(string(out)), postgres.WithLogger(logger), postgres.WithConnectTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs, err := blobs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{GCInterval: -1}, st, bs, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	e := &testEnv{t: t, srv: srv, http: hs}
	if r := e.commit(inlineItem("a", 0, []byte("a")))[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit before the outage: %+v", r)
	}

	stop()
	for _, c := range []struct{ method, route string }{
		{"GET", proto.RouteChanges + "?since=0"},
		{"GET", proto.RouteEntry + "?path=a"},
		{"GET", proto.RouteLegacyIndex},
		{"GET", proto.RouteReadyz},
	} {
		var body proto.Error
		if code, raw := e.do(c.method, c.route, nil, &body); code != http.StatusServiceUnavailable || body.Error == "" {
			t.Errorf("%s %s with the database down: %d %s", c.method, c.route, code, raw)
		}
	}
	var body proto.Error
	if code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{inlineItem("b", 0, []byte("b"))}}, &body); code != http.StatusServiceUnavailable {
		t.Errorf("commit with the database down: %d %s", code, raw)
	}
	if code, _ := e.do("GET", proto.RouteHealthz, nil, nil); code != 200 {
		t.Errorf("healthz with the database down: %d", code)
	}
}
