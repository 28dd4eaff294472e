package blobs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sealedStore fills a store with small packs (so that several are sealed) and closes
// it; it returns the blocks and the sealed packs' paths.
func sealedStore(t *testing.T) (dir string, blocks [][]byte, sealed []string) {
	t.Helper()
	defer func(v int64) { packTargetSize = v }(packTargetSize)
	packTargetSize = 250 << 10 // four 64 KiB blocks per pack, padded (packdirect.go) or not
	s, dir := openStore(t)
	for range 10 {
		b := randomBytes(t, 64<<10)
		if _, _, err := s.Put(hashOf(b), bytes.NewReader(b), 0); err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
	}
	s.Close()
	ents, err := os.ReadDir(filepath.Join(dir, packDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if base, ok := strings.CutSuffix(e.Name(), idxExt); ok {
			sealed = append(sealed, filepath.Join(dir, packDirName, base+packExt))
		}
	}
	if len(sealed) != 2 {
		t.Fatalf("%d sealed packs (with an .idx); want 2 of the 3", len(sealed))
	}
	return dir, blocks, sealed
}

func TestSealedPackIsIndexedWithoutReadingIt(t *testing.T) {
	dir, blocks, sealed := sealedStore(t)
	// Damage a byte inside the first record's data, size kept: a scan would drop the
	// record at Open; the .idx indexes it without reading the pack, and the read's
	// CRC check catches it.
	f, err := os.OpenFile(sealed[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	if _, err := f.ReadAt(one[:], recHeaderSize+100); err != nil {
		t.Fatal(err)
	}
	one[0] ^= 0xff
	if _, err := f.WriteAt(one[:], recHeaderSize+100); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _, _ := s.Stats(); n != int64(len(blocks)) {
		t.Fatalf("%d blocks after reopen; want %d (the damaged one indexed from the .idx)", n, len(blocks))
	}
	var damaged string
	for _, b := range blocks {
		h := hashOf(b)
		f, _, err := s.Open(h)
		if errors.Is(err, ErrCorrupt) {
			if damaged != "" {
				t.Fatal("more than one block damaged")
			}
			damaged = h
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		_, err = got.ReadFrom(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), b) {
			t.Fatalf("block %s reads back wrong", h[:8])
		}
	}
	if damaged == "" {
		t.Fatal("the damaged record was not caught on read")
	}
	if missing, err := s.Missing([]string{damaged}); err != nil || len(missing) != 1 {
		t.Fatalf("Missing(damaged) = %v, %v; want it reported, to be uploaded again", missing, err)
	}
}

func TestPackIndexNotMatchingItsPackIsIgnored(t *testing.T) {
	dir, blocks, sealed := sealedStore(t)
	// The pack lost its tail: the .idx's size no longer matches, so the pack is
	// scanned and its torn last record ignored.
	fi, err := os.Stat(sealed[0])
	if err != nil {
		t.Fatal(err)
	}
	// A page: into the last record, after its padding too (packdirect.go).
	if err := os.Truncate(sealed[0], fi.Size()-4096); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _, _ := s.Stats(); n != int64(len(blocks)-1) {
		t.Fatalf("%d blocks after reopen; want %d (the torn one dropped by the scan)", n, len(blocks)-1)
	}
}

// A full pack is sealed while appends go on in the next one: sealing waits for the disk
// (three fsyncs), which held up every upload while it ran under the append lock. The
// seal is held here by its pack's entry lock, where it waits after the pack's fsync.
func TestSealingDoesNotHoldUpAppends(t *testing.T) {
	defer func(v int64) { packTargetSize = v }(packTargetSize)
	packTargetSize = 250 << 10 // four 64 KiB blocks per pack
	s, _ := openStore(t)
	put := func() (string, error) {
		b := randomBytes(t, 64<<10)
		_, _, err := s.Put(hashOf(b), bytes.NewReader(b), 0)
		return hashOf(b), err
	}
	for range 4 {
		if _, err := put(); err != nil {
			t.Fatal(err)
		}
	}
	s.wmu.Lock()
	full := s.active
	s.wmu.Unlock()
	if full == nil || full.size < packTargetSize {
		t.Fatalf("the first pack is not full after four blocks: %+v", full)
	}
	full.entryMu.Lock()
	held := true
	defer func() {
		if held {
			full.entryMu.Unlock()
		}
	}()
	type result struct {
		hash string
		err  error
	}
	next := make(chan result, 1)
	go func() {
		h, err := put()
		next <- result{h, err}
	}()
	var r result
	select {
	case r = <-next:
	case <-time.After(30 * time.Second):
		t.Fatal("an append to the next pack waited for the full pack's seal")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := os.Stat(s.idxPath(full.id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the held seal wrote the full pack's .idx already: %v", err)
	}
	if err := s.Sync([]string{r.hash}); err != nil {
		t.Fatalf("sync of a block of the next pack while the seal is held: %v", err)
	}
	full.entryMu.Unlock()
	held = false
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.idxPath(full.id)); err != nil {
		t.Fatalf("the full pack has no .idx once the store is closed (Close waits for seals): %v", err)
	}
}

// A new pack's directory entry is synced by its first fsync, not when the pack is made
// (under the append lock): no record of it counts as durable before then.
func TestPackEntryIsSyncedBeforeItsRecordsCountDurable(t *testing.T) {
	s, _ := openStore(t)
	b := randomBytes(t, 64<<10)
	if _, _, err := s.Put(hashOf(b), bytes.NewReader(b), 0); err != nil {
		t.Fatal(err)
	}
	s.wmu.Lock()
	p := s.active
	s.wmu.Unlock()
	if p == nil || p.entrySynced || p.synced != 0 {
		t.Fatalf("a new pack after an unsynced append: %+v; want its entry and records not yet durable", p)
	}
	if err := s.Sync([]string{hashOf(b)}); err != nil {
		t.Fatal(err)
	}
	if !p.entrySynced || p.synced < p.size {
		t.Fatalf("after Sync: entry synced %v, %d of %d bytes durable; want all", p.entrySynced, p.synced, p.size)
	}
}
