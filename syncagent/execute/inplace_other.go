//go:build !linux

package execute

import (
	"io/fs"
	"os"
)

// patchInPlaceSupported is false where setMTime cannot set a descriptor's mtime: files
// are rebuilt and renamed into place.
const patchInPlaceSupported = false

// replayOpenFlags: no patch is finished here (fileIdentity knows no inode).
const replayOpenFlags = 0

// fileIdentity is not known here.
func fileIdentity(fs.FileInfo) (ino, links uint64, ok bool) { return 0, 0, false }

// reserve is not needed where no patch is made in place.
func reserve(*os.File, int64, int64) error { return nil }
