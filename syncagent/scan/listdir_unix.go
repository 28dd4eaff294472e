//go:build unix && !linux

package scan

import "os"

// listDir reads the names of the open dir f; none is typed here, so each is stat'ed.
func listDir(f *os.File) ([]dirName, error) {
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]dirName, len(names))
	for i, n := range names {
		out[i] = dirName{name: n}
	}
	return out, nil
}
