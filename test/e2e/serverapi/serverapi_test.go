// Package serverapi is the end-to-end test of the syncserver binary: it builds the real
// command, starts it on a free loopback port and drives the /v1 protocol and the
// original API over HTTP, with token authentication, then stops it with SIGTERM.
package serverapi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

const token = "e2e-token-0123456789abcdef"

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "syncserver-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "syncserver")
	build := exec.Command("go", "build", "-o", binary, "github.com/syncedfolder/synced-folder/cmd/syncserver")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build syncserver:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running syncserver process.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
	done chan error
}

// start runs the binary with args and waits for its "listening" log line.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.logs.Write(append(line, '\n'))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case err := <-s.done:
		t.Fatalf("syncserver exited before listening: %v\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill() // the test fails on the next line either way
		t.Fatalf("syncserver did not listen within 30s\n%s", s.logs)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // fails only if it already exited, which s.done reports
			t.Logf("syncserver killed: %v", <-s.done)
		}
	})
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("syncserver exited with %v after SIGTERM\n%s", err, s.logs)
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("syncserver did not stop within 30s of SIGTERM\n%s", s.logs)
	}
}

func (s *server) req(method, path, tok string, body io.Reader, hdr ...string) (int, []byte, http.Header) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, raw, resp.Header
}

