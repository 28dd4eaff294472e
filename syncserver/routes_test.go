package syncserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestUnknownMethodOnKnownRoute(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"DELETE", proto.RouteCommit, 405, "POST"},
		{"GET", proto.RouteCommit, 405, "POST"},
		{"POST", proto.RouteChanges, 405, "GET, HEAD"},
		{"DELETE", proto.RouteBlocks + strings.Repeat("ab", 32), 405, "GET, HEAD, PUT"},
		{"PUT", proto.RouteLegacyIndex, 405, "GET, HEAD"},
		{"PATCH", proto.RouteHealthz, 405, "GET, HEAD"},
		{"POST", "/v2/nothing", 404, ""},
		{"GET", "/v2/nothing", 404, ""},
	} {
		req, err := http.NewRequest(tc.method, e.http.URL+tc.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body proto.Error
		derr := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.code, tc.allow)
		}
		if derr != nil || body.Error == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: body not a JSON error (%v, %q, %s)", tc.method, tc.path, derr, body.Error, resp.Header.Get("Content-Type"))
		}
	}
	// The right method still reaches the route.
	if code, _ := e.do("GET", proto.RouteChanges+"?since=0", nil, nil); code != 200 {
		t.Fatalf("GET changes: %d", code)
	}
}
