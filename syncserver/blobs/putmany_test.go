package blobs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
)

func TestPutMany(t *testing.T) {
	s, dir := openStore(t)
	a, b, c := randomBytes(t, 4096), randomBytes(t, 100), []byte{}
	if _, _, err := s.Put(hashOf(b), bytes.NewReader(b), 0); err != nil {
		t.Fatal(err)
	}
	batch := []BlockData{{Hash: hashOf(a), Data: a}, {Hash: hashOf(b), Data: b}, {Hash: hashOf(c), Data: c}, {Hash: hashOf(a), Data: a}}
	created, createdBytes, err := s.PutMany(batch)
	if err != nil {
		t.Fatal(err)
	}
	if created != 2 || createdBytes != int64(len(a)) {
		t.Fatalf("PutMany created %d blocks, %d bytes; want 2, %d", created, createdBytes, len(a))
	}
	for _, d := range [][]byte{a, b, c} {
		f, size, err := s.Open(hashOf(d))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if size != int64(len(d)) || !bytes.Equal(got, d) {
			t.Fatalf("block %s read back wrong", hashOf(d)[:8])
		}
	}
	// Put packed b; a and c join it in the same pack; no temp file is left.
	if n := countFiles(t, dir); n != 1 {
		t.Fatalf("%d files in the store; want 1 (no temp files left)", n)
	}
	if n := countFiles(t, filepath.Join(dir, packDirName)); n != 1 {
		t.Fatalf("%d files in %s; want 1 pack", n, packDirName)
	}
	if blocks, bytes, _ := s.Stats(); blocks != 3 || bytes != int64(len(a)+len(b)) {
		t.Fatalf("Stats = %d, %d; want 3, %d", blocks, bytes, len(a)+len(b))
	}
}

func sumOf(b []byte) *[sha256.Size]byte {
	s := sha256.Sum256(b)
	return &s
}

func TestPutManyRefusesWholeBatch(t *testing.T) {
	s, dir := openStore(t)
	good, evil := randomBytes(t, 64), randomBytes(t, 64)
	for name, batch := range map[string][]BlockData{
		"mismatch": {{Hash: hashOf(good), Data: good}, {Hash: hashOf(good[:10]), Data: evil}},
		"invalid":  {{Hash: hashOf(good), Data: good}, {Hash: "../../etc/passwd", Data: evil}},
		// A caller's SHA-256 of the data is checked against the name like PutMany's own.
		"sum mismatch": {{Hash: hashOf(good), Data: good}, {Hash: hashOf(good[:10]), Data: evil, Sum: sumOf(evil)}},
	} {
		_, _, err := s.PutMany(batch)
		if !errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrInvalidHash) {
			t.Fatalf("%s: PutMany error %v", name, err)
		}
		if n := countFiles(t, dir); n != 0 {
			t.Fatalf("%s: %d files stored by a refused batch", name, n)
		}
	}
}

func BenchmarkPutMany256x4KiB(b *testing.B) {
	s, _ := openStore(b)
	const batch = 256
	b.SetBytes(batch * 4096)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		blocks := make([]BlockData, batch)
		for j := range blocks {
			d := randomBytes(b, 4096)
			blocks[j] = BlockData{Hash: hashOf(d), Data: d}
		}
		b.StartTimer()
		if _, _, err := s.PutMany(blocks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "blocks/s")
}

// TestConcurrentPutManyIsDurableWhenItAnswers runs batches side by side (two commits in
// flight): the pack is written under the write lock and synced after it, so every
// batch must still find all its blocks durable, and readable, when PutMany returns.
func TestConcurrentPutManyIsDurableWhenItAnswers(t *testing.T) {
	s, _ := openStore(t)
	const batches, perBatch = 6, 50
	data := make([][]BlockData, batches)
	for i := range data {
		for range perBatch {
			b := randomBytes(t, 1024+len(data[i])*97)
			data[i] = append(data[i], BlockData{Hash: hashOf(b), Data: b})
		}
	}
	// A block shared by every batch: one of them packs it, the others' dedup hit must
	// still wait for it to be durable.
	shared := randomBytes(t, 3000)
	for i := range data {
		data[i] = append(data[i], BlockData{Hash: hashOf(shared), Data: shared})
	}
	errs := make(chan error, batches)
	for i := range data {
		go func() {
			if _, _, err := s.PutMany(data[i]); err != nil {
				errs <- err
				return
			}
			for _, b := range data[i] {
				if !durable(s, s.lookupPacked(b.Hash, false)) {
					errs <- fmt.Errorf("batch %d: block %s not durable when PutMany answered", i, b.Hash[:8])
					return
				}
			}
			errs <- nil
		}()
	}
	for range data {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, batch := range data {
		for _, b := range batch {
			f, _, err := s.Open(b.Hash)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(f)
			f.Close()
			if !bytes.Equal(got, b.Data) {
				t.Fatalf("block %s read back wrong", b.Hash[:8])
			}
		}
	}
}
