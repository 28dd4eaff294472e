package plan

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// world is an in-memory model of a disk, a server and the agent's synced tree, on
// which a plan is executed with the same preconditions the real executor and server
// enforce (the disk still equals the planned Local, a commit's base is the planned
// Remote's Seq, a dir is emptied before it goes, a parent exists before its child).
type world struct {
	local, remote, synced Tree
	// history is every content the server has ever held: the synced versions and
	// every remote version overwritten or deleted since.
	history map[string]bool
	nextSeq int64
}

func newWorld(local, remote, synced Tree) *world {
	w := &world{local: clone(local), remote: clone(remote), synced: clone(synced), history: map[string]bool{}, nextSeq: 1 << 20}
	for _, n := range synced {
		if c := content(n); c != "" {
			w.history[c] = true
		}
	}
	return w
}

func clone(t Tree) Tree {
	out := make(Tree, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// content names the user-written bytes of a node ("" for a dir).
func content(n Node) string {
	switch n.Type {
	case proto.TypeFile:
		return "file:" + n.SHA256.String()
	case proto.TypeSymlink:
		return "link:" + n.Target
	}
	return ""
}

func contents(t Tree) map[string]bool {
	out := map[string]bool{}
	for _, n := range t {
		if c := content(n); c != "" {
			out[c] = true
		}
	}
	return out
}

func exact(a, b *Node) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return Same(a, b) && a.Seq == b.Seq
}

func hasChildren(t Tree, q string) bool {
	for k := range t {
		if strings.HasPrefix(k, q+"/") {
			return true
		}
	}
	return false
}

func parentIsDir(t Tree, q string) bool {
	i := strings.LastIndexByte(q, '/')
	if i < 0 {
		return true
	}
	n, ok := t[q[:i]]
	return ok && n.Type == proto.TypeDir
}

// put replaces t[q] by n, checking that the tree stays well formed.
func put(t Tree, q string, n Node) error {
	if !parentIsDir(t, q) {
		return fmt.Errorf("create %q: parent is not a dir", q)
	}
	if old, ok := t[q]; ok && old.Type == proto.TypeDir && n.Type != proto.TypeDir && hasChildren(t, q) {
		return fmt.Errorf("replace dir %q: it still has children", q)
	}
	t[q] = n
	return nil
}

func remove(t Tree, q string) error {
	if hasChildren(t, q) {
		return fmt.Errorf("remove %q: it still has children", q)
	}
	delete(t, q)
	return nil
}

func (w *world) keepHistory(q string) {
	if n, ok := w.remote[q]; ok {
		if c := content(n); c != "" {
			w.history[c] = true
		}
	}
}

func (w *world) apply(op Op) error {
	l, r := lookup(w.local, op.Path), lookup(w.remote, op.Path)
	localOK := Same(l, op.Local) && (l == nil) == (op.Local == nil)
	remoteOK := exact(r, op.Remote)
	switch op.Kind {
	case MoveToConflict:
		if !localOK || l == nil || l.Type == proto.TypeDir {
			return fmt.Errorf("move %q: disk is %+v, planned %+v", op.Path, l, op.Local)
		}
		if _, ok := w.local[op.NewPath]; ok {
			return fmt.Errorf("move %q: %q exists", op.Path, op.NewPath)
		}
		if err := put(w.local, op.NewPath, *l); err != nil {
			return err
		}
		delete(w.local, op.Path)
	case Download:
		if !localOK || !remoteOK || r == nil {
			return fmt.Errorf("download %q: disk %+v server %+v, planned %+v %+v", op.Path, l, r, op.Local, op.Remote)
		}
		n := *r
		n.Seq = 0
		if err := put(w.local, op.Path, n); err != nil {
			return err
		}
		w.synced[op.Path] = *r
	case Upload:
		if !localOK || !remoteOK || l == nil {
			return fmt.Errorf("upload %q: disk %+v server %+v, planned %+v %+v", op.Path, l, r, op.Local, op.Remote)
		}
		w.keepHistory(op.Path)
		n := *l
		w.nextSeq++
		n.Seq = w.nextSeq
		if err := put(w.remote, op.Path, n); err != nil {
			return err
		}
		w.synced[op.Path] = n
	case DeleteLocal:
		if !localOK || l == nil {
			return fmt.Errorf("delete local %q: disk %+v, planned %+v", op.Path, l, op.Local)
		}
		if err := remove(w.local, op.Path); err != nil {
			return err
		}
		delete(w.synced, op.Path)
	case DeleteRemote:
		if !remoteOK || r == nil {
			return fmt.Errorf("delete remote %q: server %+v, planned %+v", op.Path, r, op.Remote)
		}
		w.keepHistory(op.Path)
		if err := remove(w.remote, op.Path); err != nil {
			return err
		}
		delete(w.synced, op.Path)
	case RecordSynced:
		if r == nil || !remoteOK || !Same(l, r) {
			return fmt.Errorf("record %q: disk %+v server %+v", op.Path, l, r)
		}
		w.synced[op.Path] = *r
	case ForgetSynced:
		if l != nil || r != nil {
			return fmt.Errorf("forget %q: disk %+v server %+v", op.Path, l, r)
		}
		delete(w.synced, op.Path)
	case Report:
	default:
		return fmt.Errorf("unknown op kind %q", op.Kind)
	}
	return nil
}

func (w *world) run(ops []Op) error {
	for _, op := range ops {
		if err := w.apply(op); err != nil {
			return err
		}
	}
	return nil
}

// Generators of random, related trees over a small universe of paths, so that
// collisions, type changes and nested dirs are frequent.

var universe = func() []string {
	names := []string{"a", "b", "c"}
	var out []string
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		for _, n := range names {
			q := prefix + n
			out = append(out, q)
			if depth < 3 {
				walk(q+"/", depth+1)
			}
		}
	}
	walk("", 1)
	sort.Strings(out)
	return out
}()

