package blobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func openStore(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blocks")
	s, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// countFiles counts the regular files under dir, temp files included.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestValidHash(t *testing.T) {
	good := hashOf([]byte("x"))
	if !ValidHash(good) {
		t.Fatalf("ValidHash(%q) = false", good)
	}
	for _, h := range []string{"", "abc", strings.ToUpper(good), good + "0", good[:63], good[:62] + "..", "../" + good[3:], good[:63] + "g", good[:63] + "/", good[:63] + "\x00"} {
		if ValidHash(h) {
			t.Errorf("ValidHash(%q) = true", h)
		}
	}
}

// looseContent pads s past maxPackedBlock, so that Put stores it as a file of its own.
func looseContent(s string) string { return s + strings.Repeat("x", maxPackedBlock) }

func TestRoundTrip(t *testing.T) {
	// Up to maxPackedBlock a streamed block goes to a pack; above, to a file.
	for _, size := range []int{300 << 10, maxPackedBlock + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { testRoundTrip(t, size) })
	}
}

func testRoundTrip(t *testing.T, length int) {
	s, dir := openStore(t)
	data := randomBytes(t, length)
	h := hashOf(data)
	packed := length <= maxPackedBlock

	if ok, err := s.Has(h); err != nil || ok {
		t.Fatalf("Has before Put = %v, %v", ok, err)
	}
	n, created, err := s.Put(h, bytes.NewReader(data), 2<<20)
	if err != nil || !created || n != int64(len(data)) {
		t.Fatalf("Put = %d, %v, %v; want %d, true, nil", n, created, err, len(data))
	}
	if ok, err := s.Has(h); err != nil || !ok {
		t.Fatalf("Has after Put = %v, %v", ok, err)
	}
	f, size, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("Open returned %d bytes (size %d); want the %d stored", len(got), size, len(data))
	}
	if _, err := os.Stat(filepath.Join(dir, h[:2], h)); (err == nil) == packed {
		t.Fatalf("block at its fan-out path: %v; want it there only when not packed (%v)", err, packed)
	}
	if n := countFiles(t, filepath.Join(dir, packDirName)); (n == 1) != packed {
		t.Fatalf("%d packs; want one only when packed (%v)", n, packed)
	}

	// A second Put of the same content is a dedup hit and writes nothing new.
	n, created, err = s.Put(h, bytes.NewReader(data), 2<<20)
	if err != nil || created || n != int64(len(data)) {
		t.Fatalf("second Put = %d, %v, %v; want %d, false, nil", n, created, err, len(data))
	}
	if blocks, b, _ := s.Stats(); blocks != 1 || b != int64(len(data)) {
		t.Fatalf("Stats = %d blocks, %d bytes; want 1, %d", blocks, b, len(data))
	}
	if c := countFiles(t, dir); c != 1 {
		t.Fatalf("%d files in the store; want 1", c)
	}

	// The empty block is a block like any other.
	empty := hashOf(nil)
	if _, created, err := s.Put(empty, bytes.NewReader(nil), 10); err != nil || !created {
		t.Fatalf("Put(empty) = %v, %v", created, err)
	}

	_, _, err = s.Open(hashOf([]byte("absent")))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open(absent) error %v; want ErrNotFound", err)
	}
}

