package dircache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func newCache(t *testing.T) (*Cache, string) {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	c := New(root)
	t.Cleanup(c.Close)
	return c, dir
}

func put(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, c *Cache, p string) string {
	t.Helper()
	f, err := c.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	b := make([]byte, 64)
	n, _ := f.Read(b)
	return string(b[:n])
}

// The files of one dir are opened through one open dir, which the cache holds until it
// is closed; a file at the top needs none.
func TestFilesOfOneDirShareItsOpenDir(t *testing.T) {
	c, dir := newCache(t)
	put(t, filepath.Join(dir, "top"), "top")
	for i := range 3 {
		put(t, filepath.Join(dir, "a", "b", fmt.Sprintf("f%d", i)), fmt.Sprint("content ", i))
	}
	if got := readAll(t, c, "top"); got != "top" {
		t.Errorf("top: %q", got)
	}
	for i := range 3 {
		if got, want := readAll(t, c, fmt.Sprintf("a/b/f%d", i)), fmt.Sprint("content ", i); got != want {
			t.Errorf("a/b/f%d: %q, want %q", i, got, want)
		}
	}
	if len(c.dirs) != 1 || c.dirs["a/b"] == nil || c.dirs["a/b"].refs != 0 {
		t.Fatalf("held dirs %v; want only a/b, released", c.dirs)
	}
	d1, release1, err := c.Get("a/b")
	if err != nil {
		t.Fatal(err)
	}
	d2, release2, err := c.Get("a/b")
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 || d1.File == nil {
		t.Errorf("two gets of a/b: %p and %p (file %v); want one open dir", d1, d2, d1.File)
	}
	release1()
	release2()
	if _, err := c.OpenFile("a/missing/f", os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file under a missing dir: %v; want not exist", err)
	}
	if _, err := c.OpenFile("../outside", os.O_RDONLY, 0); err == nil {
		t.Error("a path out of the folder was opened")
	}
}

// A forgotten dir is closed by its last release, and the next Get opens the dir now at
// that path.
func TestForgottenDirIsOpenedAfresh(t *testing.T) {
	c, dir := newCache(t)
	put(t, filepath.Join(dir, "d", "f"), "old")
	d, release, err := c.Get("d")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(dir, "d", "f"), "new")
	if got := readAll(t, c, "d/f"); got != "old" {
		t.Errorf("d/f while d is held: %q; want the held dir's %q", got, "old")
	}
	c.Forget("d")
	if _, err := d.Root.Stat("f"); err != nil {
		t.Errorf("a forgotten dir closed while held: %v", err)
	}
	release()
	if _, err := d.Root.Stat("f"); err == nil {
		t.Error("a forgotten dir still open after its last release")
	}
	if got := readAll(t, c, "d/f"); got != "new" {
		t.Errorf("d/f after Forget: %q; want %q", got, "new")
	}
}

// The cache holds at most maxOpen dirs that nobody uses; dirs in use stay open whatever
// their number.
func TestIdleDirsAreBounded(t *testing.T) {
	c, dir := newCache(t)
	for i := range 2 * maxOpen {
		put(t, filepath.Join(dir, fmt.Sprintf("d%03d", i), "f"), "x")
	}
	var held []*Dir
	var releases []func()
	for i := range maxOpen + 5 {
		d, release, err := c.Get(fmt.Sprintf("d%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, d)
		releases = append(releases, release)
	}
	for i, d := range held {
		if _, err := d.Root.Stat("f"); err != nil {
			t.Fatalf("dir %d in use was closed: %v", i, err)
		}
	}
	for _, r := range releases {
		r()
	}
	for i := maxOpen + 5; i < 2*maxOpen; i++ {
		if got := readAll(t, c, fmt.Sprintf("d%03d/f", i)); got != "x" {
			t.Fatalf("d%03d/f: %q", i, got)
		}
	}
	if len(c.dirs) > maxOpen {
		t.Errorf("%d dirs held open; want at most %d", len(c.dirs), maxOpen)
	}
	c.Close()
	if len(c.dirs) != 0 {
		t.Errorf("%d dirs after Close", len(c.dirs))
	}
	for i, d := range held {
		if _, err := d.Root.Stat("f"); err == nil {
			t.Fatalf("dir %d still open after Close", i)
		}
	}
}
