// Package security tests the engine against hostile input: requests without a valid
// token, paths that try to leave the folder in every spelling, symlinks inside an
// agent's folder that point outside it, oversized bodies, clients that trickle their
// requests, and content that does not match its hash. Each attack must get a clear
// refusal and change nothing.
package security

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

const (
	goodToken = "security-test-good-token"
	agentName = "tester"
)

// server is a real sync server in process with token authentication, over a store and
// a block store in a temporary dir.
type server struct {
	t     testing.TB
	dir   string
	url   string
	store store.Store
}

func newServer(t testing.TB, cfg syncserver.Config) *server {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := blobs.Open(filepath.Join(dir, "blocks"))
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	tokens, err := syncserver.ParseTokens(strings.NewReader(goodToken + " " + agentName + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.GCInterval = -1
	srv, err := syncserver.New(cfg, st, bs, tokens, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Shutdown(); hs.Close(); st.Close() })
	return &server{t: t, dir: dir, url: hs.URL, store: st}
}

// state is what an attack must not change: the store's seq and every file under the
// server's data dir (blocks included) with its content hash.
type state struct {
	seq   int64
	files string
}

func (s *server) snapshot() state {
	s.t.Helper()
	st, err := s.store.Stats(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return state{seq: st.Seq, files: treeListing(s.t, filepath.Join(s.dir, "blocks"))}
}

// treeListing lists every file under dir with its SHA-256, one per line.
func treeListing(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, rel+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (s *server) unchanged(before state, what string) {
	s.t.Helper()
	if after := s.snapshot(); after != before {
		s.t.Errorf("%s changed the server: seq %d → %d, files:\n%s\n→\n%s", what, before.seq, after.seq, before.files, after.files)
	}
}

// request is one HTTP request of a test.
type request struct {
	method, target string // target is the path and raw query
	body           []byte
	contentType    string
	token          string // "" sends no Authorization header
	rawAuth        string // sent as is when set
}

func (s *server) do(r request) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(r.method, s.url+r.target, bytes.NewReader(r.body))
	if err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.target, err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	switch {
	case r.rawAuth != "":
		req.Header.Set("Authorization", r.rawAuth)
	case r.token != "":
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// isJSONError reports whether body is the server's JSON error object.
func isJSONError(body []byte) bool {
	var e struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(body, &e) == nil && e.Error != ""
}

func jsonBody(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// commitFile commits content at p with the good token and returns its entry.
func (s *server) commitFile(p string, content []byte) proto.Entry {
	s.t.Helper()
	body := jsonBody(s.t, proto.CommitRequest{Items: []proto.CommitItem{{
		Path: p, Type: proto.TypeFile, Mode: 0o644, Size: int64(len(content)), SHA256: sum(content), Data: content,
	}}})
	code, resp := s.do(request{method: "POST", target: proto.RouteCommit, body: body, contentType: "application/json", token: goodToken})
	if code != http.StatusOK {
		s.t.Fatalf("commit %q: %d %s", p, code, resp)
	}
	var cr proto.CommitResponse
	if err := json.Unmarshal(resp, &cr); err != nil || len(cr.Results) != 1 || cr.Results[0].Entry == nil {
		s.t.Fatalf("commit %q: %s", p, resp)
	}
	return *cr.Results[0].Entry
}
