package security

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

func TestOversizedBodiesAreRefused(t *testing.T) {
	s := newServer(t, syncserver.Config{MaxBlockSize: 4 << 10, MaxJSONBody: 4 << 10, MaxCommitBody: 8 << 10, MaxFileSize: 16 << 10, MaxInlineSize: 2 << 10})
	big := bytes.Repeat([]byte("x"), 64<<10)
	var zbomb bytes.Buffer
	zw, err := zstd.NewWriter(&zbomb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(bytes.Repeat([]byte{0}, 8<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	upBody, upType := legacyUpload(t, "big.bin", big)
	longHashes := make([]string, 200)
	for i := range longHashes {
		longHashes[i] = sum([]byte{byte(i)})
	}
	cases := []struct {
		name string
		req  request
		hdr  map[string]string
	}{
		{"block above the block limit", request{method: "PUT", target: proto.RouteBlocks + sum(big), body: big}, nil},
		{"zstd block that inflates above the limit", request{method: "PUT", target: proto.RouteBlocks + sum(make([]byte, 8<<20)), body: zbomb.Bytes()}, map[string]string{"Content-Encoding": "zstd"}},
		{"commit body above its limit", request{method: "POST", target: proto.RouteCommit, contentType: "application/json",
			body: jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: "big.bin", Type: proto.TypeFile, Mode: 0o644, Size: int64(len(big)), SHA256: sum(big), Data: big}}})}, nil},
		{"missing-blocks query above the JSON limit", request{method: "POST", target: proto.RouteBlocksMissing, contentType: "application/json",
			body: jsonBody(t, proto.MissingBlocksRequest{Hashes: longHashes})}, nil},
		{"legacy delete above the JSON limit", request{method: "POST", target: proto.RouteLegacyDelete, contentType: "application/json",
			body: jsonBody(t, map[string]string{"path": strings.Repeat("a", 8<<10)})}, nil},
		{"legacy upload above the file limit", request{method: "POST", target: proto.RouteLegacyUpload, body: upBody, contentType: upType}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.t = t
			before := s.snapshot()
			req, err := http.NewRequest(c.req.method, s.url+c.req.target, bytes.NewReader(c.req.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+goodToken)
			if c.req.contentType != "" {
				req.Header.Set("Content-Type", c.req.contentType)
			}
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !isJSONError(body) {
				t.Errorf("got %d %s, want 413 with a JSON error", resp.StatusCode, truncate(body))
			}
			s.unchanged(before, c.name)
		})
	}
}

func TestHashMismatchesAreRefused(t *testing.T) {
	s := newServer(t, syncserver.Config{})
	content := []byte("the real content")
	other := []byte("something else")
	cases := []struct {
		name string
		req  request
	}{
		{"block whose bytes are not its hash", request{method: "PUT", target: proto.RouteBlocks + sum(other), body: content}},
		{"block named by an invalid hash", request{method: "PUT", target: proto.RouteBlocks + "zz", body: content}},
		{"block named by an uppercase hash", request{method: "PUT", target: proto.RouteBlocks + strings.ToUpper(sum(content)), body: content}},
		{"inlined data that is not the file's hash", request{method: "POST", target: proto.RouteCommit, contentType: "application/json",
			body: jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: "a.txt", Type: proto.TypeFile, Mode: 0o644, Size: int64(len(content)), SHA256: sum(other), Data: content}}})}},
		{"inlined data of another size", request{method: "POST", target: proto.RouteCommit, contentType: "application/json",
			body: jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: "a.txt", Type: proto.TypeFile, Mode: 0o644, Size: 3, SHA256: sum(content), Data: content}}})}},
		{"blocks the server does not have", request{method: "POST", target: proto.RouteCommit, contentType: "application/json",
			body: jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: "a.txt", Type: proto.TypeFile, Mode: 0o644, Size: int64(len(content)), SHA256: sum(content),
				Blocks: []proto.Block{{Hash: sum(content), Size: int64(len(content))}}}}})}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.t = t
			before := s.snapshot()
			c.req.token = goodToken
			code, body := s.do(c.req)
			switch {
			case code >= 400 && code < 500 && isJSONError(body):
			case code == http.StatusOK && itemsFailed(body):
			default:
				t.Errorf("got %d %s, want a 4xx JSON error", code, truncate(body))
			}
			s.unchanged(before, c.name)
		})
	}
	// The same block under its true hash is stored: the refusal was for the mismatch.
	s.t = t
	if code, body := s.do(request{method: "PUT", target: proto.RouteBlocks + sum(content), body: content, token: goodToken}); code/100 != 2 {
		t.Fatalf("PUT of a correct block: %d %s", code, body)
	}
}

