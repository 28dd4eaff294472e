//go:build !linux

package execute

import "testing"

// noDirectIO is expected where direct I/O is not set up.
func noDirectIO(*testing.T, string) {}
