package execute

import (
	"cmp"
	"fmt"
	"path"
	"strings"

	"github.com/syncedfolder/synced-folder/syncagent/dircache"
)

// parentDir opens the dir of p (creating it when missing) for landing p, and returns
// it, p's name in it, and the function that releases it. A file at the top comes with
// the folder's own dir, opened as any other: a rename that must not replace what
// appeared at p (renameat2's RENAME_NOREPLACE) needs a descriptor of the dir. The dir
// comes from the cache of the download batch under way (x.dirs, see openStage), the
// only caller.
func (x *Executor) parentDir(p string) (*dircache.Dir, string, func(), error) {
	dir, name := path.Split(p)
	dir = cmp.Or(strings.TrimSuffix(dir, "/"), ".")
	d, release, err := x.dirs.Get(dir)
	if absent(err) && dir != "." {
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
