package plan

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// drawNearlyQuiet draws trees that mostly agree (local and remote are the merge base,
// local with other mtimes), with a few random differences drawn by drawTrees' rules.
func drawNearlyQuiet(t *rapid.T) (local, remote, synced Tree) {
	l, r, s := drawTrees(t)
	synced = clone(s)
	local, remote = Tree{}, clone(s)
	for q, n := range s {
		n.Seq = 0
		n.MTimeNs = rapid.Int64Range(0, 3).Draw(t, "mtime/"+q) // mtime alone is no change
		local[q] = n
	}
	for _, q := range universe {
		switch rapid.IntRange(0, 19).Draw(t, "differ/"+q) {
		case 0: // the local side as drawTrees drew it
			if n, ok := l[q]; ok {
				local[q] = n
			} else {
				delete(local, q)
			}
		case 1: // the remote side as drawTrees drew it
			if n, ok := r[q]; ok {
				remote[q] = n
			} else {
				delete(remote, q)
			}
		case 2: // only the remote Seq moved
			if n, ok := remote[q]; ok {
				n.Seq += 7
				remote[q] = n
			}
		case 3: // the same file on all three, whatever its parents are (maybe a file or link)
			n := Node{Type: proto.TypeFile, SHA256: h("x"), Size: 1, Mode: 0o644, Seq: 500}
			synced[q], remote[q] = n, n
			n.Seq = 0
			local[q] = n
		}
	}
	return local, remote, synced
}

// TestQuietIsAnEmptyPlan checks Quiet against Plan: trees are quiet exactly when Plan,
// in every mode, has nothing to do, and quiet trees stay quiet (and planless) with any
// set of paths removed from all three.
func TestQuietIsAnEmptyPlan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var l, r, s Tree
		if rapid.Bool().Draw(t, "nearlyQuiet") {
			l, r, s = drawNearlyQuiet(t)
		} else {
			l, r, s = drawTrees(t)
		}
		quiet := Quiet(l, r, s)
		for _, mode := range []Mode{TwoWay, SendOnly, ReceiveOnly} {
			ops := planAll(l, r, s, Options{Mode: mode, AgentID: "me", Now: testNow})
			if quiet != (len(ops) == 0) {
				t.Fatalf("mode %s: Quiet %v but the plan is %v", mode, quiet, ops)
			}
		}
		if !quiet {
			return
		}
		l, r, s = clone(l), clone(r), clone(s)
		for _, q := range universe {
			if rapid.IntRange(0, 3).Draw(t, "drop/"+q) == 0 {
				delete(l, q)
				delete(r, q)
				delete(s, q)
			}
		}
		if !Quiet(l, r, s) {
			t.Fatalf("quiet trees with paths removed alike are not quiet: %v %v %v", l, r, s)
		}
		for _, mode := range []Mode{TwoWay, SendOnly, ReceiveOnly} {
			if ops := planAll(l, r, s, Options{Mode: mode, AgentID: "me", Now: testNow}); len(ops) != 0 {
				t.Fatalf("mode %s: quiet trees with paths removed alike plan %v", mode, ops)
			}
		}
	})
}
