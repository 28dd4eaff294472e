//go:build !linux

package directio

import "os"

// Enable is false where direct I/O is not set up.
func Enable(*os.File) bool { return false }

// Disable has nothing to turn off.
func Disable(*os.File) error { return nil }

// Refused is false: no write is direct here.
func Refused(error) bool { return false }