func TestMissing(t *testing.T) {
	s, _ := openStore(t)
	a, b, c := []byte("a"), []byte("b"), []byte("c")
	for _, d := range [][]byte{a, c} {
		if _, _, err := s.Put(hashOf(d), bytes.NewReader(d), 0); err != nil {
			t.Fatal(err)
		}
	}
	d := []byte("d")
	got, err := s.Missing([]string{hashOf(d), hashOf(a), hashOf(b), hashOf(d), hashOf(c), hashOf(b)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{hashOf(d), hashOf(b)}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Missing = %v; want %v", got, want)
	}
	if got, err := s.Missing(nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Missing(nil) = %#v, %v; want an empty list", got, err)
	}
}

func TestPutHashMismatchStoresNothing(t *testing.T) {
	s, dir := openStore(t)
	data := randomBytes(t, 10000)
	wrong := hashOf([]byte("something else"))
	_, created, err := s.Put(wrong, bytes.NewReader(data), 1<<20)
	if !errors.Is(err, ErrHashMismatch) || created {
		t.Fatalf("Put with a wrong hash = %v, %v; want ErrHashMismatch", created, err)
	}
	if ok, _ := s.Has(wrong); ok {
		t.Fatal("a mismatched block was stored")
	}
	if c := countFiles(t, dir); c != 0 {
		t.Fatalf("%d files left in the store; want 0", c)
	}
	if blocks, b, _ := s.Stats(); blocks != 0 || b != 0 {
		t.Fatalf("Stats = %d, %d; want 0, 0", blocks, b)
	}

	// A wrong body for an already stored hash is refused too.
	good := []byte("good")
	if _, _, err := s.Put(hashOf(good), bytes.NewReader(good), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(hashOf(good), strings.NewReader("evil"), 0); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("dedup Put with a wrong body: %v; want ErrHashMismatch", err)
	}
	f, _, err := s.Open(hashOf(good))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, _ := io.ReadAll(f); string(got) != "good" {
		t.Fatalf("stored block changed to %q", got)
	}
}

func TestPutTooLarge(t *testing.T) {
	s, dir := openStore(t)
	data := randomBytes(t, 4097)
	_, created, err := s.Put(hashOf(data), bytes.NewReader(data), 4096)
	if !errors.Is(err, ErrTooLarge) || created {
		t.Fatalf("Put over the limit = %v, %v; want ErrTooLarge", created, err)
	}
	if c := countFiles(t, dir); c != 0 {
		t.Fatalf("%d files left in the store; want 0", c)
	}
	// Exactly at the limit is fine.
	if _, created, err := s.Put(hashOf(data[:4096]), bytes.NewReader(data[:4096]), 4096); err != nil || !created {
		t.Fatalf("Put at the limit = %v, %v", created, err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestPutReadErrorStoresNothing(t *testing.T) {
	s, dir := openStore(t)
	_, _, err := s.Put(hashOf([]byte("x")), &failingReader{n: 5000}, 0)
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Put from a failing reader: %v", err)
	}
	if c := countFiles(t, dir); c != 0 {
		t.Fatalf("%d files left in the store; want 0", c)
	}
}

func TestConcurrentPutsOfOneHash(t *testing.T) {
	s, dir := openStore(t)
	data := randomBytes(t, 1<<20)
	h := hashOf(data)
	const writers = 8
	var wg sync.WaitGroup
	created := make([]bool, writers)
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created[i], errs[i] = s.Put(h, bytes.NewReader(data), 2<<20)
		}()
	}
	wg.Wait()
	wins := 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("Put %d: %v", i, errs[i])
		}
		if created[i] {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d Puts reported created; want exactly 1", wins)
	}
	if c := countFiles(t, dir); c != 1 {
		t.Fatalf("%d files in the store; want 1 (temp files must be gone)", c)
	}
	if blocks, b, _ := s.Stats(); blocks != 1 || b != int64(len(data)) {
		t.Fatalf("Stats = %d, %d; want 1, %d", blocks, b, len(data))
	}
	f, _, err := s.Open(h)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(f)
	if !bytes.Equal(got, data) {
		t.Fatal("stored content differs")
	}
}

