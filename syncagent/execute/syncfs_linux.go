//go:build linux

package execute

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystem that holds root in one call, cheaper than an fsync per
// small file.
func syncFS(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
