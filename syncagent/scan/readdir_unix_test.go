//go:build unix

package scan

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/dircache"
)

// readDir's stat keys (fstatat on the open dir) equal Stat's (lstat by path) for every
// kind of entry, and it lists in name order.
func TestReadDirStatKeysMatchStat(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b-file"), []byte("12345"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "a-dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b-file", filepath.Join(dir, "c-link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "d-fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := &Scanner{Root: root}
	entries, err := s.readDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.name)
		fi, err := os.Lstat(filepath.Join(dir, e.name))
		if err != nil {
			t.Fatal(err)
		}
		want, wantOK := Stat(fi)
		if e.err != nil || e.st != want || e.ok != wantOK || e.isDir != fi.IsDir() {
			t.Errorf("%s: readDir %+v ok=%v err=%v dir=%v; Stat %+v ok=%v", e.name, e.st, e.ok, e.err, e.isDir, want, wantOK)
		}
	}
	if got := filepath.Join(names...); got != filepath.Join("a-dir", "b-file", "c-link", "d-fifo") {
		t.Errorf("order %v", names)
	}
}

// A file replaced by a fifo between its lstat and its hash is given up (the next scan
// sees the fifo), without blocking on the fifo's open or read; a file replaced by
// another one is given up too, and the file left as it was is hashed.
func TestHashGivesUpAFileReplacedSinceItsLstat(t *testing.T) {
	dir, s, _ := setup(t)
	for _, n := range []string{"fifo", "renamed", "kept"} {
		put(t, filepath.Join(dir, n), "content of "+n)
	}
	jobs := map[string]job{}
	for _, n := range []string{"fifo", "renamed", "kept"} {
		fi, err := os.Lstat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := Stat(fi)
		jobs[n] = job{path: n, st: st}
	}
	if err := os.Remove(filepath.Join(dir, "fifo")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "renamed.new"), "CONTENT OF renamed")
	if err := os.Rename(filepath.Join(dir, "renamed.new"), filepath.Join(dir, "renamed")); err != nil {
		t.Fatal(err)
	}
	dirs := dircache.New(s.Root)
	defer dirs.Close()
	for _, n := range []string{"fifo", "renamed"} {
		done := make(chan *Update, 1)
		go func() { done <- s.hashOne(context.Background(), dirs, jobs[n]) }()
		select {
		case u := <-done:
			if u != nil {
				t.Errorf("%s: hashed as %+v; want it given up", n, u.Entry)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the hash blocked", n)
		}
	}
	u := s.hashOne(context.Background(), dirs, jobs["kept"])
	if u == nil || u.Entry.SHA256.String() != chunk.SumHex([]byte("content of kept")) {
		t.Errorf("kept: %+v; want its hash", u)
	}
}
