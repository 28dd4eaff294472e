package execute

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// commitGate is a proxy in front of a real server that counts the commit requests in
// flight (and the most at once), holds each commit's answer until a second commit has
// arrived (or a second passed) so that the overlap is observable, and answers the
// commit numbered failAt (1-based; 0: none) with a 503 without passing it on.
type commitGate struct {
	failAt        int32
	mu            sync.Mutex
	inflight, max int
	seen          atomic.Int32
}

func (g *commitGate) start(t *testing.T, target string) string {
	t.Helper()
	return interpose(t, target, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if r.URL.Path != proto.RouteCommit {
			proxy.ServeHTTP(w, r)
			return
		}
		n := g.seen.Add(1)
		g.mu.Lock()
		g.inflight++
		g.max = max(g.max, g.inflight)
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.inflight--
			g.mu.Unlock()
		}()
		if n == g.failAt {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"unavailable for the test"}`))
			return
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		// The answer waits for the next commit to come in (the last one's, a second).
		for deadline := time.Now().Add(time.Second); g.seen.Load() == n && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// downloadsTo checks that a new agent on url downloads exactly want.
func downloadsTo(t *testing.T, url string, want map[string][]byte) {
	t.Helper()
	down := newEnvOn(t, url)
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, want)
}

// writeSmallFiles writes n files of a few hundred bytes under dir.
func writeSmallFiles(t *testing.T, dir string, n int) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	for i := range n {
		name := fmt.Sprintf("d%d/f%04d.txt", i%5, i)
		want[name] = bytes.Repeat([]byte(fmt.Sprintf("%d,", i)), 1+i%100)
		writeFile(t, filepath.Join(dir, name), string(want[name]))
	}
	return want
}

// TestLargeUploadKeepsTwoCommitsInFlight: an upload of more files than a commit holds
// starts with a small commit, sends the next commit while the previous one is at the
// server (never more than commitsInFlight), the feed still lists each dir before its files, and every file ends
// up committed, recorded and downloadable.
func TestLargeUploadKeepsTwoCommitsInFlight(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	var g commitGate
	up := newEnvOn(t, g.start(t, url))
	want := writeSmallFiles(t, up.dir, 2*maxBatch+300)
	up.rescan(t)
	out := up.run(t, up.plan())
	if out.Failed != 0 || out.Replan {
		t.Fatalf("upload: %+v", out)
	}
	// A small first commit, so that other agents start early, then full ones.
	ops := len(want) + 5 // the files and their five dirs
	wantCommits := 1 + (ops-firstBatch+maxBatch-1)/maxBatch
	if g.max != commitsInFlight || int(g.seen.Load()) != wantCommits {
		t.Errorf("%d commits, at most %d in flight; want %d commits, %d in flight", g.seen.Load(), g.max, wantCommits, commitsInFlight)
	}
	for name := range want {
		_, synced := up.x.Trees.Synced.Get(name)
		if _, remote := up.x.Trees.Remote.Get(name); !synced || !remote {
			t.Fatalf("%s: not recorded as synced and remote", name)
		}
	}
	// The feed lists every dir before what is in it, whatever the overlap.
	dirs := map[string]bool{".": true}
	for _, e := range allEntries(t, up.cl) {
		if !dirs[path.Dir(e.Path)] {
			t.Fatalf("%s (seq %d) is in the feed before its dir", e.Path, e.Seq)
		}
		if e.Type == proto.TypeDir {
			dirs[e.Path] = true
		}
	}
	if ops := up.plan(); len(ops) != 0 {
		t.Errorf("a second plan after the upload has %d ops, first %+v", len(ops), ops[0])
	}
	downloadsTo(t, url, want)
}

// TestCommitFailureAmongThoseInFlight: the second commit of an upload fails with a
// transient error while the first and third are in flight. The run returns the error,
// the files of the commits the server applied are recorded, the others are not, and the
// next run commits exactly those: nothing is lost or recorded without being committed.
func TestCommitFailureAmongThoseInFlight(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	g := commitGate{failAt: 2}
	up := newEnvOn(t, g.start(t, url))
	want := writeSmallFiles(t, up.dir, 2*maxBatch+300)
	up.rescan(t)
	if _, err := up.x.Run(t.Context(), up.plan()); err == nil {
		t.Fatal("the run went through a failed commit without an error")
	}
	onServer := map[string]bool{}
	for _, e := range allEntries(t, up.cl) {
		onServer[e.Path] = true
	}
	recorded := 0
	for name := range want {
		if _, synced := up.x.Trees.Synced.Get(name); synced != onServer[name] {
			t.Fatalf("%s: recorded %v, on the server %v", name, synced, onServer[name])
		}
		if onServer[name] {
			recorded++
		}
	}
	if recorded == 0 || recorded == len(want) {
		t.Fatalf("%d of %d files committed after the failure; want some, not all", recorded, len(want))
	}
	out := up.run(t, up.plan())
	if out.Failed != 0 || out.Done < len(want)-recorded {
		t.Fatalf("second upload: %+v", out)
	}
	downloadsTo(t, url, want)
}
