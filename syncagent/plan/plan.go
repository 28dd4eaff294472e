package plan

import (
	"cmp"
	"iter"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Truth table of one path (L local, R remote, S synced; "=" compares with Same, so a
// change is a different Type, content (SHA256 or symlink Target) or permission bits;
// mtime, size and Seq are not compared: equal bytes with another mtime are no change
// worth a transfer, and Seq is bookkeeping):
//
//	L=S  R=S                 nothing (RecordSynced when only R's Seq moved)
//	L≠S  R=S  L absent       DeleteRemote          (receive-only: Download, restores it)
//	L≠S  R=S  L present      Upload                (receive-only: see revert below)
//	L=S  R≠S  R absent       DeleteLocal           (send-only: Report)
//	L=S  R≠S  R present      Download              (send-only: Report)
//	L≠S  R≠S  L=R            RecordSynced, or ForgetSynced when both are absent
//	L≠S  R≠S  L absent       Download: a delete never beats a modification (send-only: Report)
//	L≠S  R≠S  R absent       Upload with BaseSeq 0, re-creating it (receive-only: Report)
//	L≠S  R≠S  both present   conflict, below
//
// Conflict (both present and different), two-way: when L is a dir and R is not, the
// local dir wins (Upload; the server keeps the replaced version in its history), since
// its children are planned at their own paths; when both are files with equal bytes
// (only the mode differs), Download; otherwise MoveToConflict of L, then Download of R.
// Send-only: Upload (local wins, the server keeps history). Receive-only: as two-way,
// except that a local dir facing a remote non-dir is kept and reported.
//
// Receive-only revert: a local edit of a path the server has is reverted by a Download,
// but a local file whose bytes differ is first moved to a conflict copy (which stays
// local and is reported), so reverting never destroys what a user wrote. Local-only
// paths are reported.
//
// Directories: after the per-path decisions, every path that will still have a child
// on a side must be a directory on that side. Where a decision would delete such a dir
// or replace it by a file, it is overridden: the dir is kept and re-created on the
// other side (a local dir removal against a new remote child keeps the child and its
// parent), or, where the mode forbids touching that side, reported.
//
// Entries the server holds under a link or a file (which no disk can hold, and which
// would be created through the link) are reported, whatever the trees say; an agent that
// still has the dir uploads it, and the entries then sync again.
//
// Order: MoveToConflict first; then creations and updates parents first (a dir before
// its content); then removals children first (DeleteLocal, DeleteRemote, and any
// Download or Upload that replaces a dir by a non-dir, which needs the dir emptied).
// Downloads before local deletes let a rename reuse the old file's blocks.

// Plan returns the operations that reconcile local and remote given their merge base
// synced. It is pure and deterministic: the same inputs give the same ops in the same
// order, whatever the maps' iteration order.
func Plan(local, remote, synced View, opts Options) []Op {
	if Quiet(local, remote, synced) {
		return nil
	}
	return planAll(local, remote, synced, opts)
}

// planAll is Plan without the shortcut for quiet trees.
func planAll(local, remote, synced View, opts Options) []Op {
	p := newPlanner(local, remote, synced, opts)
	paths := unionPaths(local, remote, synced)
	// A path where nothing changed (most of a large folder) gets no decision: nil
	// stands for "none", whose final states are the trees' own.
	p.decisions = make([]*decision, len(paths))
	p.unchangedDir = make([]bool, len(paths))
	changed := make([]bool, len(paths))
	n := 0
	for i, q := range paths {
		if same, dir := p.unchanged(q); same {
			p.unchangedDir[i] = dir
		} else {
			changed[i] = true
			n++
		}
	}
	// Most decisions are one op: the slab sized for them grows only for conflicts and
	// kept dirs, not one quarter at a time (five times its size in copies) for a
	// large first sync.
	p.slab = make([]Op, 0, n+n/16)
	for i, q := range paths {
		if changed[i] {
			p.decisions[i] = p.decide(q)
		}
	}
	p.keepNeededDirs(paths)
	return p.ordered()
}

func newPlanner(local, remote, synced View, opts Options) *planner {
	p := &planner{local: local, remote: remote, synced: synced, opts: opts, taken: map[string]bool{},
		ancestors: map[string]string{}}
	if p.opts.Mode == "" {
		p.opts.Mode = TwoWay
	}
	return p
}

// unchanged reports, without allocating, whether decide(q) would be none: both sides
// equal the merge base (Seq included) and the server does not hold q under a non-dir;
// and if so, whether q is a dir (on both sides, as Same compares the types).
func (p *planner) unchanged(q string) (same, dir bool) {
	l, lok := p.local.Get(q)
	r, rok := p.remote.Get(q)
	s, sok := p.synced.Get(q)
	if !lok || !rok || !sok || r.Seq != s.Seq || !Same(&l, &s) || !Same(&r, &s) {
		return false, false
	}
	return p.nonDirAncestor(q) == "", l.Type == proto.TypeDir
}

// Same reports whether a and b hold the same thing for syncing purposes: both absent,
// or the same type with the same content and permission bits.
func Same(a, b *Node) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case proto.TypeFile:
		return a.SHA256 == b.SHA256 && perm(a.Mode) == perm(b.Mode)
	case proto.TypeDir:
		return perm(a.Mode) == perm(b.Mode)
	case proto.TypeSymlink:
		return a.Target == b.Target // Linux ignores a link's own mode bits
	}
	return true
}

