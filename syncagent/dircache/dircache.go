// Package dircache holds a folder's dirs open for a batch of file operations, so that
// the operations on the files of one dir resolve that dir once. Through an os.Root,
// every call on a path opens and closes each dir on the way to it: landing or reading
// a small file two dirs deep cost about twice the system calls of the work itself.
//
// A dir moved or removed while the batch holds it is still the one used: a file then
// lands in, or is read from, the dir where it now is, which the next scan sees as the
// file's absence at its old path, as for the dir's other files.
package dircache

import (
	"errors"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// maxOpen bounds the dirs a cache holds open when nobody uses them: the files of one
// dir come one after the other in a scan or a plan, so a few dozen cover the dirs in
// use at once.
const maxOpen = 64

// Dir is one open dir of the folder.
type Dir struct {
	// Root is the dir, for calls by name inside it.
	Root *os.Root
	// File is the same dir, for calls by descriptor (renameat(2) between two dirs).
	File *os.File
}

// Open opens the dir name below root (slash-separated) as a Dir.
func Open(root *os.Root, name string) (*Dir, error) {
	r, err := root.OpenRoot(name)
	if err != nil {
		return nil, err
	}
	f, err := r.Open(".")
	if err != nil {
		r.Close()
		return nil, err
	}
	return &Dir{Root: r, File: f}, nil
}

// Close closes both handles of d.
func (d *Dir) Close() {
	d.File.Close()
	d.Root.Close()
}

// Cache holds dirs of the folder at root open. Its methods are safe for concurrent use;
// Close ends it.
type Cache struct {
	root *os.Root
	mu   sync.Mutex
	dirs map[string]*held
}

type held struct {
	Dir
	refs      int
	forgotten bool // out of the map: closed by its last release
}

// New returns an empty cache of the dirs under root.
func New(root *os.Root) *Cache {
	return &Cache{root: root, dirs: map[string]*held{}}
}

// Get returns the dir dir (slash-separated, relative to the folder, not ".") open, and
// the function that releases it; the Dir must not be used after its release.
func (c *Cache) Get(dir string) (*Dir, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.dirs[dir]
	if h == nil {
		d, err := Open(c.root, dir)
		if err != nil {
			return nil, nil, err
		}
		if len(c.dirs) >= maxOpen {
			c.closeIdle()
		}
		h = &held{Dir: *d}
		c.dirs[dir] = h
	}
	h.refs++
	return &h.Dir, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		h.refs--
		if h.forgotten && h.refs == 0 {
			h.Close()
		}
	}, nil
}

// OpenFile opens the file p (slash-separated, relative to the folder) as
// os.Root.OpenFile does, resolving its dir through the cache. A file opened only to be
// read keeps its access time (openFile).
func (c *Cache) OpenFile(p string, flag int, perm os.FileMode) (*os.File, error) {
	dir, name := path.Split(p)
	if dir == "" {
		return openFile(c.root, name, flag, perm)
	}
	d, release, err := c.Get(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, err
	}
	defer release()
	return openFile(d.Root, name, flag, perm)
}

// noAtimeRefused is set once an open with O_NOATIME was refused.
var noAtimeRefused atomic.Bool

// openFile is root.OpenFile, with O_NOATIME (where the system has it) when the file is
// only read: the agent's reads then leave the access time alone, as backup tools' do.
// That is also one inode write less per file: on a file system mounted relatime, the
// first read of a file after a write updates its access time, so the first scan of new
// files, and the reads that upload them, dirtied every inode read. The kernel allows
// the flag to the file's owner (or a process with CAP_FOWNER) only; a refusal (EPERM)
// opens the file again without it, and later opens no longer ask.
func openFile(root *os.Root, name string, flag int, perm os.FileMode) (*os.File, error) {
	if noAtime != 0 && flag&(os.O_WRONLY|os.O_RDWR) == 0 && !noAtimeRefused.Load() {
		f, err := root.OpenFile(name, flag|noAtime, perm)
		if !errors.Is(err, syscall.EPERM) {
			return f, err
		}
		noAtimeRefused.Store(true)
	}
	return root.OpenFile(name, flag, perm)
}

// Forget drops dir from the cache (closing it once released), so that the next Get
// opens it afresh: a failure there may be a dir that went away or was replaced.
func (c *Cache) Forget(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.dirs[dir]; h != nil {
		delete(c.dirs, dir)
		h.forgotten = true
		if h.refs == 0 {
			h.Close()
		}
	}
}

// Close closes every dir; none may be in use.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, h := range c.dirs {
		h.Close()
		delete(c.dirs, d)
	}
}

// closeIdle closes the dirs nobody holds.
func (c *Cache) closeIdle() {
	for d, h := range c.dirs {
		if h.refs == 0 {
			h.Close()
			delete(c.dirs, d)
		}
	}
}
