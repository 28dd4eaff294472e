//go:build linux

package blobs

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/directio"
)

// haveDirectIO is true on Linux, where the tests' file system must take direct I/O.
func haveDirectIO(t *testing.T) bool {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := openDirect(p, os.O_RDWR)
	if f == nil {
		t.Fatalf("the file system of %s refuses O_DIRECT: run the tests with TMPDIR on a disk file system (ext4, XFS, btrfs)", p)
	}
	f.Close()
	return true
}

// A direct write the file system refuses (EINVAL: here, memory off the alignment) goes
// through the cache instead, and the pack is only written through the cache after.
func TestRefusedDirectAppendGoesThroughTheCache(t *testing.T) {
	s, _ := openStore(t, WithDirectIO(true))
	data := randomBytes(t, 200<<10)
	sum := sha256.Sum256(data)
	buf := directio.Buffer(int(directio.Up(recordSize(int64(len(data)))) + directio.Align))
	rec := appendRecord(buf[1:1], sum, data) // memory one byte off the alignment
	s.wmu.Lock()
	p, err := s.activePack()
	if err == nil && p.direct == nil {
		s.wmu.Unlock()
		t.Fatalf("the pack %s has no direct handle: run the tests with TMPDIR on a disk file system (ext4, XFS, btrfs)", p.path)
	}
	var off int64
	if err == nil {
		p, off, err = s.appendStreamedRecord(rec, int64(len(data)))
	}
	s.wmu.Unlock()
	if err != nil {
		t.Fatalf("appendStreamedRecord of misaligned memory: %v", err)
	}
	if p.direct != nil {
		t.Error("the pack still has a direct handle after a refused direct write")
	}
	loc := &packed{pack: p, off: off, size: int64(len(data))}
	got, err := readRecord(loc, *recBufs.Get().(*[]byte))
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("the record reads back %d bytes (%v); want the %d appended", len(got), err, len(rec))
	}
}