func (s *server) json(method, path string, in, out any, wantCode int) {
	s.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	code, raw, _ := s.req(method, path, token, body)
	if code != wantCode {
		s.t.Fatalf("%s %s: %d %s; want %d", method, path, code, raw, wantCode)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

func hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeTokens(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(f, []byte("# e2e\n"+token+" e2e-agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestServerEndToEnd(t *testing.T) {
	data := t.TempDir()
	s := start(t, "--data-dir", data, "--token-file", writeTokens(t))

	// Auth: probes are open, the API is not.
	if code, _, _ := s.req("GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	if code, _, _ := s.req("GET", "/readyz", "", nil); code != 200 {
		t.Fatalf("readyz: %d", code)
	}
	for _, tok := range []string{"", "not-the-token-at-all"} {
		code, raw, hdr := s.req("GET", "/v1/stats", tok, nil)
		if code != 401 || !strings.Contains(string(raw), `"error"`) || hdr.Get("WWW-Authenticate") == "" {
			t.Fatalf("token %q: %d %s", tok, code, raw)
		}
	}

	// /v1: a long poll parked before the commit hears of it.
	polled := make(chan proto.ChangesResponse, 1)
	go func() {
		var r proto.ChangesResponse
		s.json("GET", "/v1/changes?since=0&wait=30s", nil, &r, 200)
		polled <- r
	}()
	time.Sleep(200 * time.Millisecond)

	content := bytes.Repeat([]byte("synced folder "), 10000)
	blocks := [][]byte{content[:50000], content[50000:]}
	var miss proto.MissingBlocksResponse
	s.json("POST", "/v1/blocks/missing", proto.MissingBlocksRequest{Hashes: []string{hash(blocks[0]), hash(blocks[1])}}, &miss, 200)
	if len(miss.Missing) != 2 {
		t.Fatalf("missing %v", miss)
	}
	for _, b := range blocks {
		if code, raw, _ := s.req("PUT", "/v1/blocks/"+hash(b), token, bytes.NewReader(b)); code != 201 {
			t.Fatalf("PUT block: %d %s", code, raw)
		}
	}
	item := proto.CommitItem{Path: "docs/big.txt", Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644,
		MTimeNs: time.Now().UnixNano(), SHA256: hash(content),
		Blocks: []proto.Block{{Hash: hash(blocks[0]), Size: int64(len(blocks[0]))}, {Hash: hash(blocks[1]), Size: int64(len(blocks[1]))}}}
	small := proto.CommitItem{Path: "docs/small.txt", Type: proto.TypeFile, Size: 5, Mode: 0o600, SHA256: hash([]byte("small")), Data: []byte("small")}
	var cr proto.CommitResponse
	s.json("POST", "/v1/commit", proto.CommitRequest{Items: []proto.CommitItem{item, small}}, &cr, 200)
	for _, r := range cr.Results {
		if r.Status != proto.StatusOK || r.Entry.ModifiedBy != "e2e-agent" {
			t.Fatalf("commit result %+v", r)
		}
	}
	select {
	case r := <-polled:
		if len(r.Entries) == 0 || r.Entries[0].Path != "docs/big.txt" {
			t.Fatalf("long poll answer %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not woken by the commit")
	}
	code, got, hdr := s.req("GET", "/v1/file?path=docs/big.txt", token, nil)
	if code != 200 || !bytes.Equal(got, content) || hdr.Get("X-Sync-Sha256") != hash(content) {
		t.Fatalf("GET /v1/file: %d, %d bytes", code, len(got))
	}

	// Original API on the same store.
	var idx map[string]struct {
		SHA     string `json:"sha"`
		Version int64  `json:"version"`
	}
	s.json("GET", "/index", nil, &idx, 200)
	if idx["docs/small.txt"].SHA != hash([]byte("small")) || len(idx) != 2 {
		t.Fatalf("index %+v", idx)
	}
	up := func(p, base string, b []byte) (int, map[string]any) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if err := mw.WriteField("path", p); err != nil {
			t.Fatal(err)
		}
		if base != "" {
			if err := mw.WriteField("base_sha", base); err != nil {
				t.Fatal(err)
			}
		}
		fw, err := mw.CreateFormFile("file", filepath.Base(p))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := mw.Close(); err != nil {
			t.Fatal(err)
		}
		code, raw, _ := s.req("POST", "/upload", token, &buf, "Content-Type", mw.FormDataContentType())
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("upload %s: %d, body not JSON (%v): %s", p, code, err, raw)
		}
		return code, out
	}
	if code, out := up("docs/small.txt", hash([]byte("small")), []byte("small v2")); code != 200 || out["sha"] != hash([]byte("small v2")) {
		t.Fatalf("upload on the right base: %d %v", code, out)
	}
	code, out := up("docs/small.txt", hash([]byte("small")), []byte("stale edit"))
	cp, _ := out["conflict_path"].(string)
	if code != 409 || !strings.HasPrefix(cp, "docs/small.sync-conflict-") || !strings.HasSuffix(cp, "-e2e-agent.txt") {
		t.Fatalf("stale upload: %d %v", code, out)
	}
	if code, got, _ := s.req("GET", "/download?path="+cp, token, nil); code != 200 || string(got) != "stale edit" {
		t.Fatalf("download conflict copy: %d %q", code, got)
	}
	if code, got, _ := s.req("GET", "/download?path=docs/small.txt", token, nil); code != 200 || string(got) != "small v2" {
		t.Fatalf("download: %d %q", code, got)
	}
	if code, raw, _ := s.req("GET", "/download?path=nope", token, nil); code != 404 || !strings.Contains(string(raw), `"error"`) {
		t.Fatalf("download unknown: %d %s", code, raw)
	}
	if code, _, _ := s.req("POST", "/delete", token, strings.NewReader(`{"path":"docs/big.txt"}`)); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, raw, _ := s.req("POST", "/delete", token, strings.NewReader(`{"path":"../etc/passwd"}`)); code != 400 {
		t.Fatalf("delete bad path: %d %s", code, raw)
	}
	var logs []map[string]any
	s.json("GET", "/logs?limit=10", nil, &logs, 200)
	if len(logs) != 5 || logs[0]["action"] != "delete" || logs[0]["agent"] != "e2e-agent" || logs[1]["action"] != "conflict" {
		t.Fatalf("logs %v", logs)
	}

	// Metrics name route templates.
	code, met, _ := s.req("GET", "/metrics", "", nil)
	for _, want := range []string{`sync_uploads_total 4`, `sync_deletes_total 1`, `sync_requests_total{endpoint="/v1/blocks/{hash}",method="PUT"} 2`, `sync_requests_total{endpoint="/upload",method="POST"} 2`} {
		if code != 200 || !strings.Contains(string(met), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(met), hash(blocks[0])) {
		t.Error("a raw block path became a label")
	}
	if !strings.Contains(s.logs.String(), `"requestId"`) {
		t.Error("no request log line with a request id")
	}

	// SIGTERM while a block upload is in flight: the upload completes, then the process
	// exits 0 and the store was closed cleanly.
	pr, pw := io.Pipe()
	slow := bytes.Repeat([]byte("z"), 256<<10)
	uploaded := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("PUT", s.url+"/v1/blocks/"+hash(slow), pr)
		req.Header.Set("Authorization", "Bearer "+token)
		req.ContentLength = int64(len(slow))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			uploaded <- -1
			return
		}
		resp.Body.Close()
		uploaded <- resp.StatusCode
	}()
	if _, err := pw.Write(slow[:1000]); err != nil {
		t.Fatalf("start of the upload body: %v (status %d)\n%s", err, <-uploaded, s.logs)
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := pw.Write(slow[1000:]); err != nil {
		t.Fatalf("rest of the upload body: %v (status %d)\n%s", err, <-uploaded, s.logs)
	}
	pw.Close()
	if c := <-uploaded; c != 201 {
		t.Fatalf("in-flight upload during shutdown answered %d\n%s", c, s.logs)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, s.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if !strings.Contains(s.logs.String(), "store closed") {
		t.Fatalf("store not closed on shutdown\n%s", s.logs)
	}

	// A restart on the same data dir serves everything committed.
	s2 := start(t, "--data-dir", data, "--token-file", writeTokens(t))
	var st proto.Stats
	s2.json("GET", "/v1/stats", nil, &st, 200)
	if st.Seq != 5 || st.Files != 2 || st.Conflicts != 1 {
		t.Fatalf("stats after restart %+v", st)
	}
	if code, got, _ := s2.req("GET", "/v1/blocks/"+hash(slow), token, nil); code != 200 || !bytes.Equal(got, slow) {
		t.Fatalf("block uploaded during shutdown: %d", code)
	}
	s2.stop()
}

// runBinary runs the binary to its end and returns its output and exit code.
func runBinary(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

func TestStartupRefusals(t *testing.T) {
	run := func(args ...string) (int, string) {
		out, code := runBinary(t, args...)
		return code, out
	}
	dir := t.TempDir()
	if code, out := run("--listen", "0.0.0.0:0", "--data-dir", dir); code != 2 || !strings.Contains(out, "loopback") {
		t.Errorf("open listener without tokens: exit %d\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad-tokens")
	if err := os.WriteFile(bad, []byte("only-one-field\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run("--listen", "127.0.0.1:0", "--data-dir", dir, "--token-file", bad); code != 1 || !strings.Contains(out, "line 1") {
		t.Errorf("malformed token file: exit %d\n%s", code, out)
	}
	if code, out := run("--keep-versions", "-1"); code != 2 || !strings.Contains(out, "keep-versions") {
		t.Errorf("negative --keep-versions: exit %d\n%s", code, out)
	}
	cmd := exec.Command(binary, "--data-dir", dir)
	cmd.Env = append(os.Environ(), "SYNCSERVER_LISTEN=10.1.2.3:80")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "10.1.2.3:80") {
		t.Errorf("SYNCSERVER_LISTEN not read: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
	if code, out := run("--tls-cert-file", filepath.Join(dir, "none.pem")); code != 2 || !strings.Contains(out, "tls-key-file") {
		t.Errorf("half TLS config: exit %d\n%s", code, out)
	}
}
