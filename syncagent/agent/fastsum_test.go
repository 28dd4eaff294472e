package agent

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A block the scan takes as found again by its fast sum while its bytes did change (a
// collision of chunk.FastSum, made here by writing the edited block's sum into the
// index) costs one refused commit: the server finds that the listed blocks do not hash
// to the file's SHA-256, the agent hashes the file again, every block by its SHA-256,
// and its next commit holds the edit.
func TestFastSumCollisionCostsOneRefusedCommit(t *testing.T) {
	srv := startServer(t)
	wdir, rdir := filepath.Join(t.TempDir(), "w"), filepath.Join(t.TempDir(), "r")
	var wrec recorder
	w := newAgent(t, srv, wdir, "writer", recorded(&wrec, srv))
	r := newAgent(t, srv, rdir, "reader", nil)
	data := make([]byte, 8<<20)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(data)
	big := filepath.Join(wdir, "big.bin")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	once(t, w)
	blocks, fast, err := w.db.LocalBlockSums("big.bin")
	if err != nil || len(blocks) < 8 || len(fast) != len(blocks) {
		t.Fatalf("index of big.bin: %d blocks, %d fast sums, %v", len(blocks), len(fast), err)
	}

	// A byte flipped in the middle of a block, where the flip keeps the block's cut.
	var edited chunk.Result
	k := len(blocks) / 2
	for ; k < len(blocks)-1; k++ {
		var off int64
		for _, b := range blocks[:k] {
			off += b.Size
		}
		off += blocks[k].Size / 2
		data[off] ^= 0xff
		if edited, err = chunk.Hash(bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		if len(edited.Blocks) == len(blocks) && edited.Blocks[k].Size == blocks[k].Size && edited.Blocks[k] != blocks[k] {
			break
		}
		data[off] ^= 0xff
	}
	if k == len(blocks)-1 {
		t.Fatal("no block keeps its cut when a byte in its middle changes")
	}
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	collided := slices.Clone(fast)
	collided[k] = edited.Fast[k]
	idx, _ := w.trees.Index.Get("big.bin")
	if err := w.db.Update(context.Background(), func(tx *state.Tx) error {
		return tx.PutIndex("big.bin", idx, blocks, collided)
	}); err != nil {
		t.Fatal(err)
	}

	wrec.take()
	once(t, w)
	// Refused: the delta, then (as for any refused reference) the whole list; then the
	// commit after the file was hashed again.
	if n, _ := count(wrec.take(), "POST", proto.RouteCommit); n != 3 {
		t.Errorf("%d commits; want 2 refused ones and the one after the file was hashed again", n)
	}
	ent, err := w.cfg.Server.Entry(context.Background(), "big.bin")
	if err != nil || ent.SHA256 != edited.SHA256 {
		t.Fatalf("big.bin on the server: %+v, %v; want the edit", ent, err)
	}
	if got, fast, err := w.db.LocalBlockSums("big.bin"); err != nil || !slices.Equal(got, edited.Blocks) || !slices.Equal(fast, edited.Fast) {
		t.Fatalf("index of big.bin after the refusal: %d blocks, %v; want the edit's blocks and sums", len(got), err)
	}
	once(t, r)
	sameManifest(t, wdir, rdir)
}
