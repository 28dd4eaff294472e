//go:build unix

package scan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// readDir's stat keys (fstatat on the open dir) equal Stat's (lstat by path) for every
// kind of entry, and it lists in name order. In a new dir's listing a regular file is
// lazy instead where the listing types its entries (Linux): type and inode only, no
// stat.
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
	for _, newDir := range []bool{false, true} {
		entries, err := s.readDir(".", newDir)
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
			if newDir && e.name == "b-file" && runtime.GOOS == "linux" {
				if !e.lazy || !e.ok || e.isDir || e.err != nil || e.st != (trees.IndexEntry{Type: proto.TypeFile, Ino: want.Ino}) {
					t.Errorf("new dir, %s: %+v lazy=%v ok=%v; want lazy with type and inode %d", e.name, e.st, e.lazy, e.ok, want.Ino)
				}
				continue
			}
			if e.lazy || e.err != nil || e.st != want || e.ok != wantOK || e.isDir != fi.IsDir() {
				t.Errorf("new dir %v, %s: readDir %+v ok=%v err=%v dir=%v lazy=%v; Stat %+v ok=%v", newDir, e.name, e.st, e.ok, e.err, e.isDir, e.lazy, want, wantOK)
			}
		}
		if got := filepath.Join(names...); got != filepath.Join("a-dir", "b-file", "c-link", "d-fifo") {
			t.Errorf("order %v", names)
		}
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
		jobs[n] = newJob(n, st, false)
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
		j := jobs[n]
		go func() { done <- s.hashOne(context.Background(), dirs, &j) }()
		select {
		case u := <-done:
			if u != nil {
				t.Errorf("%s: hashed as %+v; want it given up", n, u.Entry)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the hash blocked", n)
		}
	}
	// A lazy job (listed, not stat'ed) that finds a fifo gives up too.
	done := make(chan *Update, 1)
	go func() {
		j := newJob("fifo", trees.IndexEntry{Type: proto.TypeFile}, true)
		done <- s.hashOne(context.Background(), dirs, &j)
	}()
	select {
	case u := <-done:
		if u != nil {
			t.Errorf("lazy fifo: hashed as %+v; want it given up", u.Entry)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lazy fifo: the hash blocked")
	}
	kept := jobs["kept"]
	u := s.hashOne(context.Background(), dirs, &kept)
	if u == nil || u.Entry.SHA256.String() != chunk.SumHex([]byte("content of kept")) {
		t.Errorf("kept: %+v; want its hash", u)
	}
}

// Files found in a new dir's listing (lazy) get the whole stat key of the open file:
// the index then holds what an lstat gives, and a full scan after finds nothing to do.
func TestListedNewFilesGetTheirWholeStatKey(t *testing.T) {
	dir, s, l := setup(t)
	for i := range 20 {
		put(t, filepath.Join(dir, "sub", fmt.Sprintf("f%02d", i)), strings.Repeat("x", i))
	}
	if err := os.Chmod(filepath.Join(dir, "sub", "f03"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ups, err := s.Paths(ctx, []string{"sub"}, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := rehashed(ups); len(got) != 20 {
		t.Fatalf("hashed %v, want the 20 files", got)
	}
	for _, u := range ups {
		if u.Entry.Type != proto.TypeFile {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(u.Path)))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Stat(fi)
		if got := u.Entry; !SameStat(got, want) || got.SHA256.IsZero() {
			t.Errorf("%s: indexed as %+v; lstat gives %+v", u.Path, got, want)
		}
	}
	if ups, err := s.Full(ctx, l); err != nil || len(ups) != 0 {
		t.Errorf("full scan after: %d updates (%v), %v; want none", len(ups), rehashed(ups), err)
	}
	// A dir the index lost while it kept the dir's files: listed as new, its files are
	// still settled from the index by their stat key, not hashed again.
	l.Index.Delete("sub")
	ups, err = s.Paths(ctx, []string{"sub"}, l)
	if err != nil {
		t.Fatal(err)
	}
	if got := rehashed(ups); len(got) != 0 {
		t.Errorf("files the index held were hashed again: %v", got)
	}
}
