// Package modroot finds this repository's root (the directory holding go.mod) for tests
// and tools that run scripts or build commands from it.
package modroot

import (
	"errors"
	"os"
	"path/filepath"
)

// Find walks up from the working directory (under go test, the package's directory) to
// the directory holding go.mod.
func Find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
