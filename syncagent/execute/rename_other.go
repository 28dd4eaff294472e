//go:build !unix

package execute

import (
	"errors"
	"os"
)

// renameAt is missing here: renames go through the folder's root.
func renameAt(*os.File, string, *os.File, string, bool) error { return errors.ErrUnsupported }

// setMTime is missing here: the mtime is set by name once the file is closed.
func setMTime(*os.File, int64) error { return errors.ErrUnsupported }
