package execute

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// oldServer is a server from before commit deletes: it applies a commit's items only.
type oldServer struct{ *client.Client }

func (s oldServer) CommitDeletesFunc(ctx context.Context, n int, item func(i int) (proto.CommitItem, error), _ []proto.DeleteItem) (res, deleted []proto.ItemResult, err error) {
	res, _, err = s.Client.CommitDeletesFunc(ctx, n, item, nil)
	return res, nil, err
}

// A local rename is one commit carrying the old path's delete; against a server that
// does not take deletes in a commit, the delete goes on its own. Either way the server
// ends with the new path and without the old one, and the state agrees.
func TestLocalRenameCommitsItsDelete(t *testing.T) {
	for _, old := range []bool{false, true} {
		e := newEnv(t)
		if old {
			e.x.Server = oldServer{e.cl}
		}
		data := make([]byte, 2<<20)
		_, _ = rand.NewChaCha8([32]byte{7}).Read(data)
		if err := os.WriteFile(filepath.Join(e.dir, "big.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		e.rescan(t)
		e.run(t, e.plan())
		e.pull(t)
		if err := os.Rename(filepath.Join(e.dir, "big.bin"), filepath.Join(e.dir, "moved.bin")); err != nil {
			t.Fatal(err)
		}
		e.rescan(t)
		if out := e.run(t, e.plan()); out.Done != 2 || out.Failed != 0 || out.Replan {
			t.Errorf("old=%v: outcome %+v; want the upload and the delete done", old, out)
		}
		gone, err := e.cl.Entry(context.Background(), "big.bin")
		if err != nil || !gone.Deleted {
			t.Errorf("old=%v: big.bin on the server %+v, %v; want it deleted", old, gone, err)
		}
		moved, err := e.cl.Entry(context.Background(), "moved.bin")
		if err != nil || moved.Deleted || moved.SHA256 != chunk.SumHex(data) {
			t.Errorf("old=%v: moved.bin on the server %+v, %v", old, moved, err)
		}
		if !old && gone.Seq != moved.Seq+1 {
			t.Errorf("the delete (seq %d) is not in the commit of moved.bin (seq %d)", gone.Seq, moved.Seq)
		}
		if _, ok := e.x.Trees.Synced.Get("big.bin"); ok {
			t.Errorf("old=%v: big.bin still synced", old)
		}
		e.pull(t)
		e.rescan(t)
		if ops := e.plan(); len(ops) != 0 {
			t.Errorf("old=%v: plan after the rename: %+v", old, ops)
		}
	}
}
