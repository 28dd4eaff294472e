package execute

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
)

// TestRefusedReferenceSendsTheWholeList: when the server refuses a copyFrom (here: a
// version it never had, as after pruning), the upload goes again with the block list.
func TestRefusedReferenceSendsTheWholeList(t *testing.T) {
	e := newEnv(t)
	data := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{3}).Read(data)
	if err := os.WriteFile(filepath.Join(e.dir, "a.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("first upload: %+v", out)
	}
	e.pull(t)
	// A copy under another name; the remote tree claims a.bin is at a version the
	// server does not hold.
	if err := os.WriteFile(filepath.Join(e.dir, "b.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	n := nodeAt(e.x.Trees.Remote, "a.bin")
	n.Seq += 100
	e.x.Trees.Remote.Set("a.bin", n)
	var up []plan.Op
	for _, op := range e.plan() {
		if op.Kind == plan.Upload && op.Path == "b.bin" {
			up = append(up, op)
		}
	}
	if len(up) != 1 {
		t.Fatalf("plan: want the upload of b.bin")
	}
	out := e.run(t, up)
	if out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload after a refused copyFrom: %+v", out)
	}
	got, err := e.cl.Entry(context.Background(), "b.bin")
	if err != nil || got.Size != int64(len(data)) || len(got.Blocks) == 0 {
		t.Fatalf("server entry of b.bin: %v %+v", err, got)
	}
}