// perm keeps the rwx bits: setuid, setgid and sticky may be dropped by an unprivileged
// agent on download, which must not read as a local change.
func perm(m uint32) uint32 { return m & 0o777 }

// decision is what will happen at one path, and the state each side ends with. Its ops
// are n ops of the planner's slab from first on: a large plan's ops are one array, which
// ordered sorts in place, not one small slice per path and a copy of them all.
type decision struct {
	first, n     int32
	finalLocal   *Node
	finalRemote  *Node
	conflictCopy string // local path of a conflict copy made here, if any
}

type planner struct {
	local, remote, synced View
	opts                  Options
	decisions             []*decision     // by index of the sorted paths; nil: none
	unchangedDir          []bool          // by index: a path with no decision is a dir
	taken                 map[string]bool // conflict paths handed out in this plan
	ancestors             map[string]string
	last                  lastNodes
	slab                  []Op // the ops of every decision made, in the order made
}

// emit appends ops to the slab as d's.
func (p *planner) emit(d *decision, ops ...Op) *decision {
	d.first, d.n = int32(len(p.slab)), int32(len(ops))
	p.slab = append(p.slab, ops...)
	return d
}

// nodes returns copies of q's nodes. Deciding a path asks for them several times in a
// row; the copies of the last path are handed out again (no one writes through them).
func (p *planner) nodes(q string) (l, r, s *Node) {
	if m := &p.last; !m.ok || m.q != q {
		*m = lastNodes{ok: true, q: q, l: lookup(p.local, q), r: lookup(p.remote, q), s: lookup(p.synced, q)}
	}
	return p.last.l, p.last.r, p.last.s
}

// lastNodes are the node copies of the path planned last.
type lastNodes struct {
	ok      bool
	q       string
	l, r, s *Node
}

func lookup(t View, q string) *Node {
	if n, ok := t.Get(q); ok {
		c := n // allocated here only: a copy declared with the lookup is allocated for a miss too
		return &c
	}
	return nil
}

func (p *planner) op(kind OpKind, q, reason string) Op {
	l, r, s := p.nodes(q)
	return Op{Kind: kind, Path: q, Local: l, Remote: r, Synced: s, Reason: reason}
}

// Decision builders: each sets the ops and the final state of both sides.

func (p *planner) none(q string) *decision {
	l, r, _ := p.nodes(q)
	return &decision{finalLocal: l, finalRemote: r}
}

func (p *planner) report(q, reason string) *decision {
	return p.emit(p.none(q), p.op(Report, q, reason))
}

func (p *planner) upload(q, reason string) *decision {
	l, _, _ := p.nodes(q)
	return p.emit(&decision{finalLocal: l, finalRemote: l}, p.op(Upload, q, reason))
}

func (p *planner) download(q, reason string) *decision {
	_, r, _ := p.nodes(q)
	return p.emit(&decision{finalLocal: r, finalRemote: r}, p.op(Download, q, reason))
}

func (p *planner) deleteRemote(q string) *decision {
	l, _, _ := p.nodes(q)
	return p.emit(&decision{finalLocal: l}, p.op(DeleteRemote, q, "deleted locally"))
}

func (p *planner) deleteLocal(q string) *decision {
	_, r, _ := p.nodes(q)
	return p.emit(&decision{finalRemote: r}, p.op(DeleteLocal, q, "deleted on the server"))
}