// drawNode draws the node of one path; fresh is the content a side may write there
// that no synced version ever had ("" for the synced tree).
func drawNode(t *rapid.T, label, fresh string) (Node, bool) {
	shas, targets := []string{"x", "y", "z"}, []string{"t1", "t2"}
	if fresh != "" {
		shas, targets = append(shas, fresh), append(targets, fresh)
	}
	switch rapid.IntRange(0, 5).Draw(t, label+"/kind") {
	case 0, 1:
		return Node{}, false
	case 2, 3:
		return Node{Type: proto.TypeDir, Mode: rapid.SampledFrom([]uint32{0o755, 0o700}).Draw(t, label+"/mode")}, true
	case 4:
		sha := rapid.SampledFrom(shas).Draw(t, label+"/sha")
		return Node{Type: proto.TypeFile, SHA256: h(sha), Size: 1, Mode: rapid.SampledFrom([]uint32{0o644, 0o755}).Draw(t, label+"/mode")}, true
	default:
		return Node{Type: proto.TypeSymlink, Target: rapid.SampledFrom(targets).Draw(t, label+"/target"), Mode: 0o777}, true
	}
}

// wellFormed keeps only the nodes whose parent is a dir of the same tree.
func wellFormed(t Tree) Tree {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := Tree{}
	for _, k := range keys {
		if parentIsDir(out, k) {
			out[k] = t[k]
		}
	}
	return out
}

func drawTrees(t *rapid.T) (local, remote, synced Tree) {
	synced, local, remote = Tree{}, Tree{}, Tree{}
	for i, q := range universe {
		if n, ok := drawNode(t, "synced/"+q, ""); ok {
			n.Seq = int64(i + 1)
			synced[q] = n
		}
	}
	synced = wellFormed(synced)
	// Each side keeps the base often, so that one-sided and two-sided changes mix.
	for i, q := range universe {
		base, inBase := synced[q]
		for _, side := range []string{"local", "remote"} {
			tree := local
			if side == "remote" {
				tree = remote
			}
			label := side + "/" + q
			if rapid.IntRange(0, 9).Draw(t, label+"/keep") < 6 {
				if inBase {
					if side == "local" {
						base.Seq = 0
					}
					tree[q] = base
				}
				continue
			}
			if n, ok := drawNode(t, label, "new:"+q); ok {
				if side == "remote" {
					n.Seq = int64(1000 + i)
				}
				tree[q] = n
			}
		}
	}
	return wellFormed(local), wellFormed(remote), synced
}

