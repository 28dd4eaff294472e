package plan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func file(sha string) Node { return Node{Type: proto.TypeFile, SHA256: h(sha), Mode: 0o644, Size: 1} }

// h is a hash standing for the content s.
func h(s string) Hash     { return HashOf([]byte(s)) }
func dir() Node           { return Node{Type: proto.TypeDir, Mode: 0o755} }
func link(to string) Node { return Node{Type: proto.TypeSymlink, Target: to, Mode: 0o777} }
func seq(n Node, s int64) Node {
	n.Seq = s
	return n
}

// summary renders ops as "kind path[->newPath]" lines, the shape the table compares.
func summary(ops []Op) string {
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "%s %s", op.Kind, op.Path)
		if op.NewPath != "" {
			fmt.Fprintf(&b, "->%s", op.NewPath)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

const conflictSuffix = ".sync-conflict-20261122-043000-me"

func TestPlanTable(t *testing.T) {
	cases := []struct {
		name                  string
		mode                  Mode
		local, remote, synced Tree
		want                  []string
	}{
		{name: "in sync", local: Tree{"f": file("a")}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)}},
		{name: "remote seq moved, same content", local: Tree{"f": file("a")}, remote: Tree{"f": seq(file("a"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"record-synced f"}},
		{name: "mtime alone is no change", local: Tree{"f": {Type: proto.TypeFile, SHA256: h("a"), Mode: 0o644, MTimeNs: 99}}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)}},
		{name: "new local file", local: Tree{"f": file("a")},
			want: []string{"upload f"}},
		{name: "local edit", local: Tree{"f": file("b")}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"upload f"}},
		{name: "local chmod", local: Tree{"f": {Type: proto.TypeFile, SHA256: h("a"), Mode: 0o755}}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"upload f"}},
		{name: "setuid bit alone is no change", local: Tree{"f": {Type: proto.TypeFile, SHA256: h("a"), Mode: 0o4644}}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)}},
		{name: "local delete", remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"delete-remote f"}},
		{name: "remote edit", local: Tree{"f": file("a")}, remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"download f"}},
		{name: "remote delete", local: Tree{"f": file("a")}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"delete-local f"}},
		{name: "both edited alike", local: Tree{"f": file("b")}, remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"record-synced f"}},
		{name: "both deleted", synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"forget-synced f"}},
		{name: "both edited differently", local: Tree{"d": dir(), "d/f.txt": file("b")}, remote: Tree{"d": seq(dir(), 1), "d/f.txt": seq(file("c"), 4)}, synced: Tree{"d": seq(dir(), 1), "d/f.txt": seq(file("a"), 3)},
			want: []string{"move-to-conflict d/f.txt->d/f" + conflictSuffix + ".txt", "download d/f.txt"}},
		{name: "both created differently", local: Tree{"f": file("b")}, remote: Tree{"f": seq(file("c"), 4)},
			want: []string{"move-to-conflict f->f" + conflictSuffix, "download f"}},
		{name: "conflict copy name taken", local: Tree{"f": file("b"), "f" + conflictSuffix: file("x")}, remote: Tree{"f": seq(file("c"), 4), "f" + conflictSuffix: seq(file("x"), 2)}, synced: Tree{"f" + conflictSuffix: seq(file("x"), 2)},
			want: []string{"move-to-conflict f->f.sync-conflict-20261122-043000-me-2", "download f"}},
		{name: "both changed mode differently, same bytes", local: Tree{"f": {Type: proto.TypeFile, SHA256: h("a"), Mode: 0o700}}, remote: Tree{"f": seq(Node{Type: proto.TypeFile, SHA256: h("a"), Mode: 0o755}, 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"download f"}},
		{name: "local delete vs remote edit", remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"download f"}},
		{name: "remote delete vs local edit", local: Tree{"f": file("b")}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"upload f"}},
		{name: "remote rename reuses blocks: download before delete",
			local: Tree{"old": file("a")}, remote: Tree{"new": seq(file("a"), 4)}, synced: Tree{"old": seq(file("a"), 3)},
			want: []string{"download new", "delete-local old"}},
		{name: "remote dir rename: parents first, children removed first",
			local:  Tree{"x": dir(), "x/f": file("a"), "x/s": dir(), "x/s/g": file("b")},
			remote: Tree{"y": seq(dir(), 5), "y/f": seq(file("a"), 6), "y/s": seq(dir(), 7), "y/s/g": seq(file("b"), 8)},
			synced: Tree{"x": seq(dir(), 1), "x/f": seq(file("a"), 2), "x/s": seq(dir(), 3), "x/s/g": seq(file("b"), 4)},
			want:   []string{"download y", "download y/f", "download y/s", "download y/s/g", "delete-local x/s/g", "delete-local x/s", "delete-local x/f", "delete-local x"}},
		{name: "local dir removal vs new remote child keeps the child",
			remote: Tree{"d": seq(dir(), 1), "d/old": seq(file("a"), 2), "d/new": seq(file("b"), 5)},
			synced: Tree{"d": seq(dir(), 1), "d/old": seq(file("a"), 2)},
			want:   []string{"download d", "download d/new", "delete-remote d/old"}},
		{name: "remote dir removal vs new local child keeps the child",
			local:  Tree{"d": dir(), "d/old": file("a"), "d/new": file("b")},
			synced: Tree{"d": seq(dir(), 1), "d/old": seq(file("a"), 2)},
			want:   []string{"upload d", "upload d/new", "delete-local d/old"}},
		{name: "remote dir replaced by file: children go first",
			local:  Tree{"d": dir(), "d/f": file("a")},
			remote: Tree{"d": seq(file("z"), 7)},
			synced: Tree{"d": seq(dir(), 1), "d/f": seq(file("a"), 2)},
			want:   []string{"delete-local d/f", "download d"}},
		{name: "remote dir replaced by file, local edit below keeps the dir",
			local:  Tree{"d": dir(), "d/f": file("b")},
			remote: Tree{"d": seq(file("z"), 7)},
			synced: Tree{"d": seq(dir(), 1), "d/f": seq(file("a"), 2)},
			want:   []string{"upload d", "upload d/f"}},
		{name: "local file vs new remote dir",
			local:  Tree{"d": file("a")},
			remote: Tree{"d": seq(dir(), 4), "d/f": seq(file("b"), 5)},
			want:   []string{"move-to-conflict d->d" + conflictSuffix, "download d", "download d/f"}},
		{name: "symlink change", local: Tree{"l": link("x")}, remote: Tree{"l": seq(link("y"), 4)}, synced: Tree{"l": seq(link("x"), 3)},
			want: []string{"download l"}},

		{name: "send-only: remote edit is reported", mode: SendOnly, local: Tree{"f": file("a")}, remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"report f"}},
		{name: "send-only: both edited, local wins", mode: SendOnly, local: Tree{"f": file("c")}, remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"upload f"}},
		{name: "send-only: local delete vs remote edit is reported", mode: SendOnly, remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"report f"}},
		{name: "send-only: local edit", mode: SendOnly, local: Tree{"f": file("c")}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"upload f"}},
		{name: "receive-only: local edit is moved aside and reverted", mode: ReceiveOnly, local: Tree{"f": file("c")}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"move-to-conflict f->f" + conflictSuffix, "download f"}},
		{name: "receive-only: local chmod is reverted", mode: ReceiveOnly, local: Tree{"f": {Type: proto.TypeFile, SHA256: h("a"), Mode: 0o700}}, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"download f"}},
		{name: "receive-only: local delete is restored", mode: ReceiveOnly, remote: Tree{"f": seq(file("a"), 3)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"download f"}},
		{name: "receive-only: local-only file is reported", mode: ReceiveOnly, local: Tree{"f": file("a")},
			want: []string{"report f"}},
		{name: "receive-only: remote edit", mode: ReceiveOnly, local: Tree{"f": file("a")}, remote: Tree{"f": seq(file("b"), 4)}, synced: Tree{"f": seq(file("a"), 3)},
			want: []string{"download f"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Mode: tc.mode, AgentID: "me", Now: testNow}
			ops := Plan(tc.local, tc.remote, tc.synced, opts)
			want := ""
			for _, w := range tc.want {
				want += w + "\n"
			}
			if got := summary(ops); got != want {
				t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
			}
			// Every table row must also be executable on the model.
			w := newWorld(tc.local, tc.remote, tc.synced)
			if err := w.run(ops); err != nil {
				t.Fatalf("plan does not apply: %v", err)
			}
		})
	}
}

