//go:build !linux

package execute

import (
	"errors"
	"os"
)

// haveSyncFS says that syncfs(2) is missing: flushLanded fsyncs dirs one by one.
const haveSyncFS = false

// syncEachAbove is below every size: each downloaded file is fsynced before its rename
// (on macOS, Go's fsync is F_FULLFSYNC).
const syncEachAbove = -1

// syncFS is never called where haveSyncFS is false.
func syncFS(*os.Root) error { return errors.ErrUnsupported }

// startWriteback is a no-op where sync_file_range(2) is missing.
func startWriteback(*os.File, int64, int64) {}
