package security

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// FuzzPathsThroughTheServer sends arbitrary paths through the HTTP layer, as a query
// parameter and inside a commit: the server either refuses them with a 4xx JSON error
// and changes nothing, or stores and finds the path exactly as given, and only when it
// is a clean path. It never answers 5xx.
func FuzzPathsThroughTheServer(f *testing.F) {
	for _, p := range append(append([]string{"a.txt", "dir/a b.txt", "é/ü.txt"}, badPaths...), encodedForms...) {
		f.Add(p)
	}
	s := newServer(f, syncserver.Config{})
	content := []byte("fuzz")
	f.Fuzz(func(t *testing.T, p string) {
		s.t = t
		_, cleanErr := proto.CleanPath(p)
		before := s.snapshot()
		code, body := s.do(request{method: "GET", target: proto.RouteEntry + "?path=" + url.QueryEscape(p), token: goodToken})
		switch {
		case code >= 500:
			t.Fatalf("GET entry %q: %d %s", p, code, body)
		case cleanErr != nil && code != http.StatusBadRequest:
			t.Fatalf("GET entry of the unclean path %q: %d, want 400", p, code)
		}
		s.unchanged(before, "GET entry")

		req := jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: p, Type: proto.TypeFile, Mode: 0o644, Size: int64(len(content)), SHA256: sum(content), Data: content}}})
		code, body = s.do(request{method: "POST", target: proto.RouteCommit, body: req, contentType: "application/json", token: goodToken})
		if code >= 500 {
			t.Fatalf("commit %q: %d %s", p, code, body)
		}
		var sent proto.CommitRequest
		_ = json.Unmarshal(req, &sent) // what the server decoded: invalid UTF-8 became U+FFFD
		_, sentErr := proto.CleanPath(sent.Items[0].Path)
		var cr proto.CommitResponse
		stored := code == http.StatusOK && json.Unmarshal(body, &cr) == nil && len(cr.Results) == 1 && cr.Results[0].Status == proto.StatusOK
		switch {
		case stored && sentErr != nil:
			t.Fatalf("commit stored the unclean path %q", sent.Items[0].Path)
		case stored && cr.Results[0].Entry.Path != sent.Items[0].Path:
			t.Fatalf("commit of %q stored %q", sent.Items[0].Path, cr.Results[0].Entry.Path)
		case !stored:
			s.unchanged(before, "a refused commit")
		}
	})
}
