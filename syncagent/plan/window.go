package plan

import (
	"container/heap"
	"slices"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Window is the first part of a plan (PlanWindow).
type Window struct {
	// Ops are the plan's first ops, in its order.
	Ops []Op
	// RestFiles counts the uploads and downloads the plan holds beyond Ops, and
	// RestBytes the bytes of their files: both 0 when Ops is the whole plan.
	RestFiles, RestBytes int64
}

// PlanWindow is Plan for a caller that runs a large plan a part at a time. When every
// change in the trees is a creation (a path new on one side only, absent from the merge
// base, which the plan uploads or downloads: the first sync of a folder, a large tree
// added on one side) and there are more than max of them, it returns only the first
// max ops of Plan's result, without building the others; running them and planning
// again gives the next ones, so that the ops of the successive windows are Plan's own,
// in its order. Otherwise it returns all of Plan's ops.
//
// Why the first ops do not depend on the rest: creations are never overridden (a dir
// that must stay is already one on both sides, and no other type can be kept as a
// dir), and a plan of creations only is ordered by path alone, parents first. A plan
// with anything else in it (a delete, a conflict, a report) is never cut: the
// mass-delete breaker and the reuse of a renamed file's blocks need all of it at once.
// A window of a 100,000-file first sync holds max ops and their nodes, not 100,000
// (≈ 220 bytes a path).
func PlanWindow(local, remote, synced View, opts Options, max int) Window {
	if Quiet(local, remote, synced) {
		return Window{}
	}
	// With creations only, the merge base's paths are on both sides and each creation
	// adds one path to one side: fewer new paths than that cannot make a window.
	if max > 0 && local.Len()+remote.Len()-2*synced.Len() > max {
		if w, ok := planWindow(local, remote, synced, opts, max); ok {
			return w
		}
	}
	return Window{Ops: planAll(local, remote, synced, opts)}
}

// planWindow returns the first max ops of a plan of more than max creations, or false
// when the plan is not one.
func planWindow(local, remote, synced View, opts Options, max int) (Window, bool) {
	p := newPlanner(local, remote, synced, opts)
	// The max first changed paths in path order, from a bounded max-heap: the union of
	// the paths is neither collected nor sorted.
	first := &maxPaths{}
	var count, bytes int64
	for q := range union(local, remote, synced) {
		if same, _ := p.unchanged(q); same {
			continue
		}
		n, ok := p.creation(q)
		if !ok {
			return Window{}, false
		}
		count++
		if n.Type == proto.TypeFile {
			bytes += n.Size
		}
		switch {
		case first.Len() < max:
			heap.Push(first, q)
		case q < (*first)[0]:
			(*first)[0] = q
			heap.Fix(first, 0)
		}
	}
	if count <= int64(max) {
		return Window{}, false // the whole plan is as small: Plan builds it
	}
	paths := []string(*first)
	slices.Sort(paths)
	p.slab = make([]Op, 0, len(paths))
	for _, q := range paths {
		if d := p.decide(q); d.n != 1 {
			return Window{}, false
		}
		op := p.slab[len(p.slab)-1]
		n := createdNode(op)
		if n == nil || phaseOf(op) != phaseCreate {
			return Window{}, false
		}
		if n.Type == proto.TypeFile {
			bytes -= n.Size
		}
	}
	return Window{Ops: p.slab, RestFiles: count - int64(len(paths)), RestBytes: bytes}, true
}

// creation returns the node a plan uploads or downloads at changed path q, and whether q
// is such a creation: new on one side only, absent from the other and from the merge
// base, in a mode that syncs it (decide's truth table for those cases).
func (p *planner) creation(q string) (Node, bool) {
	if _, ok := p.synced.Get(q); ok {
		return Node{}, false
	}
	l, lok := p.local.Get(q)
	r, rok := p.remote.Get(q)
	switch {
	case lok && !rok:
		return l, p.opts.Mode != ReceiveOnly
	case rok && !lok:
		return r, p.opts.Mode != SendOnly && p.nonDirAncestor(q) == ""
	}
	return Node{}, false
}

// createdNode is the node an upload or download op creates; nil for any other op.
func createdNode(op Op) *Node {
	switch op.Kind {
	case Download:
		return op.Remote
	case Upload:
		return op.Local
	}
	return nil
}

// maxPaths is a max-heap of paths (container/heap).
type maxPaths []string

func (h maxPaths) Len() int           { return len(h) }
func (h maxPaths) Less(i, j int) bool { return h[i] > h[j] }
func (h maxPaths) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxPaths) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxPaths) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