func (p *planner) record(q string) *decision {
	d := p.none(q)
	if d.finalLocal == nil && d.finalRemote == nil {
		return p.emit(d, p.op(ForgetSynced, q, "gone on both sides"))
	}
	return p.emit(d, p.op(RecordSynced, q, "both sides agree"))
}

// conflict moves the local version aside and downloads the remote one in its place.
func (p *planner) conflict(q, reason string) *decision {
	_, r, _ := p.nodes(q)
	copyPath := p.conflictPath(q)
	move := p.op(MoveToConflict, q, reason)
	move.NewPath = copyPath
	dl := p.op(Download, q, reason)
	dl.Local = nil // the move has emptied the path
	return p.emit(&decision{finalLocal: r, finalRemote: r, conflictCopy: copyPath}, move, dl)
}

// conflictPath names a conflict copy of q that no tree and no other op of this plan uses.
func (p *planner) conflictPath(q string) string {
	agent := p.opts.AgentID
	for i := 1; ; i++ {
		if i > 1 {
			agent = p.opts.AgentID + "-" + strconv.Itoa(i)
		}
		c := proto.ConflictPath(q, agent, p.opts.Now)
		_, inL := p.local.Get(c)
		_, inR := p.remote.Get(c)
		_, inS := p.synced.Get(c)
		if !inL && !inR && !inS && !p.taken[c] {
			p.taken[c] = true
			return c
		}
	}
}

// decide applies the truth table to one path, ignoring its neighbours.
func (p *planner) decide(q string) *decision {
	l, r, s := p.nodes(q)
	if anc := p.nonDirAncestor(q); r != nil && anc != "" {
		// The server holds q under a link or file (one took a dir's place while another
		// agent added to the dir). No disk can hold both, and creating q would follow
		// the link, maybe out of the folder: report q instead of retrying it forever. An
		// agent that still has the dir uploads it (keepNeededDirs), which heals the path.
		return p.report(q, "on the server under "+anc+", which is not a dir there")
	}
	localChanged, remoteChanged := !Same(l, s), !Same(r, s)
	mode := p.opts.Mode
	switch {
	case !localChanged && !remoteChanged:
		if r != nil && s != nil && r.Seq != s.Seq {
			return p.record(q)
		}
		return p.none(q)

	case localChanged && !remoteChanged:
		switch {
		case mode == ReceiveOnly:
			return p.revert(q)
		case l == nil:
			return p.deleteRemote(q)
		default:
			return p.upload(q, "changed locally")
		}

	case !localChanged && remoteChanged:
		switch {
		case mode == SendOnly:
			return p.report(q, "changed on the server; send-only leaves the disk alone")
		case r == nil:
			return p.deleteLocal(q)
		default:
			return p.download(q, "changed on the server")
		}
	}

	// Both sides changed.
	switch {
	case Same(l, r):
		return p.record(q)
	case l == nil:
		if mode == SendOnly {
			return p.report(q, "deleted locally but changed on the server; send-only leaves the disk alone")
		}
		return p.download(q, "deleted locally but changed on the server")
	case r == nil:
		if mode == ReceiveOnly {
			return p.report(q, "changed locally but deleted on the server; receive-only keeps the local copy")
		}
		return p.upload(q, "changed locally but deleted on the server")
	case mode == SendOnly:
		return p.upload(q, "changed on both sides; send-only keeps the local version")
	}
	return p.clash(q, "changed on both sides")
}

// clash settles two different present versions in favour of the remote one, without
// destroying the local one.
func (p *planner) clash(q, reason string) *decision {
	l, r, _ := p.nodes(q)
	switch {
	case l.Type == proto.TypeDir && r.Type != proto.TypeDir:
		if p.opts.Mode == ReceiveOnly {
			return p.report(q, reason+"; receive-only keeps the local dir")
		}
		return p.upload(q, reason+"; the local dir keeps the path")
	case l.Type == proto.TypeDir, // both dirs: only the mode differs
		l.Type == proto.TypeFile && r.Type == proto.TypeFile && l.SHA256 == r.SHA256:
		return p.download(q, reason+"; same content")
	}
	return p.conflict(q, reason)
}

// revert is receive-only's answer to a local change of a path: the server's version
// comes back, and the local bytes survive in a conflict copy.
func (p *planner) revert(q string) *decision {
	l, r, _ := p.nodes(q)
	switch {
	case r == nil:
		return p.report(q, "exists only locally; receive-only does not upload")
	case l == nil:
		return p.download(q, "deleted locally; receive-only restores it")
	}
	return p.clash(q, "changed locally; receive-only reverts it")
}

