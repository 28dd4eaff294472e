//go:build !linux

package execute

import "os"

// syncFS flushes what it can where syncfs does not exist: the folder's root dir.
func syncFS(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// startWriteback is a no-op where sync_file_range(2) is missing.
func startWriteback(*os.File, int64, int64) {}
