package plan

import (
	"strings"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Quiet reports whether the three trees agree everywhere: the same paths, each path the
// same (Same) on all three with equal remote and synced Seq, and no path under something
// the remote tree holds as a non-dir. Plan then returns no op, in every mode; and so it
// does for the three trees with any set of paths removed from all three alike (the
// agent's ignore filter, which removes a path by its name and type, and the types are
// equal): removing paths keeps them equal and cannot put a path under a non-dir.
//
// It is the plan of an unchanged folder without the plan's sorted union of the paths:
// one pass over the synced tree with two lookups per path.
func Quiet(local, remote, synced View) bool {
	if local.Len() != synced.Len() || remote.Len() != synced.Len() {
		return false
	}
	for q, s := range synced.All() {
		l, ok := local.Get(q)
		if !ok {
			return false
		}
		r, ok := remote.Get(q)
		if !ok || r.Seq != s.Seq || !Same(&l, &s) || !Same(&r, &s) {
			return false
		}
		// The nearest ancestor the remote tree holds must be a dir; the ones above it
		// are checked when that dir's own path comes up.
		for dir := q; ; {
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				break
			}
			dir = dir[:i]
			if n, ok := remote.Get(dir); ok {
				if n.Type != proto.TypeDir {
					return false
				}
				break
			}
		}
	}
	return true
}
