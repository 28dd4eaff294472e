package execute

import (
	"fmt"
	"path"
	"strings"

	"github.com/syncedfolder/synced-folder/syncagent/dircache"
)

// parentDir opens the dir of p (creating it when missing) for landing p, and returns
// it, p's name in it, and the function that releases it. A file at the top comes with
// x.Root (and no File: its rename goes through x.Root). During a download batch the dir
// comes from the batch's cache (x.dirs).
func (x *Executor) parentDir(p string) (*dircache.Dir, string, func(), error) {
	dir, name := path.Split(p)
	if dir == "" {
		return &dircache.Dir{Root: x.Root}, name, func() {}, nil
	}
	dir = strings.TrimSuffix(dir, "/")
	get := x.openDir
	if x.dirs != nil {
		get = x.dirs.Get
	}
	d, release, err := get(dir)
	if absent(err) {
		if err := x.ensureParent(p); err != nil {
			return nil, "", nil, err
		}
		d, release, err = get(dir)
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("%q: %w (parent dir: %w)", p, errChanged, err)
	}
	return d, name, release, nil
}

// openDir opens dir for one landing, outside a download batch.
func (x *Executor) openDir(dir string) (*dircache.Dir, func(), error) {
	r, err := x.Root.OpenRoot(dir)
	if err != nil {
		return nil, nil, err
	}
	return &dircache.Dir{Root: r}, func() { r.Close() }, nil
}

// forgetDir drops p's dir from the batch's cache after a landing there failed.
func (x *Executor) forgetDir(p string) {
	if x.dirs != nil {
		x.dirs.Forget(path.Dir(p))
	}
}
