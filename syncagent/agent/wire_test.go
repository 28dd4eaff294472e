package agent

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// call is one request an agent made.
type call struct {
	method, path, query string
	body                []byte
	answer              int // bytes of the answer body as sent
}

// recorder is a transport that keeps every request.
type recorder struct {
	// without, when set, names routes the server is made to lack, as an older one
	// does: a request whose path ends with one of them is answered 404 without being
	// sent (and is kept all the same).
	without []string

	mu    sync.Mutex
	calls []call
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	c := call{method: req.Method, path: req.URL.Path, query: req.URL.RawQuery}
	for _, suffix := range r.without {
		if strings.HasSuffix(req.URL.Path, suffix) {
			r.mu.Lock()
			r.calls = append(r.calls, c)
			r.mu.Unlock()
			return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: io.NopCloser(strings.NewReader("404 page not found\n")), Request: req}, nil
		}
	}
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		c.body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	c.answer = len(b)
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return resp, nil
}

// take returns the calls since the last take.
func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

func recorded(rec *recorder, srv *testServer) func(*Config) {
	return func(c *Config) {
		cl, err := client.New(client.Options{BaseURL: srv.url, Timeout: 20 * time.Second, FeedMaxBlocks: 2,
			OmitCommitBlocks: true, Transport: rec})
		if err != nil {
			panic(err)
		}
		c.Server = cl
	}
}

func count(calls []call, method, prefix string) (n, bytes int) {
	for _, c := range calls {
		if c.method == method && strings.HasPrefix(c.path, prefix) {
			n++
			bytes += len(c.body)
		}
	}
	return n, bytes
}

// TestLargeFileChangesSendLittle checks the wire shortcuts of issue 9 end to end: an edit
// of a large file commits a block-list delta and the reader fetches a delta; a rename
// commits a copyFrom and the reader copies its own file; neither sends the whole list.
func TestLargeFileChangesSendLittle(t *testing.T) {
	srv := startServer(t)
	wdir, rdir := filepath.Join(t.TempDir(), "w"), filepath.Join(t.TempDir(), "r")
	var wrec, rrec recorder
	w := newAgent(t, srv, wdir, "writer", recorded(&wrec, srv))
	r := newAgent(t, srv, rdir, "reader", recorded(&rrec, srv))
	data := make([]byte, 8<<20)
	rng := rand.NewChaCha8([32]byte{9})
	_, _ = rng.Read(data)
	big := filepath.Join(wdir, "big.bin")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	once(t, w)
	once(t, r)
	sameManifest(t, wdir, rdir)
	wrec.take()
	rrec.take()

	step := func(name string, change func()) (wc, rc []call) {
		t.Helper()
		change()
		once(t, w)
		once(t, r)
		sameManifest(t, wdir, rdir)
		wc, rc = wrec.take(), rrec.take()
		_, commitBytes := count(wc, "POST", proto.RouteCommit)
		if commitBytes == 0 || commitBytes > 4<<10 {
			t.Errorf("%s: commit requests of %d bytes, want a small reference", name, commitBytes)
		}
		if _, q := count(wc, "POST", proto.RouteBlocksMissing); q > 4<<10 {
			t.Errorf("%s: missing-blocks queries of %d bytes", name, q)
		}
		return wc, rc
	}

	// A 1-byte change in the middle.
	wc, rc := step("edit", func() {
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(big, data, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.Contains(string(commitBodies(wc)), `"blocksDelta"`) {
		t.Errorf("edit: commit without blocksDelta: %s", commitBodies(wc))
	}
	if n, _ := count(wc, "PUT", proto.RouteBlocks); n == 0 || n > 3 {
		t.Errorf("edit: writer uploaded %d blocks", n)
	}
	if n, _ := count(rc, "GET", proto.RouteBlocks); n == 0 || n > 3 {
		t.Errorf("edit: reader fetched %d blocks", n)
	}
	if got := answered(rc, "GET", proto.RouteBlocks); got > 8<<10 {
		t.Errorf("edit: reader received %d bytes of blocks, want a delta of the block it holds", got)
	}
	if !hasQuery(rc, proto.RouteEntry, "baseSeq=") {
		t.Errorf("edit: reader did not ask for a delta: %+v", rc)
	}

	// A 1-byte insertion at the start.
	step("insert", func() {
		data = append([]byte{'!'}, data...)
		if err := os.WriteFile(big, data, 0o644); err != nil {
			t.Fatal(err)
		}
	})

	// A rename: one commit (the new path copying the old one's version, and the old
	// path's delete), which the reader gets in one pull and carries out as a rename of
	// its own file.
	before, err := os.Stat(filepath.Join(rdir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	wc, rc = step("rename", func() {
		if err := os.Rename(big, filepath.Join(wdir, "moved.bin")); err != nil {
			t.Fatal(err)
		}
	})
	if body := string(commitBodies(wc)); !strings.Contains(body, `"copyFrom"`) || !strings.Contains(body, `"deletes"`) {
		t.Errorf("rename: commit without copyFrom and deletes: %s", body)
	}
	if n, _ := count(wc, "POST", proto.RouteDelete); n != 0 {
		t.Errorf("rename: %d delete requests besides the commit", n)
	}
	if after, err := os.Stat(filepath.Join(rdir, "moved.bin")); runtime.GOOS == "linux" && (err != nil || !os.SameFile(before, after)) {
		t.Errorf("rename: the reader's moved.bin (%v) is not its big.bin renamed", err)
	}
	if n, _ := count(wc, "PUT", proto.RouteBlocks); n != 0 {
		t.Errorf("rename: writer uploaded %d blocks", n)
	}
	if n, _ := count(rc, "GET", proto.RouteBlocks); n != 0 {
		t.Errorf("rename: reader fetched %d blocks", n)
	}
	if n, _ := count(rc, "GET", proto.RouteEntry); n != 0 {
		t.Errorf("rename: reader fetched %d entries", n)
	}
}

func commitBodies(calls []call) []byte {
	var out []byte
	for _, c := range calls {
		if c.path == proto.RouteCommit {
			out = append(out, c.body...)
		}
	}
	return out
}

func hasQuery(calls []call, path, sub string) bool {
	for _, c := range calls {
		if c.path == path && strings.Contains(c.query, sub) {
			return true
		}
	}
	return false
}

func answered(calls []call, method, prefix string) (n int) {
	for _, c := range calls {
		if c.method == method && strings.HasPrefix(c.path, prefix) {
			n += c.answer
		}
	}
	return n
}
