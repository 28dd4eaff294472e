//go:build !linux

package execute

import "os"

// newDirectWriter is nil where direct I/O is not set up: files go through the cache.
func newDirectWriter(*os.File) *directWriter { return nil }

// writeDirect is never called where newDirectWriter returns nil.
func writeDirect(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}
