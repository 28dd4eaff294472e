//go:build !linux

package execute

import (
	"errors"
	"os"
)

// openAnon is Linux's O_TMPFILE, missing here: downloads land through the staging dir.
func openAnon(*os.File, os.FileMode) (*os.File, error) { return nil, errors.ErrUnsupported }

// linkAnon is missing here, as openAnon is.
func linkAnon(*os.File, *os.File, string, bool) error { return errors.ErrUnsupported }
