//go:build linux

package execute

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/syncedfolder/synced-folder/internal/directio"
)

// noDirectIO fails: on Linux the tests' temp dir must take direct I/O, or the direct
// writer would go untested.
func noDirectIO(t *testing.T, p string) {
	t.Helper()
	t.Fatalf("the file system of %s refuses O_DIRECT: run the tests with TMPDIR on a disk file system (ext4, XFS, btrfs)", p)
}

// A direct write the file system refuses (EINVAL: here, memory off the alignment) is
// written through the page cache instead, and direct I/O is off for the file after.
func TestRefusedDirectWriteGoesThroughTheCache(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newDirectWriter(f)
	if w == nil {
		noDirectIO(t, p)
	}
	buf := directio.Buffer(directChunk)
	copy(buf, pattern(len(buf)))
	off := buf[1 : 1+directio.Align]
	if err := writeDirect(f, off); err != nil {
		t.Fatalf("writeDirect of misaligned memory: %v", err)
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_DIRECT != 0 {
		t.Error("O_DIRECT still on after a refused direct write")
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, off) {
		t.Errorf("file holds %d bytes (%v), want the %d written", len(got), err, len(off))
	}
}