// keepNeededDirs overrides decisions that would leave a path with children on a side
// while not being a dir there. Deepest paths come first, so that a dir kept alive
// keeps its own ancestors alive in turn.
func (p *planner) keepNeededDirs(paths []string) {
	needLocal, needRemote := map[string]bool{}, map[string]bool{}
	// markUp flags q's ancestors; it stops at the first one already flagged, whose own
	// ancestors are flagged too, which keeps the whole pass linear.
	markUp := func(need map[string]bool, q string) {
		for i := strings.LastIndexByte(q, '/'); i >= 0; i = strings.LastIndexByte(q, '/') {
			q = q[:i]
			if need[q] {
				return
			}
			need[q] = true
		}
	}
	mark := func(i int, q string, d *decision) {
		lHas, _, rHas, _ := p.finals(i, d)
		if lHas {
			markUp(needLocal, q)
		}
		if rHas {
			markUp(needRemote, q)
		}
		if d != nil && d.conflictCopy != "" {
			markUp(needLocal, d.conflictCopy)
		}
	}
	for i, q := range paths {
		mark(i, q, p.decisions[i])
	}
	// Deepest first, ties in path order: a counting sort by depth. Every path is in it,
	// since a dir kept below may flag an ancestor that nothing flagged before.
	var byDepth [][]int32
	for i, q := range paths {
		d := strings.Count(q, "/")
		for d >= len(byDepth) {
			byDepth = append(byDepth, nil)
		}
		byDepth[d] = append(byDepth[d], int32(i))
	}
	for d := len(byDepth) - 1; d >= 0; d-- {
		for _, i := range byDepth[d] {
			q := paths[i]
			_, lDir, _, rDir := p.finals(int(i), p.decisions[i])
			brokenLocal := needLocal[q] && !lDir
			brokenRemote := needRemote[q] && !rDir
			if !brokenLocal && !brokenRemote {
				continue
			}
			if fixed := p.keepDir(q); fixed != nil {
				p.decisions[i] = fixed
				mark(int(i), q, fixed)
			}
		}
	}
}

// finals returns whether path i ends present, and a dir, on each side under decision d
// (nil: none, for an unchanged path, which both sides hold as the merge base's type).
func (p *planner) finals(i int, d *decision) (lHas, lDir, rHas, rDir bool) {
	if d == nil {
		dir := p.unchangedDir[i]
		return true, dir, true, dir
	}
	return d.finalLocal != nil, isDir(d.finalLocal), d.finalRemote != nil, isDir(d.finalRemote)
}

// keepDir decides q again knowing that it must stay a dir because content below it
// survives; nil when neither side has a dir there (the executor then creates the
// parents it needs).
func (p *planner) keepDir(q string) *decision {
	l, r, _ := p.nodes(q)
	const why = "a dir that still has content is kept"
	switch {
	case isDir(l) && isDir(r):
		return p.download(q, why) // only modes can differ: take the server's
	case isDir(l):
		if p.opts.Mode == ReceiveOnly {
			return p.report(q, why+"; receive-only does not upload it")
		}
		return p.upload(q, why)
	case isDir(r):
		switch {
		case p.opts.Mode == SendOnly:
			return p.report(q, why+"; send-only leaves the disk alone")
		case l == nil:
			return p.download(q, why)
		default:
			return p.conflict(q, why)
		}
	}
	return nil
}

func isDir(n *Node) bool { return n != nil && n.Type == proto.TypeDir }

// nonDirAncestor returns the nearest ancestor of q that the remote tree holds as
// something other than a dir, or "". Answers are kept per parent dir, so a folder of
// many files costs one lookup per file.
func (p *planner) nonDirAncestor(q string) string {
	i := strings.LastIndexByte(q, '/')
	if i < 0 {
		return ""
	}
	dir := q[:i]
	if anc, ok := p.ancestors[dir]; ok {
		return anc
	}
	anc := ""
	if n, ok := p.remote.Get(dir); ok && n.Type != proto.TypeDir {
		anc = dir
	} else {
		anc = p.nonDirAncestor(dir)
	}
	p.ancestors[dir] = anc
	return anc
}

// Phases of a plan, in execution order.
const (
	phaseMove   = iota // MoveToConflict: clears a path before its Download
	phaseCreate        // creations and updates, parents first; bookkeeping
	phaseRemove        // removals and dir→non-dir replacements, children first
)

