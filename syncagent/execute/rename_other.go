//go:build !unix

package execute

import (
	"errors"
	"os"
)

// renameAt is missing here: renames go through the folder's root.
func renameAt(*os.File, string, *os.File, string) error { return errors.ErrUnsupported }
