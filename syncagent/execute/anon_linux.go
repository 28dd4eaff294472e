package execute

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openAnon makes an unnamed file in the open dir (open(2)'s O_TMPFILE), to be written
// and then linked into dir by linkAnon. Until then no dir entry exists: nothing to
// rename, no watcher event, nothing left behind by a crash. Its mode is perm less the
// umask (no one can open it before it is linked, so it may have its final mode from the
// start). A file system that cannot make one gives ErrUnsupported.
func openAnon(dir *os.File, perm os.FileMode) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(perm.Perm()))
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return nil, errors.ErrUnsupported
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat O_TMPFILE", Path: dir.Name(), Err: err}
	}
	// A blocking descriptor: os.NewFile then leaves it out of the network poller, which
	// a regular file cannot join anyway.
	return os.NewFile(uintptr(fd), dir.Name()+"/(unnamed)"), nil
}

// linkAnon gives the file openAnon made the name name in the open dir (linkat(2)). Like
// a rename that must not replace, it fails with EEXIST when name exists, checked by the
// kernel in the same step. The file is named by its descriptor (AT_EMPTY_PATH), which
// Linux allows without privilege since 6.10, or with viaProc by its /proc/self/fd path,
// which needs /proc but no privilege (and costs a walk of /proc on every link).
func linkAnon(f *os.File, dir *os.File, name string, viaProc bool) error {
	var err error
	if viaProc {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), int(dir.Fd()), name, unix.AT_SYMLINK_FOLLOW)
	} else {
		err = unix.Linkat(int(f.Fd()), "", int(dir.Fd()), name, unix.AT_EMPTY_PATH)
	}
	if err != nil {
		return &os.LinkError{Op: "linkat", Old: f.Name(), New: name, Err: err}
	}
	return nil
}
