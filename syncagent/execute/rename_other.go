//go:build !unix

package execute

import (
	"errors"
	"os"
)

// exchangeAt is missing here (renameat2 is Linux's): replacements rename over the path.
func exchangeAt(*os.File, string, *os.File, string) error { return errors.ErrUnsupported }

// renameAt is missing here: renames go through the folder's root.
func renameAt(*os.File, string, *os.File, string, bool) error { return errors.ErrUnsupported }

// setMTime is missing here: the mtime is set by name once the file is closed.
func setMTime(*os.File, int64) error { return errors.ErrUnsupported }
