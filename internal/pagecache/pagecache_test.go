package pagecache

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// pieces records the writes it is given; it fails the write that would take it past
// failAfter bytes (when failAfter > 0), after taking part of it.
type pieces struct {
	sizes     []int
	got       bytes.Buffer
	failAfter int
}

var errFull = errors.New("full")

func (p *pieces) Write(b []byte) (int, error) {
	p.sizes = append(p.sizes, len(b))
	if p.failAfter > 0 && p.got.Len()+len(b) > p.failAfter {
		n := p.failAfter - p.got.Len()
		p.got.Write(b[:n])
		return n, errFull
	}
	return p.got.Write(b)
}

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestWriteHandsOnPiecesOfAtMostMaxWrite(t *testing.T) {
	for _, size := range []int{0, 1, MaxWrite - 1, MaxWrite, MaxWrite + 1, 5*MaxWrite + 17} {
		data := content(size)
		var p pieces
		n, err := Writer{W: &p}.Write(data)
		if err != nil || n != size {
			t.Fatalf("size %d: Write = %d, %v", size, n, err)
		}
		if !bytes.Equal(p.got.Bytes(), data) {
			t.Fatalf("size %d: the writer got other bytes", size)
		}
		want := (size + MaxWrite - 1) / MaxWrite
		if len(p.sizes) != want {
			t.Fatalf("size %d: %d writes %v, want %d", size, len(p.sizes), p.sizes, want)
		}
		for _, s := range p.sizes {
			if s > MaxWrite || s == 0 {
				t.Fatalf("size %d: a write of %d bytes", size, s)
			}
		}
	}
}

func TestWriteStopsAtTheFirstError(t *testing.T) {
	data := content(3 * MaxWrite)
	p := pieces{failAfter: MaxWrite + 10}
	n, err := Write(&p, data)
	if !errors.Is(err, errFull) || n != MaxWrite+10 {
		t.Fatalf("Write = %d, %v; want %d, %v", n, err, MaxWrite+10, errFull)
	}
	if len(p.sizes) != 2 {
		t.Fatalf("%d writes after the error's, want none", len(p.sizes)-2)
	}
}

func TestWriteAtPlacesEveryPiece(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := content(100)
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	data := content(3*MaxWrite + 5)
	for i := range data {
		data[i] ^= 0x5a
	}
	n, err := WriteAt(f, data, 100)
	if err != nil || n != len(data) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(head, data...)) {
		t.Fatalf("the file holds other bytes (%d, want %d)", len(got), len(head)+len(data))
	}
}

func TestWriteAtReportsTheBytesBeforeAnError(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	n, err := WriteAt(f, content(2*MaxWrite), 0)
	if err == nil || n != 0 {
		t.Fatalf("WriteAt on a closed file = %d, %v; want 0 and an error", n, err)
	}
}

func TestReplaceWithReplacesTheFileWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.Create(path + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	data := content(2*MaxWrite + 3)
	if err := ReplaceWith(tmp, path, data); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file holds %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temp file left: %v", err)
	}

	// A rename that fails (path is now a non-empty dir) leaves no temp file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err = os.Create(path + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	if err := ReplaceWith(tmp, path, data); err == nil {
		t.Fatal("replacing a non-empty dir reported no error")
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temp file left after a failure: %v", err)
	}
}

// A content written by a function that fails leaves the old file as it was and no temp
// file; one that succeeds replaces it whole.
func TestReplaceWithFuncKeepsTheOldFileOnAFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := content(3*MaxWrite + 1)
	boom := errors.New("boom")
	tmp, err := os.Create(path + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	err = ReplaceWithFunc(tmp, path, func(w io.Writer) error {
		if _, err := w.Write(data[:MaxWrite+5]); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("a failing write: %v, want %v", err, boom)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "old" {
		t.Fatalf("after a failed replace the file holds %q (%v), want \"old\"", got, err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temp file left after a failure: %v", err)
	}
	tmp, err = os.Create(path + ".tmp")
	if err != nil {
		t.Fatal(err)
	}
	if err := ReplaceWithFunc(tmp, path, func(w io.Writer) error {
		for p := data; len(p) > 0; p = p[min(len(p), 1000):] {
			if _, err := w.Write(p[:min(len(p), 1000)]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file holds %d bytes (%v), want the %d written", len(got), err, len(data))
	}
}
