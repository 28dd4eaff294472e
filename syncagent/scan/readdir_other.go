//go:build !unix

package scan

import (
	"io/fs"
)

// readDir lists dir ("." for the root) in name order, with each entry's stat key (every
// entry is stat'ed here, in a new dir too).
func (s *Scanner) readDir(dir string, _ bool) ([]dirEntry, error) {
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

// inode is 0 where the file system's stat has no inode number the Go runtime exposes:
// the stat key is then type, size, mtime and mode.
func inode(fs.FileInfo) uint64 { return 0 }
