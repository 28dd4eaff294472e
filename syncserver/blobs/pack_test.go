package blobs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// packFiles returns the pack files of a store directory, oldest first.
func packFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, packDirName, "*"+packExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func reopen(t *testing.T, s *Store, dir string, opts ...Option) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func putMany(t *testing.T, s *Store, blocks ...[]byte) {
	t.Helper()
	batch := make([]BlockData, len(blocks))
	for i, b := range blocks {
		batch[i] = BlockData{Hash: hashOf(b), Data: b}
	}
	if _, _, err := s.PutMany(batch); err != nil {
		t.Fatal(err)
	}
}

// wantBlock checks that the block is stored with exactly this content.
func wantBlock(t *testing.T, s *Store, data []byte) {
	t.Helper()
	h := hashOf(data)
	if ok, err := s.Has(h); err != nil || !ok {
		t.Fatalf("Has(%s) = %v, %v; want true", h[:8], ok, err)
	}
	r, size, err := s.Open(h)
	if err != nil {
		t.Fatalf("Open(%s): %v", h[:8], err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("Open(%s) read %d bytes (size %d, err %v); want the %d stored", h[:8], len(got), size, err, len(data))
	}
}

// wantAbsent checks that the block is not stored.
func wantAbsent(t *testing.T, s *Store, data []byte) {
	t.Helper()
	h := hashOf(data)
	if ok, err := s.Has(h); err != nil || ok {
		t.Fatalf("Has(%s) = %v, %v; want false", h[:8], ok, err)
	}
	if _, _, err := s.Open(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(%s): %v; want ErrNotFound", h[:8], err)
	}
}

func wantStats(t *testing.T, s *Store, blocks int64, bytes int64) {
	t.Helper()
	if b, n, _ := s.Stats(); b != blocks || n != bytes {
		t.Fatalf("Stats = %d blocks, %d bytes; want %d, %d", b, n, blocks, bytes)
	}
}

func TestPackTornWriteIgnoredOnReopen(t *testing.T) {
	for name, tear := range map[string]func(t *testing.T, pack string, size int64){
		// The crash came before the last record was all written.
		"truncated": func(t *testing.T, pack string, size int64) {
			if err := os.Truncate(pack, size-10); err != nil {
				t.Fatal(err)
			}
		},
		// The file grew but the last record's data never reached the disk.
		"zeroed": func(t *testing.T, pack string, size int64) {
			f, err := os.OpenFile(pack, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 1000), size-1000); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, dir := openStore(t)
			a, b, c := randomBytes(t, 4096), randomBytes(t, 100), randomBytes(t, 4096)
			putMany(t, s, a, b)
			putMany(t, s, c) // appended to the same pack, last
			packs := packFiles(t, dir)
			if len(packs) != 1 {
				t.Fatalf("%d packs; want 1", len(packs))
			}
			info, err := os.Stat(packs[0])
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			tear(t, packs[0], info.Size())

			s = reopen(t, s, dir)
			wantBlock(t, s, a)
			wantBlock(t, s, b)
			wantAbsent(t, s, c)
			wantStats(t, s, 2, int64(len(a)+len(b)))

			// The block can be stored again, in a new pack after the damaged one.
			putMany(t, s, c)
			wantBlock(t, s, c)
			s = reopen(t, s, dir)
			for _, d := range [][]byte{a, b, c} {
				wantBlock(t, s, d)
			}
			wantStats(t, s, 3, int64(len(a)+len(b)+len(c)))
		})
	}
}

