//go:build !linux

package blobs

import (
	"fmt"
	"os"
)

// syncFiles makes the data of files durable, one fsync each where syncfs(2) is missing.
func syncFiles(_ string, files []string) error {
	for _, name := range files {
		// Windows flushes only a handle open for writing ("Access is denied").
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("sync %q: %w", name, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %q: %w", name, err)
		}
	}
	return nil
}

// syncDirs makes renames into dirs durable, one fsync each.
func syncDirs(_ string, dirs []string) error {
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// startWriteback is a no-op where sync_file_range(2) is missing; Sync's fsync does the
// whole writeback.
func startWriteback(*os.File, int64, int64) {}
