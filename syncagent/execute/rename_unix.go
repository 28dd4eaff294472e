//go:build unix

package execute

import (
	"os"

	"golang.org/x/sys/unix"
)

// renameAt renames oldname in the dir from to newname in the dir to (renameat(2)): both
// dirs are already open, so neither path is resolved again from the folder's root. The
// names are single path elements, and renameat follows no link in them.
func renameAt(from *os.File, oldname string, to *os.File, newname string) error {
	if err := unix.Renameat(int(from.Fd()), oldname, int(to.Fd()), newname); err != nil {
		return &os.LinkError{Op: "renameat", Old: oldname, New: newname, Err: err}
	}
	return nil
}
