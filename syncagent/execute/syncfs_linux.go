//go:build linux

package execute

import (
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncFS says that syncFS flushes the whole filesystem in one call.
const haveSyncFS = true

// syncEachAbove is the size above which a downloaded file is fsynced on its own before
// its rename; smaller ones share one syncfs per slice before their state is recorded.
const syncEachAbove = 4 << 20

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

// startWriteback asks the kernel to start writing a range of f to disk without waiting,
// so that the fsync before the rename finds little left to write. Only a hint: errors
// are ignored, the fsync reports them.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