func phaseOf(op Op) int {
	switch op.Kind {
	case MoveToConflict:
		return phaseMove
	case DeleteLocal, DeleteRemote:
		return phaseRemove
	case Download:
		if isDir(op.Local) && !isDir(op.Remote) {
			return phaseRemove
		}
	case Upload:
		if isDir(op.Remote) && !isDir(op.Local) {
			return phaseRemove
		}
	}
	return phaseCreate
}

// ordered flattens the decisions into the execution order.
func (p *planner) ordered() []Op {
	// The ops of the decisions in force, gathered to the slab's front: a decision that
	// keepNeededDirs replaced left its ops behind. Ranges move in slab order, which can
	// differ from path order (a replacement is made after its neighbours); the stable
	// sort below does not mind, since it orders by phase and path, and each path's ops
	// are one range kept in their own order.
	k := 0
	for _, d := range p.decisions {
		if d != nil {
			k++
		}
	}
	ranges := make([][2]int32, 0, k)
	for _, d := range p.decisions {
		if d != nil && d.n > 0 {
			ranges = append(ranges, [2]int32{d.first, d.n})
		}
	}
	if len(ranges) == 0 {
		return nil
	}
	slices.SortFunc(ranges, func(a, b [2]int32) int { return cmp.Compare(a[0], b[0]) })
	n := 0
	for _, r := range ranges {
		n += copy(p.slab[n:], p.slab[r[0]:r[0]+r[1]])
	}
	clear(p.slab[n:]) // the dropped ops' nodes are garbage now
	ops := p.slab[:n:n]
	p.slab = nil
	sort.SliceStable(ops, func(i, j int) bool {
		a, b := ops[i], ops[j]
		pa, pb := phaseOf(a), phaseOf(b)
		if pa != pb {
			return pa < pb
		}
		if a.Path != b.Path {
			if pa == phaseRemove {
				return a.Path > b.Path // a child sorts after its parent: reverse it
			}
			return a.Path < b.Path
		}
		return false // same path: keep the decision's own order
	})
	return ops
}

// unionPaths returns the paths of all trees, sorted.
func unionPaths(trees ...View) []string {
	n := 0
	for _, t := range trees {
		n = max(n, t.Len())
	}
	out := make([]string, 0, n)
	for q := range union(trees...) {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}

// union yields every path of the trees once, in no particular order, without building
// a set: each tree adds the paths that none of the trees before it holds.
func union(trees ...View) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i, t := range trees {
		next:
			for q := range t.All() {
				for _, before := range trees[:i] {
					if _, ok := before.Get(q); ok {
						continue next
					}
				}
				if !yield(q) {
					return
				}
			}
		}
	}
}

// DeleteCounts counts the files and symlinks a plan deletes on disk (local) and on the
// server (remote), for the mass-delete breaker. Dirs are not counted: the breaker's
// share is of tracked files, and removing a dir follows from removing its content.
func DeleteCounts(ops []Op) (local, remote int) {
	for _, op := range ops {
		switch {
		case op.Kind == DeleteLocal && !isDir(op.Local):
			local++
		case op.Kind == DeleteRemote && !isDir(op.Remote):
			remote++
		}
	}
	return local, remote
}

// TrackedFiles counts the files and symlinks of t (use the Synced tree): the base of
// the mass-delete breaker's share.
func TrackedFiles(t View) int {
	n := 0
	for _, node := range t.All() {
		if node.Type != proto.TypeDir {
			n++
		}
	}
	return n
}

// MassDeleteMinFiles is the number of deletions on one side at or below which the
// mass-delete breaker never trips, whatever the share.
const MassDeleteMinFiles = 10

// ExceedsDeleteLimit reports whether ops would delete, on either side, more than
// maxPercent of tracked files and more than MassDeleteMinFiles files: the agent then
// holds those deletes back until the user confirms.
func ExceedsDeleteLimit(ops []Op, tracked int, maxPercent float64) bool {
	local, remote := DeleteCounts(ops)
	over := func(n int) bool {
		return n > MassDeleteMinFiles && float64(n) > float64(tracked)*maxPercent/100
	}
	return over(local) || over(remote)
}

// WithoutDeletes returns ops minus its DeleteLocal and DeleteRemote ops: what the agent
// may still run while the mass-delete breaker holds the deletions back.
func WithoutDeletes(ops []Op) []Op {
	out := make([]Op, 0, len(ops))
	for _, op := range ops {
		if op.Kind != DeleteLocal && op.Kind != DeleteRemote {
			out = append(out, op)
		}
	}
	return out
}
