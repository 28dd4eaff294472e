package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
	ops := a.planNow()
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
