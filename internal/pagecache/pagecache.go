// Package pagecache writes files through the page cache in pieces of at most MaxWrite
// bytes.
//
// A kernel whose file system caches files in large folios (ext4 on Linux 6.x) backs one
// write of n bytes with folios of up to n bytes. On a virtual machine that reports its
// free memory to the host (virtio-balloon free page reporting, in blocks of
// 2^page_reporting_order pages: 128 KiB on the machines measured), a folio that large is
// carved from a reported block, and touching it first faults to the host. There, 256 MiB
// written to a new file in writes of 128 KiB or 1 MiB cost 1.4–1.7 s of system time,
// and 0.07 s in writes of 64 KiB (docs/benchmarks.md). Elsewhere the smaller writes cost
// a few more system calls, nothing else.
package pagecache

import (
	"fmt"
	"io"
	"os"
)

// MaxWrite is the largest piece handed to the kernel in one write: 64 KiB, one order
// below the 128 KiB blocks in which free memory is reported.
const MaxWrite = 64 << 10

// WriteAt writes p to w at off in pieces of at most MaxWrite bytes. It returns the
// bytes written and the first error.
func WriteAt(w io.WriterAt, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := w.WriteAt(p[n:min(n+MaxWrite, len(p))], off+int64(n))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Write writes p to w in pieces of at most MaxWrite bytes. It returns the bytes written
// and the first error.
func Write(w io.Writer, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := w.Write(p[n:min(n+MaxWrite, len(p))])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Writer is an io.Writer that passes what it is given to W in pieces of at most
// MaxWrite bytes.
type Writer struct {
	W io.Writer
}

// Write writes p to w.W in pieces of at most MaxWrite bytes.
func (w Writer) Write(p []byte) (int, error) { return Write(w.W, p) }

// ReplaceWith writes data to tmp, an open new file beside path, in pieces of at most
// MaxWrite bytes, fsyncs and closes it, then renames it over path: a reader finds the
// old file or the whole new one. On failure tmp is closed and removed. Making the
// rename durable (an fsync of the dir) is the caller's.
func ReplaceWith(tmp *os.File, path string, data []byte) error {
	return ReplaceWithFunc(tmp, path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// ReplaceWithFunc is ReplaceWith of what write writes to w (which passes it to tmp in
// pieces of at most MaxWrite bytes): a large content need not be held whole. An error
// of write fails it as a failed write would.
func ReplaceWithFunc(tmp *os.File, path string, write func(w io.Writer) error) error {
	err := write(Writer{W: tmp})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}
