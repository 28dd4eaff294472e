package agent

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A block the scan takes as found again by its fast sum while its bytes did change (a
// collision of chunk.FastSum, made here by writing the edited block's sum into the
// index, without the marks: with them, the blocks before the edit vouch for the SHA-256
// state there, which is the chance of 2^-128 the scan takes) costs one refused commit
// when the agent takes the file's SHA-256 itself (a server without stream sums): the
// server finds that the listed blocks do not hash to the file's SHA-256, the agent
// hashes the file again, every block by its SHA-256, and its next commit holds the
// edit. With stream sums the server's SHA-256 is the list's by construction, and the
// chance of 2^-128 per block is the one the scan takes (TestEditIsHashedByTheServer).
func TestFastSumCollisionCostsOneRefusedCommit(t *testing.T) {
	e := startEditedIndex(t, proto.StreamSumSuffix)
	collided := slices.Clone(e.sums.Fast)
	collided[e.k] = e.edited.Fast[e.k]
	e.refusedOnce(t, chunk.Sums{Fast: collided})
}

// A mark of the index that is a SHA-256 state, but not of its prefix (a damaged state
// file), costs one refused commit the same way: the whole content's SHA-256 resumed
// from it is not the listed blocks'. (With stream sums, marks are not used.)
func TestDamagedMarkCostsOneRefusedCommit(t *testing.T) {
	t.Cleanup(setMarkEvery(1 << 20)) // first: restored after the agents stop
	e := startEditedIndex(t, proto.StreamSumSuffix)
	other, err := chunk.Hash(bytes.NewReader(bytes.Repeat([]byte("other content "), 1<<20)), nil)
	if err != nil || len(other.Marks) < len(e.sums.Marks) || len(e.sums.Marks) < 4 {
		t.Fatalf("marks: %d of the file, %d of another content, %v", len(e.sums.Marks), len(other.Marks), err)
	}
	e.refusedOnce(t, chunk.Sums{Fast: e.sums.Fast, Marks: other.Marks[:len(e.sums.Marks)]})
}

// editedIndex is a writer and a reader agent, a large file the writer indexed, and an
// edit of it written in place: a byte flipped in the middle of block k, which keeps the
// block's cut.
type editedIndex struct {
	srv        *testServer
	w, r       *Agent
	wdir, rdir string
	wrec       *recorder
	blocks     []proto.Block
	sums       chunk.Sums
	k          int
	edited     chunk.Result
}

// startEditedIndex starts it; the writer's server lacks the routes without names (as
// recorder.without).
func startEditedIndex(t *testing.T, without ...string) *editedIndex {
	e := &editedIndex{srv: startServer(t), wrec: &recorder{without: without}}
	e.wdir, e.rdir = filepath.Join(t.TempDir(), "w"), filepath.Join(t.TempDir(), "r")
	e.w = newAgent(t, e.srv, e.wdir, "writer", recorded(e.wrec, e.srv))
	e.r = newAgent(t, e.srv, e.rdir, "reader", nil)
	data := make([]byte, 8<<20)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(data)
	big := filepath.Join(e.wdir, "big.bin")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	once(t, e.w)
	var err error
	e.blocks, e.sums, err = e.w.db.LocalBlockSums("big.bin")
	if err != nil || len(e.blocks) < 8 || len(e.sums.Fast) != len(e.blocks) {
		t.Fatalf("index of big.bin: %d blocks, %d fast sums, %v", len(e.blocks), len(e.sums.Fast), err)
	}
	for e.k = len(e.blocks) / 2; e.k < len(e.blocks)-1; e.k++ {
		var off int64
		for _, b := range e.blocks[:e.k] {
			off += b.Size
		}
		off += e.blocks[e.k].Size / 2
		data[off] ^= 0xff
		if e.edited, err = chunk.Hash(bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		if len(e.edited.Blocks) == len(e.blocks) && e.edited.Blocks[e.k].Size == e.blocks[e.k].Size && e.edited.Blocks[e.k] != e.blocks[e.k] {
			break
		}
		data[off] ^= 0xff
	}
	if e.k == len(e.blocks)-1 {
		t.Fatal("no block keeps its cut when a byte in its middle changes")
	}
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// refusedOnce writes sums into the writer's index for the file and checks that its
// next pass commits the edit after the server refused the list the sums made.
func (e *editedIndex) refusedOnce(t *testing.T, sums chunk.Sums) {
	t.Helper()
	idx, _ := e.w.trees.Index.Get("big.bin")
	if err := e.w.db.Update(context.Background(), func(tx *state.Tx) error {
		return tx.PutIndex("big.bin", idx, e.blocks, sums)
	}); err != nil {
		t.Fatal(err)
	}
	e.wrec.take()
	once(t, e.w)
	// Refused: the delta, then (as for any refused reference) the whole list; then the
	// commit after the file was hashed again.
	if n, _ := count(e.wrec.take(), "POST", proto.RouteCommit); n != 3 {
		t.Errorf("%d commits; want 2 refused ones and the one after the file was hashed again", n)
	}
	ent, err := e.w.cfg.Server.Entry(context.Background(), "big.bin")
	if err != nil || ent.SHA256 != e.edited.SHA256 {
		t.Fatalf("big.bin on the server: %+v, %v; want the edit", ent, err)
	}
	if got, sums, err := e.w.db.LocalBlockSums("big.bin"); err != nil || !slices.Equal(got, e.edited.Blocks) || !slices.Equal(sums.Fast, e.edited.Fast) || len(sums.Marks) != len(e.edited.Marks) {
		t.Fatalf("index of big.bin after the refusal: %d blocks, %d marks, %v; want the edit's blocks and sums", len(got), len(sums.Marks), err)
	}
	once(t, e.r)
	sameManifest(t, e.wdir, e.rdir)
}

// setMarkEvery sets chunk.MarkEvery to n and returns what restores it.
func setMarkEvery(n int64) func() {
	old := chunk.MarkEvery
	chunk.MarkEvery = n
	return func() { chunk.MarkEvery = old }
}

// sumCalls counts the stream sums among calls.
func sumCalls(calls []call) int {
	n := 0
	for _, c := range calls {
		if c.method == "POST" && strings.HasPrefix(c.path, proto.RouteStreams) && strings.HasSuffix(c.path, proto.StreamSumSuffix) {
			n++
		}
	}
	return n
}

// commitEdit runs the writer's pass over the edit and checks that it asked for
// wantSums stream sums, committed the edit once, with its blocks and fast sums in the index, and
// that the reader receives it.
func (e *editedIndex) commitEdit(t *testing.T, wantSums int) {
	t.Helper()
	e.wrec.take()
	once(t, e.w)
	calls := e.wrec.take()
	if n := sumCalls(calls); n != wantSums {
		t.Errorf("%d stream sums asked for; want %d", n, wantSums)
	}
	if n, _ := count(calls, "POST", proto.RouteCommit); n != 1 {
		t.Errorf("%d commits; want 1", n)
	}
	ent, err := e.w.cfg.Server.Entry(context.Background(), "big.bin")
	if err != nil || ent.SHA256 != e.edited.SHA256 {
		t.Fatalf("big.bin on the server: %v, %v; want the edit's %s", ent, err, e.edited.SHA256)
	}
	idx, _ := e.w.trees.Index.Get("big.bin")
	got, sums, err := e.w.db.LocalBlockSums("big.bin")
	if err != nil || idx.SHA256 != e.edited.Sum || !slices.Equal(got, e.edited.Blocks) || !slices.Equal(sums.Fast, e.edited.Fast) {
		t.Fatalf("index of big.bin: %x, %d blocks, %v; want the edit's hash, blocks and fast sums", idx.SHA256, len(got), err)
	}
	once(t, e.r)
	sameManifest(t, e.wdir, e.rdir)
}

// The rescan of an edited large file leaves the whole content's SHA-256 to the server,
// which hashed the blocks the pre-upload sent and named to its stream: the writer asks
// for it once, commits once, and indexes the edit under the server's answer.
func TestEditIsHashedByTheServer(t *testing.T) {
	e := startEditedIndex(t)
	e.commitEdit(t, 1)
}

// When a block of the edit is one the server holds already (here another file's), the
// pre-upload does not send it, the stream stops before it, and the writer takes the
// file's SHA-256 itself without asking.
func TestEditWithABlockTheServerHoldsIsHashedByTheWriter(t *testing.T) {
	e := startEditedIndex(t)
	data, err := os.ReadFile(filepath.Join(e.wdir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for _, b := range e.edited.Blocks[:e.k] {
		off += b.Size
	}
	// A file of its own cut from the start of a block is that one block.
	if err := os.WriteFile(filepath.Join(e.rdir, "other.bin"), data[off:off+e.edited.Blocks[e.k].Size], 0o644); err != nil {
		t.Fatal(err)
	}
	once(t, e.r)
	e.commitEdit(t, 0)
}
