package scan

import (
	"context"
	"path"
	"sort"
	"strings"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Paths rescans the given paths (each with its subtree, and with its parent dirs) and
// returns the index updates to persist (without those handed to Record).
func (s *Scanner) Paths(ctx context.Context, paths []string, l *trees.Trees) ([]Update, error) {
	paths = outermost(paths)
	var jobs jobList
	var ups []Update
	// The paths are disjoint subtrees, so a path is visited once without a set of the
	// visited ones (100,000 entries when a whole tree is rescanned); only the parent
	// dirs visited on the way are kept.
	parentsDone := map[string]bool{}
	removed := map[string]trees.IndexEntry{}
	var children map[string][]string // dir → its children in the tree; built on first use
	var visitTree func(p string) error
	// drop removes p (when self) and everything the trees hold below it.
	drop := func(p string, self bool) {
		for q := range l.Local.All() {
			if self && q == p || strings.HasPrefix(q, p+"/") {
				l.Local.Delete(q)
			}
		}
		for q, e := range l.Index.All() {
			if self && q == p || strings.HasPrefix(q, p+"/") {
				removed[q] = e
				l.Index.Delete(q)
				s.forgetRacy(q)
				ups = append(ups, Update{Path: q, Deleted: true})
			}
		}
	}
	var visitEntry func(p string, e dirEntry) error
	visitTree = func(p string) error {
		fi, err := s.Root.Lstat(p)
		e := dirEntry{err: err}
		if err == nil {
			e.isDir = fi.IsDir()
			e.st, e.ok = Stat(fi)
		}
		return visitEntry(p, e)
	}
	// visitEntry is visitTree of p, whose lstat gave e (the dir's listing does, for
	// children: one fstatat beside the open dir instead of a walk from the root).
	visitEntry = func(p string, e dirEntry) error {
		err, isDir := e.err, e.err == nil && e.isDir
		if readFailed(err) {
			// Unreadable: its last state stands, and everything under it.
			s.unreadable(p, err)
			return nil
		}
		if err != nil || s.ignored(p, isDir) {
			// Gone (or now ignored): drop it and everything under it.
			drop(p, true)
			return nil //nolint:nilerr // gone is not a failure of the scan
		}
		if was, ok := l.Local.Get(p); ok && was.Type == proto.TypeDir && !isDir {
			// A dir replaced by a file or link: what was below it is gone (the paths
			// below it, given too, are covered by p).
			drop(p, false)
		}
		// The lstat that gave e is the one the index cache is checked against: a second
		// one per path cost as much as the rest of a rescan of the agent's own landed
		// files.
		_, wasIndex := l.Index.Get(p)
		j, up, ok, err := s.settleEntry(p, e, l)
		if err != nil {
			return err
		}
		if !ok {
			l.Local.Delete(p)
		}
		if up != nil {
			ups = append(ups, *up)
		}
		jobs.add(j)
		if !isDir {
			return nil
		}
		// Children that vanished, then children that exist now. The known children come
		// from one pass over the tree per call (not one per dir); a child that appears in
		// the tree during this call was just visited, and its removal later is an event
		// of its own.
		if children == nil {
			children = childrenOf(l.Local)
		}
		entries, err := s.readDir(p, !wasIndex)
		if err != nil {
			for _, q := range children[p] {
				if _, err := s.Root.Lstat(q); err != nil {
					if err := visitTree(q); err != nil {
						return err
					}
				}
			}
			// Replaced or unreadable while scanning: its known children keep their last
			// state (nothing is deleted on a read error) and the next scan looks again.
			return nil //nolint:nilerr // see above
		}
		if known := children[p]; len(known) > 0 {
			listed := make(map[string]bool, len(entries))
			for _, e := range entries {
				listed[e.name] = true
			}
			for _, q := range known {
				if !listed[path.Base(q)] {
					if err := visitTree(q); err != nil {
						return err
					}
				}
			}
		}
		for _, e := range entries {
			if err := visitEntry(p+"/"+e.name, e); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range paths {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, err := proto.CleanPath(p); err != nil {
			continue
		}
		// Parents first, so a file in a new dir brings the dir along.
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := l.Local.Get(dir); !ok && !parentsDone[dir] {
				parentsDone[dir] = true
				if fi, err := s.Root.Lstat(dir); err == nil && fi.IsDir() && !s.ignored(dir, true) {
					if _, up, ok, err := s.visit(dir, l); err == nil && ok && up != nil {
						ups = append(ups, *up)
					}
				}
			}
		}
		if err := visitTree(p); err != nil {
			return nil, err
		}
	}
	hashed, err := s.hash(ctx, &jobs, l, &renames{removed: removed})
	return append(ups, hashed...), err
}

// outermost returns the paths, sorted, without duplicates and without the paths under
// another one (whose rescan covers them).
func outermost(paths []string) []string {
	sort.Strings(paths)
	kept := make(map[string]bool, len(paths))
	out := paths[:0]
	for _, p := range paths {
		under := kept[p]
		for q := p; !under; {
			i := strings.LastIndexByte(q, '/')
			if i < 0 {
				break
			}
			q = q[:i]
			under = kept[q]
		}
		if !under {
			kept[p] = true
			out = append(out, p)
		}
	}
	return out
}

// childrenOf indexes the tree's paths by their parent dir ("." for the top level is not
// needed: Paths only asks for the children of dirs it visits).
func childrenOf(t plan.View) map[string][]string {
	m := map[string][]string{}
	for q := range t.All() {
		if i := strings.LastIndexByte(q, '/'); i > 0 {
			m[q[:i]] = append(m[q[:i]], q)
		}
	}
	return m
}
