//go:build linux

package scan

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// asAnotherUser runs fn with the effective uid of an unprivileged user when the test
// runs as root (root reads every dir), and restores it after.
func asAnotherUser(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := syscall.Setresuid(-1, 65534, -1); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := syscall.Setresuid(-1, 0, -1); err != nil {
				panic(err)
			}
		}()
	}
	fn()
}

// A dir the agent may not read (another user's 0700 dir in a shared volume) is kept as
// last seen, by a full scan and by a scan of paths, and told to Unreadable; the rest of
// the folder is scanned (review, 2026-12-06: every full scan failed, so the agent never
// planned again, and a scan of paths dropped the dir's files from the trees, which a
// plan would have deleted on the server).
func TestUnreadableDirIsKeptAsLastSeen(t *testing.T) {
	dir, s, l := setup(t)
	if err := os.Chmod(dir, 0o755); err != nil { // the test's dirs, for the other user
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "a.txt"), "alpha")
	put(t, filepath.Join(dir, "private/x"), "secret")
	put(t, filepath.Join(dir, "private/sub/y"), "more")
	ctx := context.Background()
	if _, err := s.Full(ctx, l); err != nil {
		t.Fatal(err)
	}
	var told []string
	s.Unreadable = func(p string, err error) { told = append(told, p) }
	if err := os.Chmod(filepath.Join(dir, "private"), 0o000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "private"), 0o755) })
	put(t, filepath.Join(dir, "a.txt"), "alpha, edited")
	kept := func(what string) {
		t.Helper()
		for _, p := range []string{"private", "private/x", "private/sub", "private/sub/y"} {
			if _, ok := l.Local.Get(p); !ok {
				t.Errorf("%s: %s left the Local tree; a plan would delete it on the server", what, p)
			}
			if _, ok := l.Index.Get(p); !ok {
				t.Errorf("%s: %s left the index", what, p)
			}
		}
	}
	asAnotherUser(t, func() {
		ups, err := s.Full(ctx, l)
		if err != nil {
			t.Fatalf("full scan: %v; want the rest of the folder scanned", err)
		}
		if got := rehashed(ups); len(got) != 1 || got[0] != "a.txt" {
			t.Errorf("full scan rehashed %v; want a.txt", got)
		}
		kept("full scan")
		if _, err := s.Paths(ctx, []string{"private/x", "private/sub", "a.txt"}, l); err != nil {
			t.Errorf("scan of paths: %v", err)
		}
		kept("scan of paths")
	})
	if len(told) == 0 {
		t.Error("Unreadable was not told of the dir")
	}
}
