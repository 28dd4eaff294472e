package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// The profiles listener serves the profiles index and the command line, and nothing
// of the sync API; stopped, it refuses connections.
func TestPprofListenerServesProfiles(t *testing.T) {
	if err := checkPprofListen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr, stop, err := servePprof("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d %.80q", code, body)
	}
	if code, body := get("/debug/pprof/cmdline"); code != http.StatusOK || body == "" {
		t.Errorf("/debug/pprof/cmdline: %d %q", code, body)
	}
	if code, _ := get("/v1/changes"); code != http.StatusNotFound {
		t.Errorf("/v1/changes on the profiles listener: %d; want 404", code)
	}
	stop()
	if resp, err := http.Get(base + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		t.Error("the stopped listener still answers")
	}
}
