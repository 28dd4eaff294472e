//go:build !unix

package scan

import (
	"io/fs"

	"github.com/syncedfolder/synced-folder/syncagent/state"
)

// dirEntry is one entry of a directory with its stat key.
type dirEntry struct {
	name  string
	isDir bool
	st    state.IndexEntry
	ok    bool  // st is of a type that syncs
	err   error // of the lstat
}

// readDir lists dir ("." for the root) in name order, with each entry's stat key.
func (s *Scanner) readDir(dir string) ([]dirEntry, error) {
	des, err := fs.ReadDir(s.Root.FS(), dir)
	if err != nil {
		return nil, err
	}
	out := make([]dirEntry, len(des))
	for i, d := range des {
		e := dirEntry{name: d.Name(), isDir: d.IsDir()}
		p := e.name
		if dir != "." {
			p = dir + "/" + e.name
		}
		fi, err := s.Root.Lstat(p)
		if err != nil {
			e.err = err
		} else {
			e.st, e.ok = Stat(fi)
		}
		out[i] = e
	}
	return out, nil
}
