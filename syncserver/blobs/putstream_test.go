package blobs

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// packedLoc returns where a block is packed, or fails.
func packedLoc(t *testing.T, s *Store, h string) *packed {
	t.Helper()
	loc := s.lookupPacked(h, false)
	if loc == nil {
		t.Fatalf("block %s is not packed", h[:8])
	}
	return loc
}

func durable(s *Store, loc *packed) bool {
	s.pmu.RLock()
	defer s.pmu.RUnlock()
	return loc.off+loc.recordSize() <= loc.pack.synced
}

func TestPutIsDurableOnlyAfterSync(t *testing.T) {
	s, _ := openStore(t)
	a := randomBytes(t, 200<<10)
	ha := hashOf(a)
	if _, created, err := s.Put(ha, bytes.NewReader(a), 0); err != nil || !created {
		t.Fatalf("Put = %v, %v", created, err)
	}
	loc := packedLoc(t, s, ha)
	if durable(s, loc) {
		t.Fatal("a streamed block is marked durable before any Sync")
	}
	// Readable and reported present at once: the client goes on to commit it.
	if missing, err := s.Missing([]string{ha}); err != nil || len(missing) != 0 {
		t.Fatalf("Missing = %v, %v; want none", missing, err)
	}
	if err := s.Sync([]string{ha, hashOf([]byte("not stored"))}); err != nil {
		t.Fatal(err)
	}
	if !durable(s, loc) {
		t.Fatal("Sync left the block undurable")
	}
	// PutMany promises durability of every block it names, dedup hits included.
	b := randomBytes(t, 100<<10)
	hb := hashOf(b)
	if _, _, err := s.Put(hb, bytes.NewReader(b), 0); err != nil {
		t.Fatal(err)
	}
	if created, _, err := s.PutMany([]BlockData{{Hash: hb, Data: b}}); err != nil || created != 0 {
		t.Fatalf("PutMany = %d, %v; want a dedup hit", created, err)
	}
	if !durable(s, packedLoc(t, s, hb)) {
		t.Fatal("PutMany answered a dedup hit on an unsynced block without syncing it")
	}
}

func TestUnsyncedBlockLostInACrashIsMissingAfterReopen(t *testing.T) {
	for name, crash := range map[string]func(t *testing.T, pack string, synced, size int64){
		// The unsynced record never reached the disk.
		"lost": func(t *testing.T, pack string, synced, _ int64) {
			if err := os.Truncate(pack, synced); err != nil {
				t.Fatal(err)
			}
		},
		// The file grew but the data did not make it: zeros.
		"zeroed": func(t *testing.T, pack string, synced, size int64) {
			f, err := os.OpenFile(pack, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, size-synced), synced); err != nil {
				t.Fatal(err)
			}
		},
		// Half of it made it.
		"torn": func(t *testing.T, pack string, synced, size int64) {
			if err := os.Truncate(pack, synced+(size-synced)/2); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, dir := openStore(t)
			committed := randomBytes(t, 300<<10)
			hc := hashOf(committed)
			if _, _, err := s.Put(hc, bytes.NewReader(committed), 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync([]string{hc}); err != nil { // what a commit does
				t.Fatal(err)
			}
			pending := randomBytes(t, 300<<10)
			hp := hashOf(pending)
			if _, _, err := s.Put(hp, bytes.NewReader(pending), 0); err != nil {
				t.Fatal(err)
			}
			loc := packedLoc(t, s, hp)
			s.pmu.RLock()
			synced, size := loc.pack.synced, loc.pack.size
			s.pmu.RUnlock()
			// The pending record starts where the committed one ends (after its padding,
			// when it was written directly).
			if synced != loc.off || size <= synced {
				t.Fatalf("pack synced to %d of %d; want exactly the committed block durable", synced, size)
			}
			pack := loc.pack.path
			s.Close()
			crash(t, pack, synced, size)

			s2, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			missing, err := s2.Missing([]string{hc, hp})
			if err != nil {
				t.Fatal(err)
			}
			if len(missing) != 1 || missing[0] != hp {
				t.Fatalf("Missing after the crash = %v; want only the unsynced block %s", missing, hp[:8])
			}
			if got := readAll(t, s2, hc); !bytes.Equal(got, committed) {
				t.Fatal("the synced block did not survive")
			}
			// The client uploads it again; it is stored in a new pack.
			if _, created, err := s2.Put(hp, bytes.NewReader(pending), 0); err != nil || !created {
				t.Fatalf("Put again = %v, %v", created, err)
			}
			if got := readAll(t, s2, hp); !bytes.Equal(got, pending) {
				t.Fatal("the uploaded-again block reads back wrong")
			}
		})
	}
}

func TestReopenedPackIsSyncedBeforeUse(t *testing.T) {
	// A process that stopped without syncing leaves records that may be only in the
	// page cache: after a restart they are present, but not known durable.
	s, dir := openStore(t)
	data := randomBytes(t, 64<<10)
	h := hashOf(data)
	if _, _, err := s.Put(h, bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	loc := packedLoc(t, s2, h)
	if durable(s2, loc) {
		t.Fatal("a pack read on Open is taken as durable")
	}
	if err := s2.Sync([]string{h}); err != nil {
		t.Fatal(err)
	}
	if !durable(s2, loc) {
		t.Fatal("Sync left the reopened block undurable")
	}
	if n := countFiles(t, filepath.Join(dir, packDirName)); n != 1 {
		t.Fatalf("%d packs; want 1", n)
	}
}

func readAll(t *testing.T, s *Store, h string) []byte {
	t.Helper()
	f, _, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A failed fsync of a pack is not forgotten: the kernel reports a lost writeback once,
// so a later fsync of the same file may succeed without the bytes. The blocks of the
// pack not known durable are reported missing (uploaded again, into another pack), its
// durable ones stay, and every later sync of it fails. The failure is injected by
// giving the pack a descriptor whose fsync fails (a pipe): a disk error cannot be made
// here.
func TestFailedPackSyncIsNotForgotten(t *testing.T) {
	s, _ := openStore(t)
	a, b := randomBytes(t, 100<<10), randomBytes(t, 200<<10)
	ha, hb := hashOf(a), hashOf(b)
	if _, _, err := s.PutMany([]BlockData{{Hash: ha, Data: a}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(hb, bytes.NewReader(b), 0); err != nil { // not durable yet
		t.Fatal(err)
	}
	p := packedLoc(t, s, hb).pack
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	real := p.f
	p.f = pw
	err = s.Sync([]string{hb})
	p.f = real
	pw.Close()
	if err == nil {
		t.Fatal("Sync over a failing fsync succeeded")
	}
	if missing, err := s.Missing([]string{ha, hb}); err != nil || len(missing) != 1 || missing[0] != hb {
		t.Errorf("Missing = %v, %v; want the block not known durable (b) only", missing, err)
	}
	wantBlock(t, s, a)
	if err := s.fsyncPack(p); err == nil || !strings.Contains(err.Error(), "an earlier fsync failed") {
		t.Errorf("a later sync of the pack: %v; want the earlier failure", err)
	}
	// Uploaded again, b goes into another pack, and syncs.
	if _, _, err := s.Put(hb, bytes.NewReader(b), 0); err != nil {
		t.Fatal(err)
	}
	if np := packedLoc(t, s, hb).pack; np == p {
		t.Error("b appended again to the pack whose fsync failed")
	}
	if err := s.Sync([]string{hb}); err != nil {
		t.Fatalf("Sync of b in its new pack: %v", err)
	}
	wantBlock(t, s, b)
}
