package proto

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCleanPath(t *testing.T) {
	good := []string{"a", "a/b", "dir/file.txt", "ünï côdé/ф.txt", "with space/x y", ".hidden", "a/.b/..c", "...", strings.Repeat("a/", 100) + "z"}
	for _, p := range good {
		if got, err := CleanPath(p); err != nil || got != p {
			t.Errorf("CleanPath(%q) = %q, %v; want it accepted", p, got, err)
		}
	}
	bad := map[string]string{
		"":                                  "empty",
		"/etc/passwd":                       "absolute",
		"../x":                              `".."`,
		"a/../b":                            `".."`,
		"a/..":                              `".."`,
		"./a":                               `"."`,
		"a/./b":                             `"."`,
		"a//b":                              "empty segment",
		"a/":                                "slash",
		"a\x00b":                            "NUL",
		`a\b`:                               "backslash",
		"a\nb":                              "control",
		"\xff\xfe":                          "UTF-8",
		strings.Repeat("x", MaxPathBytes+1): "longer",
		strings.Repeat("y", 256):            "segment",
	}
	for p, why := range bad {
		_, err := CleanPath(p)
		if err == nil {
			t.Errorf("CleanPath(%q) accepted; want refused (%s)", p, why)
			continue
		}
		if !errors.Is(err, ErrInvalidPath) || !strings.Contains(err.Error(), why) {
			t.Errorf("CleanPath(%q) error %q; want ErrInvalidPath mentioning %q", p, err, why)
		}
	}
}

func TestConflictPath(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 8, 7, 0, time.UTC)
	cases := map[string]string{
		"report.txt":         "report.sync-conflict-20261122-090807-laptop.txt",
		"a/b/archive.tar.gz": "a/b/archive.tar.sync-conflict-20261122-090807-laptop.gz",
		"Makefile":           "Makefile.sync-conflict-20261122-090807-laptop",
		"dir/.bashrc":        "dir/.bashrc.sync-conflict-20261122-090807-laptop",
	}
	for in, want := range cases {
		got := ConflictPath(in, "laptop", at)
		if got != want {
			t.Errorf("ConflictPath(%q) = %q; want %q", in, got, want)
		}
		if !IsConflictPath(got) {
			t.Errorf("IsConflictPath(%q) = false", got)
		}
		if IsConflictPath(in) {
			t.Errorf("IsConflictPath(%q) = true", in)
		}
		if _, err := CleanPath(got); err != nil {
			t.Errorf("conflict path %q is not clean: %v", got, err)
		}
	}
	if got := ConflictPath("x.txt", "ns/pod:sa", at); got != "x.sync-conflict-20261122-090807-ns_pod_sa.txt" {
		t.Errorf("agent not sanitized: %q", got)
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../x", "/x", "a//b", "a\x00", "ü/ß"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := CleanPath(p)
		if err != nil {
			return
		}
		if got != p {
			t.Fatalf("CleanPath rewrote %q to %q", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", p, seg)
			}
		}
		if strings.HasPrefix(got, "/") || strings.ContainsAny(got, "\x00\\") {
			t.Fatalf("accepted unsafe %q", p)
		}
	})
}