func TestOpenCleansStaleTempFilesAndRecounts(t *testing.T) {
	s, dir := openStore(t)
	data := []byte("kept")
	if _, _, err := s.Put(hashOf(data), bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of an upload leaves behind.
	stale := filepath.Join(dir, tmpDirName, hashOf([]byte("y"))[:16]+".123456")
	if err := os.WriteFile(stale, []byte("half a blo"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temp file still there after Open: %v", err)
	}
	if blocks, b, _ := s2.Stats(); blocks != 1 || b != int64(len(data)) {
		t.Fatalf("Stats after reopen = %d, %d; want 1, %d", blocks, b, len(data))
	}
	if ok, _ := s2.Has(hashOf(data)); !ok {
		t.Fatal("stored block lost on reopen")
	}
}

func TestGC(t *testing.T) {
	s, _ := openStore(t)
	put := func(content string) string {
		t.Helper()
		content = looseContent(content)
		h := hashOf([]byte(content))
		if _, _, err := s.Put(h, strings.NewReader(content), 0); err != nil {
			t.Fatal(err)
		}
		return h
	}
	referencedOld := put("referenced and old")
	unreferencedOld := put("unreferenced and old!")
	unreferencedYoung := put("unreferenced but young")
	old := time.Now().Add(-time.Hour)
	for _, h := range []string{referencedOld, unreferencedOld} {
		if err := os.Chtimes(s.path(h), old, old); err != nil {
			t.Fatal(err)
		}
	}
	refs := map[string]bool{referencedOld: true}
	removed, freed, err := s.GC(context.Background(), func(h string) bool { return refs[h] }, time.Now().Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(looseContent("unreferenced and old!"))); removed != 1 || freed != want {
		t.Fatalf("GC removed %d blocks, %d bytes; want 1, %d", removed, freed, want)
	}
	for h, want := range map[string]bool{referencedOld: true, unreferencedOld: false, unreferencedYoung: true} {
		if ok, err := s.Has(h); err != nil || ok != want {
			t.Errorf("Has(%s) after GC = %v, %v; want %v", h[:8], ok, err, want)
		}
	}
	if blocks, _, _ := s.Stats(); blocks != 2 {
		t.Fatalf("Stats after GC = %d blocks; want 2", blocks)
	}
}

func TestHasRefreshesGracePeriod(t *testing.T) {
	s, _ := openStore(t)
	content := looseContent("about to be committed")
	h := hashOf([]byte(content))
	if _, _, err := s.Put(h, strings.NewReader(content), 0); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(s.path(h), old, old); err != nil {
		t.Fatal(err)
	}
	// A client asks whether the block is missing, is told no, and will commit it soon:
	// GC must not remove it in between.
	if missing, err := s.Missing([]string{h}); err != nil || len(missing) != 0 {
		t.Fatalf("Missing = %v, %v", missing, err)
	}
	removed, _, err := s.GC(context.Background(), func(string) bool { return false }, time.Now().Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if removed != 0 {
		t.Fatal("GC removed a block that Missing had just reported present")
	}
}

func TestGCStopsOnCancel(t *testing.T) {
	s, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.GC(ctx, func(string) bool { return false }, time.Now()); !errors.Is(err, context.Canceled) {
		t.Fatalf("GC with a cancelled context: %v", err)
	}
}

func TestInvalidHashRefusedEverywhere(t *testing.T) {
	s, dir := openStore(t)
	// A file outside the store that a traversing hash would reach.
	outside := filepath.Join(filepath.Dir(dir), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := hashOf([]byte("x"))
	bad := []string{"", "../secret", "../../secret", strings.ToUpper(good), good[:63], good + "a", "tmp/" + good[4:], "/etc/passwd"}
	for _, h := range bad {
		if _, err := s.Has(h); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("Has(%q): %v; want ErrInvalidHash", h, err)
		}
		if _, err := s.Missing([]string{good, h}); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("Missing(%q): %v; want ErrInvalidHash", h, err)
		}
		if _, _, err := s.Put(h, strings.NewReader("x"), 0); !errors.Is(err, ErrInvalidHash) {
			t.Errorf("Put(%q): %v; want ErrInvalidHash", h, err)
		}
		if f, _, err := s.Open(h); !errors.Is(err, ErrInvalidHash) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%q): %v; want ErrInvalidHash", h, err)
		}
	}
	if c := countFiles(t, dir); c != 0 {
		t.Fatalf("%d files written by refused calls", c)
	}
	// Stray files that are not blocks are neither counted nor collected.
	stray := filepath.Join(dir, "ab", "notes.txt")
	if err := os.WriteFile(stray, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stray, old, old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GC(context.Background(), func(string) bool { return false }, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Fatalf("GC removed a file that is not a block: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("file outside the store touched: %v", err)
	}
}

func BenchmarkPut4KiB(b *testing.B) {
	s, _ := openStore(b)
	blocks := make([][]byte, b.N)
	for i := range blocks {
		blocks[i] = randomBytes(b, 4096)
	}
	hashes := make([]string, b.N)
	for i := range blocks {
		hashes[i] = hashOf(blocks[i])
	}
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := s.Put(hashes[i], bytes.NewReader(blocks[i]), 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "blocks/s")
}

func BenchmarkPut4MiB(b *testing.B) {
	s, _ := openStore(b)
	data := randomBytes(b, 4<<20)
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// A fresh block each time, so every Put writes and fsyncs.
		copy(data, randomBytes(b, 32))
		h := hashOf(data)
		b.StartTimer()
		if _, created, err := s.Put(h, bytes.NewReader(data), 8<<20); err != nil || !created {
			b.Fatalf("Put = created %v, %v", created, err)
		}
	}
}
