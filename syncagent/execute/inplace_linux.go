package execute

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// patchInPlaceSupported says whether files may be patched in place here: the patch
// sets the mtime on its descriptor (setMTime) and tells files apart by inode.
const patchInPlaceSupported = true

// replayOpenFlags are added to the open of a file whose patch is finished at a
// restart: a FIFO put at its path meanwhile must not block the agent's start.
const replayOpenFlags = syscall.O_NONBLOCK

// fileIdentity returns the inode and link count of the file fi describes.
func fileIdentity(fi fs.FileInfo) (ino, links uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Ino, uint64(st.Nlink), true //nolint:unconvert // uint32 on arm64
}

// reserve allocates n bytes of f from off on (fallocate(2)), extending its size; a file
// system that cannot is left to allocate as the bytes are written.
func reserve(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, off, n)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return nil
	}
	return err
}
