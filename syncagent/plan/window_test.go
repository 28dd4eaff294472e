package plan

import (
	"reflect"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// drawCreations draws trees where, most of the time, every change is a creation: a
// merge base both sides hold, and new paths on one side only; now and then one other
// change (an edit, a delete, a path new on both sides) is mixed in.
func drawCreations(t *rapid.T) (local, remote, synced Tree) {
	synced, local, remote = Tree{}, Tree{}, Tree{}
	for i, q := range universe {
		if rapid.IntRange(0, 3).Draw(t, "synced/"+q+"/in") == 0 {
			if n, ok := drawNode(t, "synced/"+q, ""); ok {
				n.Seq = int64(i + 1)
				synced[q] = n
			}
		}
	}
	synced = wellFormed(synced)
	for q, n := range synced {
		remote[q] = n
		n.Seq = 0
		local[q] = n
	}
	for i, q := range universe {
		if _, ok := synced[q]; ok {
			continue
		}
		switch rapid.IntRange(0, 2).Draw(t, "new/"+q+"/side") {
		case 0:
			if n, ok := drawNode(t, "local/"+q, "new:"+q); ok {
				local[q] = n
			}
		case 1:
			if n, ok := drawNode(t, "remote/"+q, "new:"+q); ok {
				n.Seq = int64(1000 + i)
				remote[q] = n
			}
		}
	}
	local, remote = wellFormed(local), wellFormed(remote)
	if rapid.IntRange(0, 4).Draw(t, "other") == 0 {
		q := rapid.SampledFrom(universe).Draw(t, "other/path")
		side, onRemote := local, rapid.Bool().Draw(t, "other/remote")
		if onRemote {
			side = remote
		}
		if n, ok := drawNode(t, "other/"+q, "other:"+q); ok {
			if onRemote {
				n.Seq = 5000
			}
			side[q] = n
		} else {
			delete(side, q)
		}
		local, remote = wellFormed(local), wellFormed(remote)
	}
	return local, remote, synced
}

// creationsOnly reports whether every op uploads or downloads a path new on one side.
func creationsOnly(ops []Op) bool {
	for _, op := range ops {
		if op.Synced != nil || op.Kind == Upload && op.Remote != nil || op.Kind == Download && op.Local != nil ||
			op.Kind != Upload && op.Kind != Download {
			return false
		}
	}
	return true
}

func restOf(ops []Op) (files, bytes int64) {
	for _, op := range ops {
		files++
		if n := createdNode(op); n.Type == proto.TypeFile {
			bytes += n.Size
		}
	}
	return files, bytes
}

// TestPlanWindowIsThePlanInParts runs the windows of a plan one after the other on a
// model of the disk and the server, and checks that together they are the whole plan,
// op for op, and that a plan with anything but creations is never cut.
func TestPlanWindowIsThePlanInParts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		l, r, s := drawCreations(t)
		opts := Options{Mode: TwoWay, AgentID: "me", Now: testNow}
		if rapid.IntRange(0, 2).Draw(t, "other mode") == 0 {
			opts.Mode = drawMode(t) // one-way modes report the other side's creations: never cut
		}
		size := rapid.IntRange(1, 6).Draw(t, "window")
		full := Plan(l, r, s, opts)
		cut := creationsOnly(full) && len(full) > size
		w := newWorld(l, r, s)
		var got []Op
		for round := 0; ; round++ {
			win := PlanWindow(w.local, w.remote, w.synced, opts, size)
			if round == 0 {
				if !cut && (win.RestFiles != 0 || !reflect.DeepEqual(win.Ops, full)) {
					t.Fatalf("plan of %d ops cut (creations only: %v): window %v rest %d, plan %v",
						len(full), creationsOnly(full), win.Ops, win.RestFiles, full)
				}
				if cut && len(win.Ops) != size {
					t.Fatalf("window of %d ops, want %d of the plan's %d", len(win.Ops), size, len(full))
				}
			}
			got = append(got, win.Ops...)
			if files, bytes := restOf(full[min(len(got), len(full)):]); cut && (win.RestFiles != files || win.RestBytes != bytes) {
				t.Fatalf("after %d ops: rest %d files %d bytes, want %d and %d", len(got), win.RestFiles, win.RestBytes, files, bytes)
			}
			if err := w.run(win.Ops); err != nil {
				t.Fatalf("window %d: %v", round, err)
			}
			if win.RestFiles == 0 {
				break
			}
			if round > len(full) {
				t.Fatalf("windows do not end: %d ops so far of %d", len(got), len(full))
			}
		}
		if !reflect.DeepEqual(got, full) {
			t.Fatalf("windows\n%v\nplan\n%v", got, full)
		}
	})
}

// TestPlanWindowOfAFirstUpload cuts the first upload of a large folder into windows of
// the planned size, parents first.
func TestPlanWindowOfAFirstUpload(t *testing.T) {
	local := Tree{"d": dir()}
	for i := range 50 {
		local["d/f"+string(rune('a'+i%26))+string(rune('a'+i/26))] = file("c")
	}
	win := PlanWindow(local, Tree{}, Tree{}, Options{AgentID: "me", Now: testNow}, 20)
	if len(win.Ops) != 20 || win.RestFiles != 31 || win.Ops[0].Path != "d" || win.Ops[0].Kind != Upload {
		t.Fatalf("window: %d ops from %q, rest %d; want 20 from \"d\", rest 31", len(win.Ops), win.Ops[0].Path, win.RestFiles)
	}
	if all := PlanWindow(local, Tree{}, Tree{}, Options{AgentID: "me", Now: testNow}, 51); len(all.Ops) != 51 || all.RestFiles != 0 {
		t.Fatalf("a window as large as the plan: %d ops, rest %d", len(all.Ops), all.RestFiles)
	}
}
