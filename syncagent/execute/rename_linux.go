package execute

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// renameAt renames oldname in the dir from to newname in the dir to (renameat2(2)): both
// dirs are already open, so neither path is resolved again from the folder's root. The
// names are single path elements, and renameat follows no link in them. With noReplace
// the rename fails with EEXIST when newname exists, checked by the kernel in the same
// step; a file system that does not take the flag gives ErrUnsupported.
func renameAt(from *os.File, oldname string, to *os.File, newname string, noReplace bool) error {
	var flags uint
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	err := unix.Renameat2(int(from.Fd()), oldname, int(to.Fd()), newname, flags)
	if noReplace && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)) {
		return errors.ErrUnsupported
	}
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// exchangeAt swaps oldname in the dir from and newname in the dir to in one step
// (renameat2(2) with RENAME_EXCHANGE): both must exist. A file system that does not
// take the flag gives ErrUnsupported.
func exchangeAt(from *os.File, oldname string, to *os.File, newname string) error {
	err := unix.Renameat2(int(from.Fd()), oldname, int(to.Fd()), newname, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return errors.ErrUnsupported
	}
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// setMTime sets the access and modification times of the open file f to ns
// (utimensat(2) on the descriptor): unlike os.Chtimes it resolves no path.
func setMTime(f *os.File, ns int64) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return &os.PathError{Op: "utimensat", Path: f.Name(), Err: errno}
	}
	return nil
}
