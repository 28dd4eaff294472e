// Package directio writes files around the page cache (O_DIRECT on Linux) where the
// system allows it: large writes that must reach the disk anyway (an fsync follows)
// then cost no copy into the cache. Elsewhere every call says it is not available and
// callers write through the cache.
package directio

import "unsafe"

// Align is the alignment of a direct write's memory, file offset and length: 4 KiB
// covers the logical block size of every disk in use.
const Align = 4096

// Buffer returns n bytes (a multiple of Align) whose memory starts on Align.
func Buffer(n int) []byte {
	raw := make([]byte, n+Align)
	skip := 0
	if r := uintptr(unsafe.Pointer(unsafe.SliceData(raw))) % Align; r != 0 {
		skip = Align - int(r)
	}
	return raw[skip : skip+n : skip+n]
}

// Up rounds n up to a multiple of Align.
func Up(n int64) int64 { return (n + Align - 1) / Align * Align }
