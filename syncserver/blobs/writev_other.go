//go:build !linux

package blobs

import "os"

// writeAt writes the records at off of f from one buffer.
func (r *blockRecords) writeAt(f *os.File, off int64) error {
	buf := make([]byte, 0, r.total)
	_ = r.pieces(func(b []byte) error {
		buf = append(buf, b...)
		return nil
	})
	return recordBuf(buf).writeAt(f, off)
}
