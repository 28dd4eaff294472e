package main

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/memlimit"
	"github.com/syncedfolder/synced-folder/syncagent/agent"
	"github.com/syncedfolder/synced-folder/syncagent/state"
)

func TestBadFlagsExitTwoWithAClearMessage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	badIgnore := filepath.Join(t.TempDir(), "syncignore")
	if err := os.WriteFile(badIgnore, []byte("ok.tmp\n[unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--dir", dir}, nil, "--server is required"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--ignore-file", filepath.Join(dir, "nope")}, nil, "--ignore-file: ignore file: open"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir}, map[string]string{"SYNCAGENT_IGNORE_FILE": badIgnore}, `line 2 "[unclosed"`},
		{[]string{"--server", "http://127.0.0.1:1"}, nil, "--dir is required"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--mode", "sideways"}, nil, `--mode "sideways"`},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--max-delete-percent", "150"}, nil, "--max-delete-percent 150"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", file}, nil, "is not a directory"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", filepath.Join(dir, "nope")}, nil, "no such file"},
		{[]string{"--server", "ftp://x", "--dir", dir}, nil, "scheme must be http or https"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--rescan-interval", "soon"}, nil, "invalid value"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"--dir", dir}, map[string]string{"SYNCAGENT_SERVER": "http://127.0.0.1:1", "SYNCAGENT_MODE": "both"}, `--mode "both"`},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir}, map[string]string{"SYNCAGENT_RESCAN_INTERVAL": "x"}, "SYNCAGENT_RESCAN_INTERVAL"},
		{[]string{"resume"}, nil, "--dir is required"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--memory-limit", "lots"}, nil, `--memory-limit: size "lots"`},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--pprof"}, nil, "--pprof needs --listen"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--direct-io=maybe"}, nil, `invalid boolean value "maybe" for -direct-io`},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir}, map[string]string{"SYNCAGENT_DIRECT_IO": "sometimes"}, "SYNCAGENT_DIRECT_IO"},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir, "--no-patch-in-place=perhaps"}, nil, `invalid boolean value "perhaps" for -no-patch-in-place`},
		{[]string{"--server", "http://127.0.0.1:1", "--dir", dir}, map[string]string{"SYNCAGENT_NO_PATCH_IN_PLACE": "often"}, "SYNCAGENT_NO_PATCH_IN_PLACE"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		getenv := func(k string) string { return c.env[k] }
		if code := run(c.args, getenv, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, stderr.String(), c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("bad flags changed the folder: %v", entries)
	}
}

func TestResumeWritesTheRequest(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if code := run([]string{"resume", "--dir", dir}, func(string) string { return "" }, &stderr); code != exitError {
		t.Errorf("resume without agent state: exit %d, want %d", code, exitError)
	}
	stateDir := filepath.Join(dir, ".syncfolder")
	db, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	stderr.Reset()
	if code := run([]string{"resume", "--dir", dir}, func(string) string { return "" }, &stderr); code != exitOK {
		t.Fatalf("resume: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(stateDir, agent.ResumeFileName)); err != nil {
		t.Errorf("no resume request written: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	debug.SetMemoryLimit(123 << 20)
	applyMemoryLimit("auto", false, env("123MiB"))()
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("GOMEMLIMIT set, default flag: limit %d, want GOMEMLIMIT's", got)
	}
	applyMemoryLimit("200MiB", true, env("123MiB"))()
	if got := debug.SetMemoryLimit(-1); got != 200<<20 {
		t.Errorf("explicit --memory-limit 200MiB: limit %d", got)
	}
	applyMemoryLimit("off", true, env(""))()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("--memory-limit off: limit %d", got)
	}
	stop := applyMemoryLimit("auto", false, env(""))
	got := debug.SetMemoryLimit(-1)
	stop()
	if got == math.MaxInt64 || got < memlimit.MinLimit {
		t.Errorf("auto: limit %d", got)
	}
}

func TestPprofIsServedOnlyWhenAsked(t *testing.T) {
	status := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("status")) })
	rec := httptest.NewRecorder()
	withPprof(status).ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "heap") {
		t.Errorf("/debug/pprof/: %d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	withPprof(status).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Body.String() != "status" {
		t.Errorf("/status through the pprof mux: %q", rec.Body.String())
	}
}
