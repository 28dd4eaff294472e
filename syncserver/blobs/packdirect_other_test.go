//go:build !linux

package blobs

import "testing"

// haveDirectIO is false: direct I/O is set up on Linux only.
func haveDirectIO(*testing.T) bool { return false }
