//go:build unix && !linux

package execute

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchangeAt is missing here (renameat2 is Linux's): replacements rename over the path.
func exchangeAt(*os.File, string, *os.File, string) error { return errors.ErrUnsupported }

// renameAt renames oldname in the dir from to newname in the dir to (renameat(2)): both
// dirs are already open, so neither path is resolved again from the folder's root. The
// names are single path elements, and renameat follows no link in them. noReplace
// (fail if newname exists) is Linux's renameat2 flag: ErrUnsupported here.
func renameAt(from *os.File, oldname string, to *os.File, newname string, noReplace bool) error {
	if noReplace {
		return errors.ErrUnsupported
	}
	if err := unix.Renameat(int(from.Fd()), oldname, int(to.Fd()), newname); err != nil {
		return &os.LinkError{Op: "renameat", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// setMTime is missing here: the mtime is set by name once the file is closed.
func setMTime(*os.File, int64) error { return errors.ErrUnsupported }
