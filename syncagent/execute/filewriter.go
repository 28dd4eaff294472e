package execute

import (
	"os"
	"sync"

	"github.com/syncedfolder/synced-folder/internal/directio"
	"github.com/syncedfolder/synced-folder/internal/pagecache"
)

// fileWriter writes the content of a file being assembled, in order.
type fileWriter interface {
	write(data []byte) error
	// finish writes what the writer holds back: the file then holds exactly the bytes
	// written. Nothing is written after it.
	finish() error
}

// newFileWriter returns the writer of f, a new temp file of size bytes. With direct, a
// large file (one fsynced on its own) is written around the page cache where the system
// allows it (directWriter): its bytes are not copied into the cache first, which cost
// more than the disk itself on one machine measured, while on another direct writes ran
// at about half the cached rate (docs/benchmarks.md). Anything else is written through
// the cache, where a program that reads the file next finds it.
func newFileWriter(f *os.File, size int64, direct bool) fileWriter {
	if direct && size > syncEachAbove && size >= directMin {
		if w := newDirectWriter(f); w != nil {
			return w
		}
	}
	return &cachedWriter{f: f, large: size > syncEachAbove}
}

// cachedWriter writes through the page cache; a large file's writeback is started every
// writebackChunk, so that the fsync at the end waits for the last few MiB, not all.
type cachedWriter struct {
	f            *os.File
	large        bool
	off, flushed int64
}

func (w *cachedWriter) write(data []byte) error {
	if _, err := pagecache.Write(w.f, data); err != nil {
		return err
	}
	w.off += int64(len(data))
	if w.large && w.off-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, w.off-w.flushed)
		w.flushed = w.off
	}
	return nil
}

func (w *cachedWriter) finish() error { return nil }

// directChunk is the size of one direct write, and of the buffer each large download
// holds while it is written.
const directChunk = 1 << 20

// directMin is the smallest file written directly: below a few chunks the buffer and the
// padded tail are not worth it.
const directMin = 4 * directChunk

// directBuffers are the aligned buffers of directWriters.
var directBuffers = sync.Pool{New: func() any {
	b := directio.Buffer(directChunk)
	return &b
}}

// newDirectWriter turns on direct I/O for f; nil when the file system refuses it.
func newDirectWriter(f *os.File) *directWriter {
	if !directio.Enable(f) {
		return nil
	}
	return &directWriter{f: f, buf: directBuffers.Get().(*[]byte)}
}

// writeDirect writes b at f's offset. Should the file system refuse a direct write (an
// alignment it wants larger), direct I/O is turned off for f and b is written through
// the page cache instead: the content is the same.
func writeDirect(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil || !directio.Refused(err) {
		return err
	}
	if derr := directio.Disable(f); derr != nil {
		return err
	}
	_, err = pagecache.Write(f, b)
	return err
}

// directWriter gathers a file's bytes into an aligned buffer and writes it in aligned
// chunks to a file opened for direct I/O (set up by newDirectWriter); the last chunk
// is padded with zeros to the alignment and the file is then cut to its size.
type directWriter struct {
	f       *os.File
	buf     *[]byte // aligned, directChunk bytes
	n       int     // bytes waiting in buf
	written int64   // bytes written to f, padding included
}

func (w *directWriter) write(data []byte) error {
	buf := *w.buf
	for len(data) > 0 {
		c := copy(buf[w.n:], data)
		w.n += c
		data = data[c:]
		if w.n == len(buf) {
			if err := w.flush(w.n); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush writes the first n bytes of the buffer (a multiple of directio.Align).
func (w *directWriter) flush(n int) error {
	if err := writeDirect(w.f, (*w.buf)[:n]); err != nil {
		return err
	}
	w.written += int64(n)
	w.n = 0
	return nil
}

func (w *directWriter) finish() error {
	defer func() {
		directBuffers.Put(w.buf)
		w.buf = nil
	}()
	if w.n == 0 {
		return nil
	}
	tail := w.n
	padded := int(directio.Up(int64(tail)))
	clear((*w.buf)[tail:padded])
	if err := w.flush(padded); err != nil {
		return err
	}
	return w.f.Truncate(w.written - int64(padded-tail))
}
