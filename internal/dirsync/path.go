package dirsync

import (
	"fmt"
	"os"
)

// SyncPath opens dir with open (os.Open, or an os.Root's Open for a dir below it) and
// makes its entries durable with Sync.
func SyncPath(open func(name string) (*os.File, error), dir string) error {
	d, err := open(dir)
	if err != nil {
		return fmt.Errorf("open dir %q: %w", dir, err)
	}
	defer d.Close()
	if err := Sync(d); err != nil {
		return fmt.Errorf("sync dir %q: %w", dir, err)
	}
	return nil
}