var testNow = time.Date(2026, 11, 22, 4, 30, 0, 0, time.UTC)

func drawMode(t *rapid.T) Mode {
	return rapid.SampledFrom([]Mode{TwoWay, SendOnly, ReceiveOnly}).Draw(t, "mode")
}

func TestPlanIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, r, s := drawTrees(t)
		opts := Options{Mode: drawMode(t), AgentID: "me", Now: testNow}
		first := Plan(l, r, s, opts)
		for range 3 { // fresh maps iterate in another order
			if again := Plan(clone(l), clone(r), clone(s), opts); !reflect.DeepEqual(first, again) {
				t.Fatalf("plans differ:\n%v\n%v", first, again)
			}
		}
	})
}

func TestPlanLosesNothingAndConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, r, s := drawTrees(t)
		opts := Options{Mode: drawMode(t), AgentID: "me", Now: testNow}
		w := newWorld(l, r, s)
		before := contents(l)
		for c := range contents(r) {
			before[c] = true
		}
		unsyncedLocal := map[string]bool{}
		for c := range contents(l) {
			if !w.history[c] {
				unsyncedLocal[c] = true
			}
		}
		// A remote modification is never reduced to history by a local delete (a
		// delete never beats a modification). It may be by a local modification in
		// send-only mode (local wins), and by a local dir taking the path in
		// two-way mode (the dir's content is planned at its own paths).
		unsyncedRemote := map[string]bool{}
		for q, n := range r {
			c := content(n)
			if c == "" || w.history[c] || opts.Mode == SendOnly || isDir(lookup(l, q)) {
				continue
			}
			unsyncedRemote[c] = true
		}

		ops := Plan(l, r, s, opts)
		checkModeRespected(t, opts.Mode, ops)
		if err := w.run(ops); err != nil {
			t.Fatalf("plan %v does not apply: %v", ops, err)
		}
		checkWellFormed(t, w)

		after := contents(w.local)
		for c := range contents(w.remote) {
			after[c] = true
		}
		for c := range before {
			if !after[c] && !w.history[c] {
				t.Fatalf("content %s was lost by %v", c, ops)
			}
		}
		for c := range unsyncedLocal {
			if !after[c] {
				t.Fatalf("unsynced local content %s is only in history after %v", c, ops)
			}
		}
		for c := range unsyncedRemote {
			if !after[c] {
				t.Fatalf("remote modification %s is only in history after %v", c, ops)
			}
		}

		// A second plan may only upload the conflict copies the first one made
		// (or report); a third is only reports.
		second := Plan(w.local, w.remote, w.synced, opts)
		for _, op := range second {
			if op.Kind != Report && (op.Kind != Upload || !proto.IsConflictPath(op.Path)) {
				t.Fatalf("second plan not settled: %+v\nfirst plan: %v", op, ops)
			}
		}
		if err := w.run(second); err != nil {
			t.Fatalf("second plan does not apply: %v", err)
		}
		for _, op := range Plan(w.local, w.remote, w.synced, opts) {
			if op.Kind != Report {
				t.Fatalf("third plan not empty: %+v", op)
			}
		}
		if opts.Mode == TwoWay {
			checkConverged(t, w)
		}
	})
}

func checkModeRespected(t *rapid.T, mode Mode, ops []Op) {
	for _, op := range ops {
		switch {
		case mode == SendOnly && (op.Kind == Download || op.Kind == DeleteLocal || op.Kind == MoveToConflict):
			t.Fatalf("send-only plan touches the disk: %+v", op)
		case mode == ReceiveOnly && (op.Kind == Upload || op.Kind == DeleteRemote):
			t.Fatalf("receive-only plan touches the server: %+v", op)
		}
	}
}

