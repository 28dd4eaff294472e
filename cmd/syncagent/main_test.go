package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
