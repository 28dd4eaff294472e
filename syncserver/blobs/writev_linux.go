package blobs

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/syncedfolder/synced-folder/internal/pagecache"
)

// maxIovecs bounds the pieces of one vectored write (the kernel's IOV_MAX is 1,024).
const maxIovecs = 1024

// writeAt writes the records at off of f with pwritev(2), each call at most
// pagecache.MaxWrite bytes (see package pagecache).
func (r *blockRecords) writeAt(f *os.File, off int64) error {
	fd := int(f.Fd())
	var iovs [][]byte
	n := 0
	flush := func() error {
		for len(iovs) > 0 {
			w, err := unix.Pwritev(fd, iovs, off)
			if err != nil {
				return &os.PathError{Op: "pwritev", Path: f.Name(), Err: err}
			}
			if w == 0 {
				return fmt.Errorf("pwritev %q: %w", f.Name(), io.ErrShortWrite)
			}
			off += int64(w)
			for w > 0 { // a short write: drop what went out
				if w >= len(iovs[0]) {
					w -= len(iovs[0])
					iovs = iovs[1:]
				} else {
					iovs[0] = iovs[0][w:]
					w = 0
				}
			}
		}
		iovs, n = iovs[:0], 0
		return nil
	}
	err := r.pieces(func(b []byte) error {
		for len(b) > 0 {
			k := min(len(b), pagecache.MaxWrite-n)
			iovs = append(iovs, b[:k])
			n += k
			b = b[k:]
			if n == pagecache.MaxWrite || len(iovs) == maxIovecs {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