func checkWellFormed(t *rapid.T, w *world) {
	for name, tree := range map[string]Tree{"local": w.local, "remote": w.remote} {
		for q := range tree {
			if !parentIsDir(tree, q) {
				t.Fatalf("%s tree has %q without a parent dir", name, q)
			}
		}
	}
}

func checkConverged(t *rapid.T, w *world) {
	for _, q := range unionPaths(w.local, w.remote, w.synced) {
		l, r, s := lookup(w.local, q), lookup(w.remote, q), lookup(w.synced, q)
		if !Same(l, r) || !Same(r, s) {
			t.Fatalf("%q not converged: local %+v remote %+v synced %+v", q, l, r, s)
		}
	}
}

// TestDeleteNeverBeatsModification checks the rule path by path: where one side
// deleted what the other side modified, the modification ends at the path — on both
// sides where the mode lets it travel, and at least where it was made.
func TestDeleteNeverBeatsModification(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, r, s := drawTrees(t)
		opts := Options{Mode: drawMode(t), AgentID: "me", Now: testNow}
		w := newWorld(l, r, s)
		ops := Plan(l, r, s, opts)
		if err := w.run(ops); err != nil {
			t.Fatalf("plan %v does not apply: %v", ops, err)
		}
		for q, sn := range s {
			ln, rn := lookup(l, q), lookup(r, q)
			base := sn
			switch {
			case ln == nil && rn != nil && !Same(rn, &base):
				// Deleted locally, modified on the server.
				if !Same(lookup(w.remote, q), rn) {
					t.Fatalf("%q: the local delete removed the server's modification %+v; ops %v", q, rn, ops)
				}
				if opts.Mode != SendOnly && !Same(lookup(w.local, q), rn) {
					t.Fatalf("%q: the server's modification %+v did not come back to the disk (%+v); ops %v", q, rn, lookup(w.local, q), ops)
				}
			case rn == nil && ln != nil && !Same(ln, &base):
				// Deleted on the server, modified locally.
				if !Same(lookup(w.local, q), ln) {
					t.Fatalf("%q: the server's delete removed the local modification %+v; ops %v", q, ln, ops)
				}
				if opts.Mode != ReceiveOnly && !Same(lookup(w.remote, q), ln) {
					t.Fatalf("%q: the local modification %+v did not reach the server (%+v); ops %v", q, ln, lookup(w.remote, q), ops)
				}
			}
		}
	})
}

// TestBothChangedMakesAConflictCopy checks that two different new versions of a file
// both survive a two-way plan: the server's at the path, the local one in a conflict
// copy beside it that keeps the extension.
func TestBothChangedMakesAConflictCopy(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, r, s := drawTrees(t)
		opts := Options{Mode: TwoWay, AgentID: "me", Now: testNow}
		w := newWorld(l, r, s)
		ops := Plan(l, r, s, opts)
		if err := w.run(ops); err != nil {
			t.Fatalf("plan %v does not apply: %v", ops, err)
		}
		copies := map[string]string{}
		for _, op := range ops {
			if op.Kind != MoveToConflict {
				continue
			}
			if !proto.IsConflictPath(op.NewPath) {
				t.Fatalf("conflict copy %q of %q is not recognizable as one", op.NewPath, op.Path)
			}
			if dirOf(op.NewPath) != dirOf(op.Path) || !strings.HasSuffix(op.NewPath, extOf(op.Path)) {
				t.Fatalf("conflict copy %q of %q is not beside it with its extension", op.NewPath, op.Path)
			}
			copies[op.Path] = op.NewPath
		}
		for _, q := range unionPaths(l, r) {
			ln, rn, sn := lookup(l, q), lookup(r, q), lookup(s, q)
			if ln == nil || rn == nil || ln.Type != proto.TypeFile || rn.Type != proto.TypeFile ||
				Same(ln, sn) || Same(rn, sn) || ln.SHA256 == rn.SHA256 {
				continue
			}
			c, ok := copies[q]
			if !ok {
				t.Fatalf("%q changed on both sides (%s vs %s) without a conflict copy; ops %v", q, ln.SHA256, rn.SHA256, ops)
			}
			if got := lookup(w.local, q); got == nil || got.SHA256 != rn.SHA256 {
				t.Fatalf("%q: the server's version %s does not take the path (%+v)", q, rn.SHA256, got)
			}
			if got := lookup(w.local, c); got == nil || got.SHA256 != ln.SHA256 {
				t.Fatalf("%q: the conflict copy %q does not hold the local version %s (%+v)", q, c, ln.SHA256, got)
			}
		}
	})
}

