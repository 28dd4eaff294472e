//go:build linux

package execute

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newDirectWriter turns on direct I/O (O_DIRECT) for f; nil when the file system
// refuses it (tmpfs on older kernels, some network file systems).
func newDirectWriter(f *os.File) *directWriter {
	fd := int(f.Fd())
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_DIRECT); err != nil {
		return nil
	}
	return &directWriter{f: f, buf: alignedBuffer()}
}

// writeDirect writes b at f's offset. Should the file system refuse a direct write
// (EINVAL: an alignment it wants larger), direct I/O is turned off for f and b is
// written through the page cache instead: the content is the same.
func writeDirect(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil || !errors.Is(err, unix.EINVAL) {
		return err
	}
	fd := f.Fd()
	fl, ferr := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if ferr != nil {
		return err
	}
	if _, ferr := unix.FcntlInt(fd, unix.F_SETFL, fl&^unix.O_DIRECT); ferr != nil {
		return err
	}
	_, err = f.Write(b)
	return err
}

// alignedBuffer returns a directChunk-byte buffer whose memory starts on directAlign.
func alignedBuffer() *[]byte {
	if b, ok := directBuffers.Get().(*[]byte); ok {
		return b
	}
	raw := make([]byte, directChunk+directAlign)
	skip := 0
	if r := uintptr(unsafe.Pointer(unsafe.SliceData(raw))) % directAlign; r != 0 {
		skip = directAlign - int(r)
	}
	b := raw[skip : skip+directChunk : skip+directChunk]
	return &b
}
