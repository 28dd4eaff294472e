package blobs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncFiles makes the data of files durable. On Linux one syncfs(2) of the store's
// filesystem costs one journal commit instead of one per file, which is what makes
// PutMany of many small blocks fast.
func syncFiles(root string, _ []string) error {
	return syncFS(root)
}

// syncDirs makes renames into dirs durable; on Linux, with one syncfs(2).
func syncDirs(root string, _ []string) error {
	return syncFS(root)
}

func syncFS(root string) error {
	d, err := os.Open(root)
	if err != nil {
		return fmt.Errorf("open block store %q: %w", root, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync filesystem of %q: %w", root, err)
	}
	return nil
}

// startWriteback asks the kernel to start writing a range of f to disk without waiting
// for it, so that a later fsync finds little left to do. Errors are ignored: it is only
// a hint, and the fsync reports any failure.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
