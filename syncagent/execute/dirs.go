package execute

import (
	"fmt"
	"path"
	"strings"

	"github.com/syncedfolder/synced-folder/syncagent/dircache"
)

// parentDir opens the dir of p (creating it when missing) for landing p, and returns
// it, p's name in it, and the function that releases it. A file at the top comes with
// x.Root (and no File: its rename goes through x.Root). The dir comes from the cache of
// the download batch under way (x.dirs, see openStage), the only caller.
func (x *Executor) parentDir(p string) (*dircache.Dir, string, func(), error) {
	dir, name := path.Split(p)
	if dir == "" {
		return &dircache.Dir{Root: x.Root}, name, func() {}, nil
	}
	dir = strings.TrimSuffix(dir, "/")
	d, release, err := x.dirs.Get(dir)
	if absent(err) {
		if err := x.ensureParent(p); err != nil {
			return nil, "", nil, err
		}
		d, release, err = x.dirs.Get(dir)
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("%q: %w (parent dir: %w)", p, errChanged, err)
	}
	return d, name, release, nil
}
