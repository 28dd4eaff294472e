package execute

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/directio"
)

// fileWriterKinds are the fileWriter implementations, each made for a new file of the
// given size; the direct one is nil where the system gives none.
var fileWriterKinds = map[string]func(f *os.File, size int64) fileWriter{
	"cached":       func(f *os.File, _ int64) fileWriter { return &cachedWriter{f: f} },
	"cached large": func(f *os.File, _ int64) fileWriter { return &cachedWriter{f: f, large: true} },
	"direct": func(f *os.File, _ int64) fileWriter {
		if w := newDirectWriter(f); w != nil {
			return w
		}
		return nil
	},
	"chosen":        func(f *os.File, size int64) fileWriter { return newFileWriter(f, size, false) },
	"chosen direct": func(f *os.File, size int64) fileWriter { return newFileWriter(f, size, true) },
}

// Only a large file, and only with direct set, is written around the page cache; a
// file system that refuses direct I/O gets cached writes.
func TestFileWriterChosenBySizeAndSetting(t *testing.T) {
	dir := t.TempDir()
	large := max(int64(directMin), syncEachAbove+1) // the smallest file written directly
	for i, c := range []struct {
		size       int64
		direct     bool
		wantDirect bool
	}{
		{large, true, true},
		{large - 1, true, false},
		{large, false, false},
		{100 * large, false, false},
	} {
		f, err := os.Create(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		w := newFileWriter(f, c.size, c.direct)
		_, isDirect := w.(*directWriter)
		if c.wantDirect && !isDirect && newDirectWriter(f) == nil {
			isDirect = true // the file system refuses direct I/O: cached writes are right
		}
		if isDirect != c.wantDirect {
			t.Errorf("size %d, direct %v: writer %T, want direct %v", c.size, c.direct, w, c.wantDirect)
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// Every fileWriter leaves the file holding exactly the bytes written, whatever the size
// (around the alignment and the buffer of direct writes) and however they are cut.
func TestFileWritersWriteExactlyTheirBytes(t *testing.T) {
	sizes := []int{0, 1, directio.Align - 1, directio.Align, directio.Align + 1, directChunk - 1, directChunk,
		directChunk + 1, directMin + 12345, 3*directChunk + directio.Align}
	cuts := []int{1, 1000, directio.Align, 300_000, directChunk + 7}
	for name, newWriter := range fileWriterKinds {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				want := pattern(size)
				p := filepath.Join(t.TempDir(), "f")
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				w := newWriter(f, int64(size))
				if w == nil {
					noDirectIO(t, p)
					return
				}
				rest := want
				for i := 0; len(rest) > 0; i++ {
					n := min(cuts[i%len(cuts)], len(rest))
					if err := w.write(rest[:n]); err != nil {
						t.Fatalf("write: %v", err)
					}
					rest = rest[n:]
				}
				if err := w.finish(); err != nil {
					t.Fatalf("finish: %v", err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("file holds %d bytes, not the %d written (or other bytes)", len(got), len(want))
				}
			})
		}
	}
}

// pattern is size bytes of a pattern that no shift of it repeats soon.
func pattern(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + i/4093)
	}
	return b
}
