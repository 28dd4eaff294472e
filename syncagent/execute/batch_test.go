package execute

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// routeCounter is a proxy in front of a real server that counts batched and single block
// downloads; with oldServer it answers the batched route as a server without it would.
type routeCounter struct {
	batched, single atomic.Int32
}

func (rc *routeCounter) start(t *testing.T, target string, oldServer bool) string {
	t.Helper()
	return interpose(t, target, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		switch {
		case r.URL.Path == proto.RouteBlocksGet:
			rc.batched.Add(1)
			if oldServer {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusMethodNotAllowed)
				_, _ = w.Write([]byte(`{"error":"method not allowed"}`))
				return
			}
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, proto.RouteBlocks):
			rc.single.Add(1)
		}
		proxy.ServeHTTP(w, r)
	})
}

// interpose starts a server on loopback that hands every request to handle, with a
// proxy to target for the requests it passes on, and returns its URL.
func interpose(t *testing.T, target string, handle func(w http.ResponseWriter, r *http.Request, proxy http.Handler)) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r, proxy) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// smallTree writes n small files (and one of 300 KiB) through an uploading agent.
func smallTree(t *testing.T, url string, n int) map[string][]byte {
	t.Helper()
	up := newEnvOn(t, url)
	want := map[string][]byte{}
	for i := range n {
		data := bytes.Repeat([]byte(fmt.Sprintf("file %d;", i)), 1+i%200)
		name := fmt.Sprintf("d%d/f%03d.txt", i%7, i)
		want[name] = data
		writeFile(t, filepath.Join(up.dir, name), string(data))
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16)
	want["big.bin"] = big
	writeFile(t, filepath.Join(up.dir, "big.bin"), string(big))
	up.rescan(t)
	if out := up.run(t, up.plan()); out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	return want
}

func checkTree(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v; want %d", name, len(got), err, len(data))
		}
	}
	noTempFiles(t, dir)
}

func TestSmallFilesDownloadInBatches(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	const n = 600
	want := smallTree(t, url, n)
	var rc routeCounter
	down := newEnvOn(t, rc.start(t, url, false))
	down.pull(t)
	down.rescan(t)
	out := down.run(t, down.plan())
	if out.Failed != 0 || out.Done < len(want) {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, want)
	// 600 small files in batches of at most 256; the file over batchFileMax goes alone.
	if b, s := rc.batched.Load(), rc.single.Load(); b < 3 || b > 4 || s > 2 {
		t.Errorf("%d batched and %d single block requests for %d small files and one large", b, s, n)
	}
	for p, idx := range down.x.Trees.Index.All() {
		if data, ok := want[p]; ok && (idx.Size != int64(len(data)) || nodeAt(down.x.Trees.Synced, p).SHA256 != idx.SHA256) {
			t.Errorf("%s: recorded %+v, synced %+v", p, idx, nodeAt(down.x.Trees.Synced, p))
		}
	}
}

// A batch's buffer goes back for the next batches only once every file of the batch
// landed: here each buffer is overwritten as it goes back, and every file must still
// hold its own bytes.
func TestBatchBufferGoesBackOnceItsFilesLanded(t *testing.T) {
	var returned atomic.Int32
	returnBatchBuf = func(b *[]byte) {
		returned.Add(1)
		clear(*b)
	}
	t.Cleanup(func() { returnBatchBuf = nil })
	url, _ := testserver.Start(t, t.TempDir(), nil)
	want := smallTree(t, url, 600)
	down := newEnvOn(t, url)
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Done < len(want) {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, want)
	if n := returned.Load(); n < 3 {
		t.Errorf("%d batch buffers went back for 600 small files; want one per batch", n)
	}
}

func TestSmallFilesFromAServerWithoutBatches(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	const n = 600
	want := smallTree(t, url, n)
	var rc routeCounter
	down := newEnvOn(t, rc.start(t, url, true))
	down.pull(t)
	down.rescan(t)
	out, err := down.x.Run(context.Background(), down.plan())
	if err != nil || out.Failed != 0 || out.Done < len(want) {
		t.Fatalf("download: %+v, %v", out, err)
	}
	checkTree(t, down.dir, want)
	// At most the batches already in flight when the first refusal came back are tried.
	if b, s := rc.batched.Load(), rc.single.Load(); b > batchesInFlight || int(s) < n {
		t.Errorf("%d batched and %d single block requests; want at most %d batched", b, s, batchesInFlight)
	}
	if !down.x.noBatch.Load() {
		t.Error("the executor still tries batches on a server without them")
	}
}

// A small file the server holds as several blocks: the batch guesses one block named by
// the file's hash, the server has none, and the file takes the usual path.
func TestSmallFileOfSeveralBlocksFallsBackFromTheBatch(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	up := newEnvOn(t, url)
	data := bytes.Repeat([]byte("two blocks "), 100)
	item := proto.CommitItem{Path: "split.txt", Type: proto.TypeFile, Size: int64(len(data)), Mode: 0o644,
		SHA256: sha(data)}
	for _, part := range [][]byte{data[:500], data[500:]} {
		if err := up.cl.PutBlock(context.Background(), sha(part), part, false); err != nil {
			t.Fatal(err)
		}
		item.Blocks = append(item.Blocks, proto.Block{Hash: sha(part), Size: int64(len(part))})
	}
	if res, err := up.cl.Commit(context.Background(), []proto.CommitItem{item}); err != nil || res[0].Status != proto.StatusOK {
		t.Fatalf("commit: %v %+v", err, res)
	}
	var rc routeCounter
	down := newEnvOn(t, rc.start(t, url, false))
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Done != 1 {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, map[string][]byte{"split.txt": data})
	// The usual path fetches the file's two blocks in one request too (fetch.go).
	if b, s := rc.batched.Load(), rc.single.Load(); b != 2 || s != 0 {
		t.Errorf("%d batched and %d single block requests; want 2 (the guess, then the file's blocks) and 0", b, s)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A small file whose content a local file holds already is copied from it: neither a
// batch nor a single GET brings it (the batch's set of local contents is keyed by a
// prefix of their hashes).
func TestSmallFileHeldLocallyIsNotFetched(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	up := newEnvOn(t, url)
	writeFile(t, filepath.Join(up.dir, "a.txt"), "the same content")
	up.rescan(t)
	if out := up.run(t, up.plan()); out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	var rc routeCounter
	down := newEnvOn(t, rc.start(t, url, false))
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Done == 0 {
		t.Fatalf("first download: %+v", out)
	}
	writeFile(t, filepath.Join(up.dir, "b.txt"), "the same content")
	writeFile(t, filepath.Join(up.dir, "c.txt"), "other content")
	up.rescan(t)
	if out := up.run(t, up.plan()); out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	b0, s0, reused0 := rc.batched.Load(), rc.single.Load(), down.x.Counters.BytesReused.Load()
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Done < 2 {
		t.Fatalf("second download: %+v", out)
	}
	checkTree(t, down.dir, map[string][]byte{"a.txt": []byte("the same content"), "b.txt": []byte("the same content"), "c.txt": []byte("other content")})
	if b, s := rc.batched.Load()-b0, rc.single.Load()-s0; b+s != 1 {
		t.Errorf("%d batched and %d single block requests for one file held locally and one not; want one", b, s)
	}
	if reused := down.x.Counters.BytesReused.Load() - reused0; reused != int64(len("the same content")) {
		t.Errorf("%d bytes taken from local files, want %d", reused, len("the same content"))
	}
}
