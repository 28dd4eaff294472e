//go:build linux

package directio

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Enable turns on direct I/O for f's later writes; false when the file system refuses
// it (tmpfs on older kernels, some network file systems).
func Enable(f *os.File) bool {
	return setDirect(f, true) == nil
}

// Disable turns direct I/O off for f.
func Disable(f *os.File) error { return setDirect(f, false) }

func setDirect(f *os.File, on bool) error {
	fd := f.Fd()
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, fl)
	return err
}

// Refused reports whether a direct write failed for its alignment (EINVAL), which a
// file system may want larger than Align: the caller writes through the cache instead.
func Refused(err error) bool { return errors.Is(err, unix.EINVAL) }