func TestPackBitFlipDetected(t *testing.T) {
	s, dir := openStore(t)
	a, b, c := randomBytes(t, 4096), randomBytes(t, 4096), randomBytes(t, 4096)
	putMany(t, s, a, b, c)
	pack := packFiles(t, dir)[0]
	raw, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(raw, b)
	if at < 0 {
		t.Fatal("b's bytes are not in the pack")
	}
	raw[at+1234] ^= 0x10
	if err := os.WriteFile(pack, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	// Read while open: the damaged block is refused, its neighbours are intact, and
	// from then on it counts as missing, so that clients upload it again.
	if _, _, err := s.Open(hashOf(b)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a damaged block: %v; want ErrCorrupt", err)
	}
	wantBlock(t, s, a)
	wantBlock(t, s, c)
	wantAbsent(t, s, b)
	wantStats(t, s, 2, 2*4096)
	putMany(t, s, b)
	wantBlock(t, s, b)
	if err := os.WriteFile(pack, raw, 0o644); err != nil { // drop the new copy again
		t.Fatal(err)
	}

	// On reopen the damaged record is skipped, the one after it is still found, and the
	// block counts as missing, so that clients upload it again.
	s = reopen(t, s, dir)
	wantBlock(t, s, a)
	wantAbsent(t, s, b)
	wantBlock(t, s, c)
	putMany(t, s, b)
	wantBlock(t, s, b)
}

func TestPackDamagedLengthResyncs(t *testing.T) {
	s, dir := openStore(t)
	a, b, c := randomBytes(t, 100), randomBytes(t, 200), randomBytes(t, 300)
	putMany(t, s, a, b, c)
	pack := packFiles(t, dir)[0]
	f, err := os.OpenFile(pack, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// b's record starts right after a's; make its length field claim 64 KiB.
	if _, err := f.WriteAt([]byte{0, 0, 1, 0}, recordSize(int64(len(a)))+4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s = reopen(t, s, dir)
	wantBlock(t, s, a)
	wantAbsent(t, s, b)
	wantBlock(t, s, c)
}

func TestPackDedup(t *testing.T) {
	s, dir := openStore(t)
	a := randomBytes(t, 4096)
	putMany(t, s, a)
	pack := packFiles(t, dir)[0]
	before, _ := os.Stat(pack)
	if created, _, err := s.PutMany([]BlockData{{Hash: hashOf(a), Data: a}}); err != nil || created != 0 {
		t.Fatalf("PutMany of a packed block: created %d, %v; want 0", created, err)
	}
	if _, created, err := s.Put(hashOf(a), bytes.NewReader(a), 0); err != nil || created {
		t.Fatalf("Put of a packed block: created %v, %v; want false", created, err)
	}
	after, _ := os.Stat(pack)
	if after.Size() != before.Size() || countFiles(t, dir) != 1 {
		t.Fatalf("a dedup hit wrote something: pack %d → %d bytes, %d files", before.Size(), after.Size(), countFiles(t, dir))
	}
	// A block over the pack limit is a file of its own.
	big := randomBytes(t, maxPackedBlock+1)
	putMany(t, s, big)
	if _, err := os.Stat(s.path(hashOf(big))); err != nil {
		t.Fatalf("large block not stored as a file: %v", err)
	}
	wantBlock(t, s, big)
	wantStats(t, s, 2, int64(len(a)+len(big)))
}

// A small block that an older server stored as a file is found by a store opened over
// it: PutMany packs no second copy. A store that found no such file at Open does not
// look for one (a stat per small block), so a file put behind its back is not seen.
func TestSmallBlockStoredAsAFileIsFoundAfterOpen(t *testing.T) {
	s, dir := openStore(t)
	old, later := randomBytes(t, 3000), randomBytes(t, 5000)
	asFile := func(s *Store, data []byte) {
		if err := os.WriteFile(s.path(hashOf(data)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	asFile(s, old)
	s = reopen(t, s, dir)
	if created, _, err := s.PutMany([]BlockData{{Hash: hashOf(old), Data: old}}); err != nil || created != 0 {
		t.Fatalf("PutMany of a block stored as a file: created %d, %v; want 0", created, err)
	}
	if n := len(packFiles(t, dir)); n != 0 {
		t.Fatalf("%d packs after a dedup hit, want none", n)
	}
	wantBlock(t, s, old)

	s, dir = openStore(t)
	asFile(s, later)
	if created, _, err := s.PutMany([]BlockData{{Hash: hashOf(later), Data: later}}); err != nil || created != 1 {
		t.Fatalf("PutMany with no small file found at Open: created %d, %v; want 1 (packed)", created, err)
	}
	if n := len(packFiles(t, dir)); n != 1 {
		t.Fatalf("%d packs, want 1", n)
	}
	wantBlock(t, s, later)
}

func TestPackGC(t *testing.T) {
	s, dir := openStore(t)
	var blocks [][]byte
	for range 10 {
		blocks = append(blocks, randomBytes(t, 4096))
	}
	putMany(t, s, blocks...)
	keep := map[string]bool{hashOf(blocks[0]): true, hashOf(blocks[1]): true}
	referenced := func(h string) bool { return keep[h] }

	// Within the grace period nothing goes.
	if removed, _, err := s.GC(context.Background(), referenced, time.Now().Add(-10*time.Minute)); err != nil || removed != 0 {
		t.Fatalf("GC within the grace period removed %d, %v; want 0", removed, err)
	}
	removed, freed, err := s.GC(context.Background(), referenced, time.Now().Add(time.Minute))
	if err != nil || removed != 8 || freed != 8*4096 {
		t.Fatalf("GC = %d blocks, %d bytes, %v; want 8, %d", removed, freed, err, 8*4096)
	}
	for i, d := range blocks {
		if i < 2 {
			wantBlock(t, s, d)
		} else {
			wantAbsent(t, s, d)
		}
	}
	wantStats(t, s, 2, 2*4096)

	// What GC removed stays removed after a restart (the dead list).
	s = reopen(t, s, dir)
	wantAbsent(t, s, blocks[5])
	wantStats(t, s, 2, 2*4096)
	old := packFiles(t, dir)
	if len(old) != 1 {
		t.Fatalf("%d packs; want 1", len(old))
	}

	// The pack is mostly dead and no longer appended to: the next GC rewrites it.
	if removed, _, err := s.GC(context.Background(), referenced, time.Now().Add(time.Minute)); err != nil || removed != 0 {
		t.Fatalf("second GC = %d, %v; want 0", removed, err)
	}
	now := packFiles(t, dir)
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("packs after compaction %v; want one new pack instead of %v", now, old)
	}
	oldID, _ := parsePackName(filepath.Base(old[0]))
	if _, err := os.Stat(s.deadPath(oldID)); !os.IsNotExist(err) {
		t.Fatalf("dead list of the compacted pack still there: %v", err)
	}
	info, _ := os.Stat(now[0])
	if info.Size() != 2*recordSize(4096) {
		t.Fatalf("compacted pack has %d bytes; want %d", info.Size(), 2*recordSize(4096))
	}
	wantBlock(t, s, blocks[0])
	wantBlock(t, s, blocks[1])
	s = reopen(t, s, dir)
	wantBlock(t, s, blocks[0])
	wantBlock(t, s, blocks[1])
	wantAbsent(t, s, blocks[2])
	wantStats(t, s, 2, 2*4096)

	// When nothing in a pack is live any more, GC removes the pack.
	if removed, _, err := s.GC(context.Background(), func(string) bool { return false }, time.Now().Add(time.Minute)); err != nil || removed != 2 {
		t.Fatalf("GC of everything = %d, %v; want 2", removed, err)
	}
	if p := packFiles(t, dir); len(p) != 0 {
		t.Fatalf("packs left after everything was collected: %v", p)
	}
	wantStats(t, s, 0, 0)
}

func TestPackGCRespectsRefresh(t *testing.T) {
	s, _ := openStore(t)
	a := randomBytes(t, 4096)
	// Stored an hour ago, as far as the store knows.
	s.now = func() time.Time { return time.Now().Add(-time.Hour) }
	putMany(t, s, a)
	s.now = time.Now
	// A client is told the block is present and will commit it soon.
	if missing, err := s.Missing([]string{hashOf(a)}); err != nil || len(missing) != 0 {
		t.Fatalf("Missing = %v, %v", missing, err)
	}
	if removed, _, err := s.GC(context.Background(), func(string) bool { return false }, time.Now().Add(-10*time.Minute)); err != nil || removed != 0 {
		t.Fatalf("GC removed %d (%v) blocks that Missing had just reported present", removed, err)
	}
	wantBlock(t, s, a)
}

func TestPackInterruptedCompaction(t *testing.T) {
	s, dir := openStore(t)
	a, b := randomBytes(t, 4096), randomBytes(t, 4096)
	putMany(t, s, a, b)
	s.Close()
	// A compaction that copied the records but stopped before removing the old pack
	// leaves every block in two packs.
	raw, err := os.ReadFile(packFiles(t, dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, packDirName, packName(7)+packExt), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	wantStats(t, s, 2, 2*4096)
	// The copies are garbage: the next GC compacts one of the packs away.
	if _, _, err := s.GC(context.Background(), func(string) bool { return true }, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if p := packFiles(t, dir); len(p) != 1 {
		t.Fatalf("%d packs after GC; want 1", len(p))
	}
	s = reopen(t, s, dir)
	wantBlock(t, s, a)
	wantBlock(t, s, b)
	wantStats(t, s, 2, 2*4096)
}

// TestPackConcurrent runs overlapping PutMany, Put, Open and GC calls at once (run it
// with -race); every block ends up stored once and readable, also after a reopen.
func TestPackConcurrent(t *testing.T) {
	s, dir := openStore(t)
	var blocks [][]byte
	for range 64 {
		blocks = append(blocks, randomBytes(t, 1000))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range blocks {
				d := blocks[(i+w*16)%len(blocks)]
				if w == 3 {
					if _, _, err := s.Put(hashOf(d), bytes.NewReader(d), 0); err != nil {
						errs <- err
					}
					continue
				}
				if _, _, err := s.PutMany([]BlockData{{Hash: hashOf(d), Data: d}}); err != nil {
					errs <- err
				}
				if r, _, err := s.Open(hashOf(d)); err != nil {
					errs <- err
				} else {
					r.Close()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			// Everything is referenced: GC may compact but must not lose a block.
			if _, _, err := s.GC(context.Background(), func(string) bool { return true }, time.Now().Add(time.Minute)); err != nil {
				errs <- err
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total int64
	for _, d := range blocks {
		wantBlock(t, s, d)
		total += int64(len(d))
	}
	// Put and PutMany each check again under the hash's lock before they publish, so
	// a block raced by both is still stored once.
	wantStats(t, s, int64(len(blocks)), total)
	s = reopen(t, s, dir)
	for _, d := range blocks {
		wantBlock(t, s, d)
	}
	wantStats(t, s, int64(len(blocks)), total)
}

// A crash while a pack was compacted, after its records were copied but before its
// files were all removed, leaves its .dead (or .idx) behind the pack; a later pack
// given the same id must not inherit it: a block stored durably there stays stored,
// and the files left are removed when the store opens.
func TestFilesOfACompactedPackAreNotTakenForALaterOnes(t *testing.T) {
	s, dir := openStore(t)
	a, b := randomBytes(t, 4096), randomBytes(t, 64<<10)
	putMany(t, s, a, b)
	keepB := func(h string) bool { return h == hashOf(b) }
	if _, _, err := s.GC(context.Background(), keepB, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dead, err := os.ReadFile(s.deadPath(0)) // lists a's offset, 0
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GC(context.Background(), func(string) bool { return false }, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if packs := packFiles(t, dir); len(packs) != 0 {
		t.Fatalf("packs after everything was collected: %v", packs)
	}
	// The crash: the pack removed, its .dead (and an .idx) not.
	if err := os.WriteFile(s.deadPath(0), dead, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.idxPath(0), []byte("an index of the pack that is gone"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	for _, p := range []string{s.deadPath(0), s.idxPath(0)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s of a pack that is gone: %v; want it removed", filepath.Base(p), err)
		}
	}
	c := randomBytes(t, 4096)
	putMany(t, s, c) // a new pack 0, c at offset 0
	s = reopen(t, s, dir)
	wantBlock(t, s, c)
}

// A compaction that finds a record of its pack damaged (indexed from the .idx, its
// bytes changed on disk since) drops that block from the index with the pack, so that
// it is reported missing and uploaded again, instead of pointing into a removed file.
func TestCompactionDropsTheDamagedBlocksOfItsPack(t *testing.T) {
	s, dir := openStore(t)
	a, b := randomBytes(t, 64<<10), randomBytes(t, 4096)
	putMany(t, s, a, b)
	s = reopen(t, s, dir) // pack 0 sealed, indexed from its .idx next time
	s = reopen(t, s, dir)
	f, err := os.OpenFile(packFiles(t, dir)[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b[10] ^ 0xff}, recordSize(int64(len(a)))+recHeaderSize+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	keepB := func(h string) bool { return h == hashOf(b) } // a dead: the pack is compacted
	if _, _, err := s.GC(context.Background(), keepB, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	missing, err := s.Missing([]string{hashOf(b)})
	if err != nil || len(missing) != 1 {
		t.Errorf("Missing(b) = %v, %v; want b reported missing", missing, err)
	}
	if _, _, err := s.Open(hashOf(b)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(b): %v; want ErrNotFound", err)
	}
	putMany(t, s, b) // uploaded again
	wantBlock(t, s, b)
}