// runServer runs the server as the syncserver program does (syncserver.Run, with its
// real http.Server), with short read timeouts, and returns its address.
func runServer(t *testing.T, headerTimeout, readTimeout time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(goodToken+" "+agentName+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- syncserver.Run(ctx, syncserver.Options{
			Listen:            "127.0.0.1:0",
			DataDir:           filepath.Join(dir, "data"),
			TokenFile:         tokens,
			ShutdownGrace:     time.Second,
			ReadHeaderTimeout: headerTimeout,
			ReadTimeout:       readTimeout,
			OpenStore: func(context.Context) (store.Store, error) {
				return sqlite.Open(filepath.Join(dir, "meta.db"))
			},
			Config: syncserver.Config{GCInterval: -1},
			Ready:  func(a net.Addr) { addr <- a.String() },
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case a := <-addr:
		return a
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	return ""
}

// trickle sends prefix, then one byte of rest every interval, and reports how the
// server ended the connection: nil when it closed it (or answered and closed), an error
// when it still held it open after bound — a slow client may then hold a connection
// forever.
func trickle(addr, prefix, rest string, interval, bound time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(c, prefix); err != nil {
		return nil
	}
	closed := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(bound))
		_, err := io.Copy(io.Discard, bufio.NewReader(c)) // ends on close, reset or the deadline
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			closed <- fmt.Errorf("connection still open after %v of trickling", bound)
			return
		}
		closed <- nil
	}()
	for i := 0; ; i = (i + 1) % max(len(rest), 1) {
		select {
		case err := <-closed:
			return err
		case <-time.After(interval):
		}
		if len(rest) > 0 {
			if _, err := c.Write([]byte{rest[i]}); err != nil {
				return <-closed
			}
		}
	}
}

func TestSlowClientsAreCutOff(t *testing.T) {
	addr := runServer(t, 300*time.Millisecond, time.Second)
	// The bound only detects a server that never cuts a slow client off; it is far
	// above the timeouts configured here.
	const bound = 30 * time.Second
	headers := "X-Padding: " + strings.Repeat("a", 4096) + "\r\n"
	body := strings.Repeat("b", 4096)
	results := make(chan error, 12)
	for range 6 {
		go func() {
			results <- trickle(addr, "GET /v1/stats HTTP/1.1\r\nHost: x\r\n", headers, 50*time.Millisecond, bound)
		}()
		go func() {
			results <- trickle(addr, fmt.Sprintf("PUT %s%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
				proto.RouteBlocks, sum([]byte(body)), goodToken, len(body)), body, 50*time.Millisecond, bound)
		}()
	}
	// Meanwhile, a normal client is served.
	resp, err := http.Get("http://" + addr + proto.RouteHealthz)
	if err != nil {
		t.Fatalf("healthz while slow clients hold connections: %v", err)
	}
	resp.Body.Close()
	for range 12 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	// Nothing a trickled body carried was stored.
	req, _ := http.NewRequest("GET", "http://"+addr+proto.RouteBlocks+sum([]byte(body)), nil)
	req.Header.Set("Authorization", "Bearer "+goodToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of the trickled block: %d, want 404", resp.StatusCode)
	}
}

func TestLongPollOutlivesTheReadTimeout(t *testing.T) {
	// A long poll waits longer than the read timeout: the timeout must cut slow
	// senders, not clients waiting for an answer.
	addr := runServer(t, 300*time.Millisecond, 500*time.Millisecond)
	req, _ := http.NewRequest("GET", "http://"+addr+proto.RouteChanges+"?since=0&wait=2s", nil)
	req.Header.Set("Authorization", "Bearer "+goodToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("long poll: %v", err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("long poll: %d %v", resp.StatusCode, err)
	}
}