// TestAgreeingTreesPlanNothing checks the fixed point: when disk, server and merge base
// hold the same, whatever the tree, no mode plans any change.
func TestAgreeingTreesPlanNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		_, _, s := drawTrees(t)
		local := Tree{}
		for q, n := range s {
			n.Seq = 0
			n.MTimeNs = rapid.Int64Range(0, 5).Draw(t, "mtime/"+q) // mtime alone is no change
			local[q] = n
		}
		for _, op := range Plan(local, clone(s), clone(s), Options{Mode: drawMode(t), AgentID: "me", Now: testNow}) {
			t.Fatalf("agreeing trees planned %+v", op)
		}
	})
}

func dirOf(q string) string {
	if i := strings.LastIndexByte(q, '/'); i >= 0 {
		return q[:i]
	}
	return ""
}

func extOf(q string) string {
	base := q[strings.LastIndexByte(q, '/')+1:]
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		return base[i:]
	}
	return ""
}

// TestEntriesUnderANonDirAreReported covers a server that holds entries under a link or
// a file (an agent replaced a dir by a link while another added to the dir): creating
// them would follow the link, so they are reported, never retried forever; an agent
// that still has the dir uploads it, which heals the path.
func TestEntriesUnderANonDirAreReported(t *testing.T) {
	link := Node{Type: proto.TypeSymlink, Target: "/outside", Mode: 0o777}
	f := Node{Type: proto.TypeFile, SHA256: h("x"), Size: 1, Mode: 0o644}
	d := Node{Type: proto.TypeDir, Mode: 0o755}
	withSeq := func(n Node, s int64) Node { n.Seq = s; return n }
	remote := Tree{"x": withSeq(link, 5), "x/f": withSeq(f, 4), "x/sub/g": withSeq(f, 6)}

	// A new agent: the link comes down, what lies "under" it is reported.
	ops := Plan(Tree{}, remote, Tree{}, Options{AgentID: "me", Now: testNow})
	kinds := map[string]OpKind{}
	for _, op := range ops {
		kinds[op.Path] = op.Kind
	}
	if kinds["x"] != Download || kinds["x/f"] != Report || kinds["x/sub/g"] != Report || len(ops) != 3 {
		t.Fatalf("new agent: got %v", ops)
	}
	// Once it has the link, the plan is only reports: the agent settles.
	local := Tree{"x": link}
	synced := Tree{"x": withSeq(link, 5)}
	for _, op := range Plan(local, remote, synced, Options{AgentID: "me", Now: testNow}) {
		if op.Kind != Report {
			t.Fatalf("settled agent plans %+v", op)
		}
	}
	// The agent that still has the dir and the file puts the dir back.
	local = Tree{"x": d, "x/f": f}
	synced = Tree{"x": withSeq(d, 3), "x/f": withSeq(f, 4)}
	ops = Plan(local, remote, synced, Options{AgentID: "me", Now: testNow})
	uploadedDir := false
	for _, op := range ops {
		if op.Kind == Upload && op.Path == "x" && op.Local != nil && op.Local.Type == proto.TypeDir {
			uploadedDir = true
		}
		if op.Kind == DeleteLocal || op.Kind == MoveToConflict {
			t.Fatalf("the dir holder loses local content: %+v", op)
		}
	}
	if !uploadedDir {
		t.Fatalf("the dir holder does not restore the dir: %v", ops)
	}
}
