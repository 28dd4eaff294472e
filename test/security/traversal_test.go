package security

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// badPaths are paths that leave the folder or name one entry in two spellings, as the
// handler receives them (after the transport's one decoding).
var badPaths = []string{
	"../escape.txt",
	"..",
	"a/../../escape.txt",
	"a/..",
	"/etc/passwd",
	"//etc/passwd",
	`..\escape.txt`,
	`a\..\..\escape.txt`,
	`C:\Windows\win.ini`,
	"a\x00.txt",
	"\x00",
	"./a.txt",
	"a/./b.txt",
	"a//b.txt",
	"a/",
	"",
	"a/\x1b[31mred",
	"\xc0\xae\xc0\xae/escape.txt", // overlong UTF-8 dots
	strings.Repeat("a/", 2100) + "x",
}

// encodedForms are query strings that decode to traversal: the server must see through
// exactly one decoding.
var encodedForms = []string{
	"%2e%2e%2fescape.txt",
	"%2E%2E/escape.txt",
	"..%2fescape.txt",
	"%2fetc%2fpasswd",
	"..%5cescape.txt",
	"a%00.txt",
	"%c0%ae%c0%ae%2fescape.txt",
}

// doubleEncoded decode once to a literal, harmless name: the server must store and
// look it up as that literal and never decode it a second time.
var doubleEncoded = []string{
	"%252e%252e%252fescape.txt",
	"%252fetc%252fpasswd",
}

func TestPathTraversalIsRefusedEverywhere(t *testing.T) {
	s := newServer(t, syncserver.Config{})
	existing := s.commitFile("a/existing.txt", []byte("existing"))
	queryRoutes := []string{proto.RouteEntry, proto.RouteFile, proto.RouteVersions, proto.RouteLegacyDownload, proto.RouteAudit}

	check := func(t *testing.T, r request, what string) {
		t.Helper()
		before := s.snapshot()
		r.token = goodToken
		code, body := s.do(r)
		switch {
		case code == http.StatusBadRequest && isJSONError(body):
		case code == http.StatusOK && r.method == "POST" && itemsFailed(body):
			// a batch answers per item: the item is refused on its own
		default:
			t.Errorf("%s: got %d %s, want 400 with a JSON error", what, code, truncate(body))
		}
		s.unchanged(before, what)
	}

	for _, p := range badPaths {
		t.Run("raw "+strings.ToValidUTF8(truncate([]byte(p)), "?"), func(t *testing.T) {
			s.t = t
			q := url.QueryEscape(p)
			for _, route := range queryRoutes {
				if route == proto.RouteAudit && p == "" {
					continue // no path filter: the whole log, by design
				}
				check(t, request{method: "GET", target: route + "?path=" + q}, "GET "+route)
			}
			if !utf8.ValidString(p) {
				// JSON cannot carry it: encoders and decoders turn it into U+FFFD, a
				// harmless literal. The query forms above send the raw bytes.
				return
			}
			content := []byte("x")
			check(t, request{method: "POST", target: proto.RouteCommit, contentType: "application/json",
				body: jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: p, Type: proto.TypeFile, Mode: 0o644, Size: 1, SHA256: sum(content), Data: content}}})}, "commit")
			check(t, request{method: "POST", target: proto.RouteCommit, contentType: "application/json",
				body: jsonBody(t, proto.CommitRequest{Items: []proto.CommitItem{{Path: p, Type: proto.TypeSymlink, Mode: 0o777, Target: "/etc/passwd"}}})}, "commit symlink")
			check(t, request{method: "POST", target: proto.RouteDelete, contentType: "application/json",
				body: jsonBody(t, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: p, BaseSeq: existing.Seq}}})}, "delete")
			check(t, request{method: "POST", target: proto.RouteRestore, contentType: "application/json",
				body: jsonBody(t, proto.RestoreRequest{Path: p, Seq: existing.Seq, BaseSeq: existing.Seq})}, "restore")
			check(t, request{method: "POST", target: proto.RouteLegacyDelete, contentType: "application/json",
				body: jsonBody(t, map[string]string{"path": p})}, "legacy delete")
			body, ct := legacyUpload(t, p, content)
			check(t, request{method: "POST", target: proto.RouteLegacyUpload, body: body, contentType: ct}, "legacy upload")
		})
	}
	for _, q := range encodedForms {
		t.Run("encoded "+q, func(t *testing.T) {
			s.t = t
			for _, route := range queryRoutes {
				check(t, request{method: "GET", target: route + "?path=" + q}, "GET "+route)
			}
		})
	}
	s.t = t
	for _, q := range doubleEncoded {
		literal, err := url.QueryUnescape(q)
		if err != nil {
			t.Fatal(err)
		}
		e := s.commitFile(literal, []byte("a literal name"))
		if e.Path != literal {
			t.Errorf("commit of %q stored %q", literal, e.Path)
		}
		code, body := s.do(request{method: "GET", target: proto.RouteEntry + "?path=" + q, token: goodToken})
		var got proto.Entry
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Path != literal {
			t.Errorf("GET entry %s: %d %s, want the literal %q", q, code, truncate(body), literal)
		}
	}
}

// itemsFailed reports whether a batch answer refused every item.
func itemsFailed(body []byte) bool {
	var cr proto.CommitResponse
	if json.Unmarshal(body, &cr) != nil || len(cr.Results) == 0 {
		return false
	}
	for _, r := range cr.Results {
		if r.Status == proto.StatusOK {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}