func TestOpsCarryPlannedStates(t *testing.T) {
	ops := Plan(Tree{"f": file("b")}, Tree{"f": seq(file("c"), 4)}, Tree{"f": seq(file("a"), 3)}, Options{AgentID: "me", Now: testNow})
	if len(ops) != 2 {
		t.Fatalf("ops = %v", summary(ops))
	}
	move, dl := ops[0], ops[1]
	if move.Local == nil || move.Local.SHA256 != h("b") || move.Synced == nil || move.Synced.Seq != 3 {
		t.Errorf("move carries %+v / %+v", move.Local, move.Synced)
	}
	if dl.Local != nil || dl.Remote == nil || dl.Remote.Seq != 4 {
		t.Errorf("download after a move must expect an empty path and carry the remote version: %+v %+v", dl.Local, dl.Remote)
	}
	if !proto.IsConflictPath(move.NewPath) {
		t.Errorf("%q is not a conflict path", move.NewPath)
	}
}

func TestDeleteCountsAndBreaker(t *testing.T) {
	local, remote, synced := Tree{}, Tree{}, Tree{}
	synced["d"] = seq(dir(), 1)
	remote["d"] = seq(dir(), 1)
	local["d"] = dir()
	for i := range 20 {
		q := fmt.Sprintf("d/f%02d", i)
		synced[q] = seq(file("a"), int64(i+2))
		remote[q] = synced[q]
		if i < 12 {
			local[q] = file("a") // the other 8 were deleted locally
		}
	}
	ops := Plan(local, remote, synced, Options{AgentID: "me", Now: testNow})
	l, r := DeleteCounts(ops)
	if l != 0 || r != 8 {
		t.Fatalf("DeleteCounts = %d, %d; want 0, 8", l, r)
	}
	if TrackedFiles(synced) != 20 {
		t.Fatalf("TrackedFiles = %d", TrackedFiles(synced))
	}
	if ExceedsDeleteLimit(ops, 20, 30) {
		t.Errorf("8 deletes tripped the breaker although at most %d never trip it", MassDeleteMinFiles)
	}

	// Now the whole dir is deleted on the server: 20 local deletes of 20 tracked files.
	ops = Plan(local, Tree{}, synced, Options{AgentID: "me", Now: testNow})
	if l, _ := DeleteCounts(ops); l != 12 {
		t.Fatalf("local deletes = %d; want 12 (the dir itself is not counted)", l)
	}
	if !ExceedsDeleteLimit(ops, 20, 50) {
		t.Errorf("12 of 20 files deleted did not trip a 50%% breaker")
	}
	if ExceedsDeleteLimit(ops, 20, 70) {
		t.Errorf("12 of 20 files deleted tripped a 70%% breaker")
	}
	for _, op := range WithoutDeletes(ops) {
		if op.Kind == DeleteLocal || op.Kind == DeleteRemote {
			t.Fatalf("WithoutDeletes kept %+v", op)
		}
	}
}
