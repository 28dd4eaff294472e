package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
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

	// execute clears what it ran.
	write(t, filepath.Join(da, "late/one"), "1")
	write(t, filepath.Join(da, "late/two"), "2")
	ctx := context.Background()
	if err := a.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.scanAll(ctx); err != nil {
		t.Fatal(err)
	}
	ops := a.planNow()
	if len(ops) < 3 {
		t.Fatalf("plan %v, want the uploads of a dir and two files", ops)
	}
	out, err := a.execute(ctx, ops)
	if err != nil || out.Done != len(ops) {
		t.Fatalf("execute: %+v, %v; want %d done", out, err, len(ops))
	}
	for i, op := range ops {
		if op != (plan.Op{}) {
			t.Fatalf("op %d not cleared after it ran: %+v", i, op)
		}
	}
	once(t, b)
	sameManifest(t, da, db)
}
