//go:build unix

package scan

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
