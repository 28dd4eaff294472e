package agent

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A plan runs in slices of a few ops (execSlice), each cleared once it ran: two agents
// still converge through a first upload and download, then edits, deletes and a new dir.
func TestPlansRunInSlices(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	for i := range 9 {
		write(t, filepath.Join(da, fmt.Sprintf("d%d/sub/f%d", i%3, i)), fmt.Sprintf("file %d", i))
	}
	if err := os.Symlink("d0/sub/f0", filepath.Join(da, "link")); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	a.execSlice, b.execSlice = 2, 3
	once(t, a)
	once(t, b)
	sameManifest(t, da, db)

	write(t, filepath.Join(db, "d1/sub/f1"), "edited")
	if err := os.RemoveAll(filepath.Join(db, "d2")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(db, "new/deep/file"), "new")
	once(t, b)
	once(t, a)
	sameManifest(t, da, db)

	// execute runs a plan of more ops than a slice holds, all of them, in order.
	write(t, filepath.Join(da, "late/one"), "1")
	write(t, filepath.Join(da, "late/two"), "2")
	write(t, filepath.Join(da, "late/sub/three"), "3")
	ctx := context.Background()
	if err := a.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.scanAll(ctx); err != nil {
		t.Fatal(err)
	}
	ops := a.planNow().Ops
	if len(ops) <= a.execSlice {
		t.Fatalf("plan %v, want more ops than a slice of %d", ops, a.execSlice)
	}
	want := len(ops)
	out, err := a.execute(ctx, ops)
	if err != nil || out.Done != want || out.Failed != 0 {
		t.Fatalf("execute: %+v, %v; want %d done", out, err, want)
	}
	once(t, b)
	sameManifest(t, da, db)
}

// A first sync of more creations than a window holds is planned and run a window at a
// time (plan.PlanWindow), the next planned as soon as one ran: one pass uploads them
// all, and the other agent downloads them all in one pass too.
func TestFirstSyncRunsInWindows(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	for i := range 20 {
		write(t, filepath.Join(da, fmt.Sprintf("d%d/sub/f%02d", i%4, i)), fmt.Sprintf("file %d", i))
	}
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	a.planWindow, b.planWindow = 4, 5
	a.execSlice = 3
	ctx := context.Background()
	if err := a.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.scanAll(ctx); err != nil {
		t.Fatal(err)
	}
	w := a.planNow()
	const creations = 4 + 4 + 20 // d0..d3, their sub dirs, the files
	if len(w.Ops) != 4 || w.RestFiles != creations-4 || w.Ops[0].Path != "d0" {
		t.Fatalf("first window: %d ops from %q, %d more; want 4 from \"d0\", %d more", len(w.Ops), w.Ops[0].Path, w.RestFiles, creations-4)
	}
	out, tripped, err := a.runPlan(ctx, w, a.catchUp)
	if err != nil || tripped || out.Done != creations || out.Failed != 0 || out.Replan {
		t.Fatalf("run the windows: %+v, tripped %v, %v; want %d done", out, tripped, err, creations)
	}
	if err := a.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if rest := a.planNow(); actionable(rest.Ops) != 0 {
		t.Fatalf("after the windows the writer still plans %v", rest.Ops)
	}
	once(t, b)
	sameManifest(t, da, db)
}

// A first sync of up to planWhole creations is planned whole, a larger one a window at
// a time.
func TestFirstSyncUpToPlanWholeIsOnePlan(t *testing.T) {
	srv := startServer(t)
	da := filepath.Join(t.TempDir(), "a")
	for i := range 20 {
		write(t, filepath.Join(da, fmt.Sprintf("d%d/sub/f%02d", i%4, i)), fmt.Sprintf("file %d", i))
	}
	const creations = 4 + 4 + 20 // d0..d3, their sub dirs, the files
	a := newAgent(t, srv, da, "A", nil)
	ctx := context.Background()
	if err := a.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.scanAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ whole, ops int }{{creations, creations}, {creations + 1, creations}, {creations - 1, 4}} {
		a.planWindow, a.planWhole = 4, c.whole
		a.quietSeen = false
		if w := a.planNow(); len(w.Ops) != c.ops || w.RestFiles != int64(creations-c.ops) {
			t.Errorf("whole %d: %d ops, %d more; want %d, %d more", c.whole, len(w.Ops), w.RestFiles, c.ops, creations-c.ops)
		}
	}
}

// A tree built elsewhere and moved into a running agent's folder is one watcher path (its
// content is not listed), which the agent rescans with its subtree; with a small window,
// the running agents then upload and download it a window at a time.
func TestTreeMovedInSyncsLiveInWindows(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db, outside := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "outside")
	for i := range 30 {
		write(t, filepath.Join(outside, "tree", fmt.Sprintf("d%d/f%02d", i%3, i)), fmt.Sprintf("file %d", i))
	}
	a := newAgent(t, srv, da, "A", func(c *Config) { c.Watch = true })
	b := newAgent(t, srv, db, "B", func(c *Config) { c.Watch = true })
	a.planWindow, b.planWindow = 4, 7
	runAgents(t, a, b)
	time.Sleep(300 * time.Millisecond) // both have caught up with the (empty) feed
	if err := os.Rename(filepath.Join(outside, "tree"), filepath.Join(da, "tree")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(manifest(t, db)) != 1+3+30 || !maps.Equal(manifest(t, da), manifest(t, db)) {
		if time.Now().After(deadline) {
			sameManifest(t, da, db)
			t.Fatal("the tree did not reach B within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
