//go:build unix

package scan

import (
	"errors"
	"io/fs"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// readDir lists dir ("." for the root) in name order, with each entry's stat key taken
// by fstatat relative to the open dir without following a link: the dir is opened
// through the Root (it cannot lead outside) and each name is one component. The names
// are read without a stat each (Readdirnames, not ReadDir, which stats every entry on a
// file system whose listing carries no type, such as ext2/3): fstatat is the one stat.
func (s *Scanner) readDir(dir string) ([]dirEntry, error) {
	f, err := s.Root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	fd := int(f.Fd())
	out := make([]dirEntry, len(names))
	for i, name := range names {
		e := dirEntry{name: name}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				err = fs.ErrNotExist
			}
			e.err = &fs.PathError{Op: "fstatat", Path: name, Err: err}
		} else {
			e.isDir = uint32(st.Mode)&unix.S_IFMT == unix.S_IFDIR //nolint:unconvert // the field types differ between platforms
			e.st, e.ok = statKey(&st)
		}
		out[i] = e
	}
	return out, nil
}

// statKey is Stat for a raw stat result.
func statKey(st *unix.Stat_t) (trees.IndexEntry, bool) {
	e := trees.IndexEntry{Mode: uint32(st.Mode) & 0o777, Ino: uint64(st.Ino)} //nolint:unconvert // the field types differ between platforms
	mtime := time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)).UnixNano()    //nolint:unconvert // as above
	switch uint32(st.Mode) & unix.S_IFMT {                                    //nolint:unconvert // as above
	case unix.S_IFREG:
		e.Type, e.Size, e.MTimeNs = proto.TypeFile, st.Size, mtime
	case unix.S_IFDIR:
		e.Type = proto.TypeDir
	case unix.S_IFLNK:
		e.Type, e.MTimeNs = proto.TypeSymlink, mtime
		e.Mode = 0o777
	default:
		return e, false
	}
	return e, true
}

// inode is fi's inode number, part of the stat key: a file replaced by another of the
// same size and mtime (an atomic save) still counts as changed.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino) //nolint:unconvert // the field types differ between platforms
	}
	return 0
}
