package execute

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// renameMinSize is the size from which a file a run deletes is renamed to a path the
// same run downloads its content to, instead of being copied there and removed: a
// rename on another agent reaches this one as a deleted path and a new one. Smaller
// files come in batches from the server, where a copy costs less than the lookup.
const renameMinSize = 1 << 20

// renameSources are the files a run deletes (DeleteLocal of a file of renameMinSize or
// more), by content. A download of that content to another path takes one (take), once.
type renameSources struct {
	mu        sync.Mutex
	byContent map[plan.Hash][]plan.Op
}

// newRenameSources returns the sources among ops, nil when there are none or nothing
// is downloaded.
func newRenameSources(ops []plan.Op) *renameSources {
	var byContent map[plan.Hash][]plan.Op
	downloads := false
	for _, op := range ops {
		switch {
		case op.Kind == plan.Download && op.Remote != nil && op.Remote.Type == proto.TypeFile && op.Remote.Size >= renameMinSize:
			downloads = true
		case op.Kind == plan.DeleteLocal && op.Local != nil && op.Local.Type == proto.TypeFile && op.Local.Size >= renameMinSize:
			if byContent == nil {
				byContent = map[plan.Hash][]plan.Op{}
			}
			byContent[op.Local.SHA256] = append(byContent[op.Local.SHA256], op)
		}
	}
	if !downloads || byContent == nil {
		return nil
	}
	return &renameSources{byContent: byContent}
}

// take removes and returns a source holding content h. r may be nil.
func (r *renameSources) take(h plan.Hash) (plan.Op, bool) {
	if r == nil {
		return plan.Op{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := r.byContent[h]
	if len(ops) == 0 {
		return plan.Op{}, false
	}
	r.byContent[h] = ops[1:]
	return ops[0], true
}

// landRenamed makes op.Remote at op.Path by renaming a file the run deletes that holds
// the same content, and reports whether it did. Only a path planned absent is landed so
// (the rename refuses to replace what appeared there since, renameat2's
// RENAME_NOREPLACE; elsewhere than Linux nothing is renamed), from a file that still
// holds what the plan saw (its stat key and content as indexed). Where a condition
// fails, nothing changed and the caller copies the content as before. The deleted path's
// own op finds it gone and records that.
func (x *Executor) landRenamed(op plan.Op) (landed, bool, error) {
	r := op.Remote
	if op.Local != nil || r.Type != proto.TypeFile || r.Size < renameMinSize {
		return landed{}, false, nil
	}
	src, ok := x.renames.take(r.SHA256)
	if !ok || src.Path == op.Path {
		return landed{}, false, nil
	}
	blocks, sums, err := x.State.LocalBlockSums(src.Path)
	if err != nil || !covers(blocks, r.Size) {
		return landed{}, false, nil
	}
	// A rename keeps the mode and mtime: an entry with others is downloaded (from the
	// same blocks), since setting them after the rename would cover what a program
	// wrote to the file meanwhile.
	if os.FileMode(r.Mode&0o7777) != os.FileMode(src.Local.Mode&0o7777) || r.MTimeNs != src.Local.MTimeNs {
		return landed{}, false, nil
	}
	from, fromName, releaseFrom, err := x.heldDir(src.Path)
	if err != nil {
		return landed{}, false, nil
	}
	defer releaseFrom()
	if err := x.checkDiskAt(from.Root, fromName, src.Path, src.Local); err != nil {
		return landed{}, false, nil
	}
	fi, err := from.Root.Lstat(fromName)
	if err != nil {
		return landed{}, false, nil
	}
	before, _ := scan.Stat(fi)
	if !x.indexedAs(src.Path, before, src.Local) {
		return landed{}, false, nil
	}
	to, toName, releaseTo, err := x.parentDir(op.Path) // which makes the dir when missing
	if err != nil {
		return landed{}, false, nil
	}
	defer releaseTo()
	err = renameAt(from.File, fromName, to.File, toName, true)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return landed{}, false, nil
	case errors.Is(err, fs.ErrExist):
		return landed{}, true, fmt.Errorf("%q: %w (appeared)", op.Path, errChanged)
	case err != nil:
		return landed{}, false, nil
	}
	x.Log.Debug("landed by renaming a deleted file", "path", op.Path, "from", src.Path)
	l, err := x.statAt(to.Root, toName, op, blocks)
	if err == nil && !scan.SameStat(l.idx, before) {
		// Written to between the check and the rename: the next scan finds the file
		// at its new path and sends what it holds.
		return landed{}, true, fmt.Errorf("%q: %w (written to while it was renamed into place)", op.Path, errChanged)
	}
	l.sums = sums
	x.Counters.BytesDone.Add(r.Size)
	return l, true, err
}

// heldDir is parentDir for a path whose dir must exist (it is not made), and whose dir
// comes with a descriptor at the top too.
func (x *Executor) heldDir(p string) (*dircache.Dir, string, func(), error) {
	dir, name := path.Split(p)
	d, release, err := x.dirs.Get(cmp.Or(strings.TrimSuffix(dir, "/"), "."))
	if err != nil {
		return nil, "", nil, err
	}
	return d, name, release, nil
}
