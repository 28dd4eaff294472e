package execute

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// countingServer counts the blocks put and the hashes asked about.
type countingServer struct {
	Server
	mu    sync.Mutex
	puts  map[string]int
	asked int
	// patched and patchBytes count the blocks sent as patches and the bytes sent for
	// them.
	patched, patchBytes int
	// sums counts the requests for a base's sums.
	sums int
	// named counts the stored blocks named to upload streams, streamEnds the offsets
	// after each stretch the server reported.
	named      int
	streamEnds []int64
}

func (c *countingServer) StreamStoredBlocks(ctx context.Context, stream string, off int64, base proto.ContentRef, from, count int) (int64, error) {
	end, err := c.Server.StreamStoredBlocks(ctx, stream, off, base, from, count)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.named += count
		c.streamEnds = append(c.streamEnds, end)
	}
	return end, err
}

func (c *countingServer) BlockSums(ctx context.Context, hash string) (*proto.BlockSums, error) {
	c.mu.Lock()
	c.sums++
	c.mu.Unlock()
	return c.Server.BlockSums(ctx, hash)
}

func (c *countingServer) PutStreamBlockPatch(ctx context.Context, hash string, data []byte, base string, head, tail int64, stream string, off int64) error {
	c.mu.Lock()
	c.puts[hash]++
	c.patched++
	c.patchBytes += len(data) - int(head+tail)
	c.mu.Unlock()
	return c.Server.PutStreamBlockPatch(ctx, hash, data, base, head, tail, stream, off)
}

func (c *countingServer) PutBlock(ctx context.Context, hash string, data []byte, compress bool) error {
	c.mu.Lock()
	c.puts[hash]++
	c.mu.Unlock()
	return c.Server.PutBlock(ctx, hash, data, compress)
}

func (c *countingServer) PutStreamBlock(ctx context.Context, hash string, data []byte, compress bool, stream string, off int64) error {
	c.mu.Lock()
	c.puts[hash]++
	c.mu.Unlock()
	return c.Server.PutStreamBlock(ctx, hash, data, compress, stream, off)
}

func (c *countingServer) MissingBlocks(ctx context.Context, hashes []string) ([]string, error) {
	c.mu.Lock()
	c.asked += len(hashes)
	c.mu.Unlock()
	return c.Server.MissingBlocks(ctx, hashes)
}

func (c *countingServer) counts() (puts, asked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.puts {
		puts += n
	}
	return puts, c.asked
}

// A large file's blocks reach the server while the scan indexes it: the upload the
// plan makes afterwards sends none, and an edit pre-uploads only the new blocks and
// names the others to the upload stream as stretches of the version the server holds.
func TestLargeFileIsUploadedWhileIndexed(t *testing.T) {
	e := newEnv(t)
	cs := &countingServer{Server: e.x.Server, puts: map[string]int{}}
	e.x.Server = cs
	pre := &Preupload{Server: cs, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Counters: e.x.Counters,
		Base: e.x.State.RemoteVersion}
	e.scan.Blocks = e.x.State.LocalBlockSums
	e.scan.Preupload = pre.File
	e.x.Preupload = pre

	content := make([]byte, PreuploadMin+3<<20)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(content) // the same cut, and edit, every run
	p := filepath.Join(e.dir, "big.bin")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.dir, "small.bin"), "too small to pre-upload")
	e.rescan(t)

	blocks, err := e.x.State.LocalBlocks("big.bin")
	if err != nil || len(blocks) < 8 {
		t.Fatalf("index of big.bin: %d blocks, %v", len(blocks), err)
	}
	hashes := make([]string, len(blocks))
	for i, b := range blocks {
		hashes[i] = b.Hash
	}
	missing, err := e.cl.MissingBlocks(context.Background(), hashes)
	if err != nil || len(missing) != 0 {
		t.Fatalf("after the scan the server lacks %d of %d blocks (%v); want none", len(missing), len(blocks), err)
	}
	puts, _ := cs.counts()
	if puts != len(blocks) || cs.named != 0 {
		t.Fatalf("the scan put %d blocks and named %d stored ones; want each of the %d put once", puts, cs.named, len(blocks))
	}

	if out := e.run(t, e.plan()); out.Done != 2 || out.Failed != 0 {
		t.Fatalf("outcome %+v", out)
	}
	if after, _ := cs.counts(); after != puts {
		t.Fatalf("the plan's upload put %d blocks again", after-puts)
	}
	ent, err := e.cl.Entry(context.Background(), "big.bin")
	if err != nil || ent.SHA256 != chunk.SumHex(content) {
		t.Fatalf("big.bin on the server: %+v, %v", ent, err)
	}

	// An edit in the middle: only the new blocks are asked about and sent.
	_, askedBefore := cs.counts()
	content[len(content)/2] ^= 0xff
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	newPuts, asked := cs.counts()
	if newPuts-puts < 1 || newPuts-puts > 3 || asked-askedBefore > 3 {
		t.Fatalf("the edit's scan put %d blocks and asked about %d; want the 1–3 new ones", newPuts-puts, asked-askedBefore)
	}
	edited, err := e.x.State.LocalBlocks("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if cs.named+newPuts-puts != len(edited) || len(cs.streamEnds) != 2 || cs.streamEnds[1] != int64(len(content)) {
		t.Fatalf("the edit named %d stored blocks in stretches ending at %v, beside %d new ones; want the other %d of its %d blocks, before and after the edit",
			cs.named, cs.streamEnds, newPuts-puts, len(edited)-(newPuts-puts), len(edited))
	}
	// Each new block went as a patch of the block it replaces: the bytes between the
	// chunks it shares with it from its start and from its end (two grids of
	// proto.SumChunk that meet around the changed byte), not the block.
	if cs.patched != newPuts-puts || cs.patchBytes >= cs.patched*2*proto.SumChunk {
		t.Fatalf("%d of the %d new blocks sent as patches, %d bytes; want all, under %d bytes each",
			cs.patched, newPuts-puts, cs.patchBytes, 2*proto.SumChunk)
	}
	if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("outcome of the edit %+v", out)
	}
	if after, _ := cs.counts(); after != newPuts {
		t.Fatalf("the edit's upload put %d blocks again", after-newPuts)
	}
}

// A server without patches (it answers 404 to the sums, as one before them does) gets
// an edited file's new blocks whole.
func TestPatchFallsBackToTheWholeBlock(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	var sumsAsked atomic.Int32
	e := newEnvOn(t, interpose(t, url, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if strings.HasSuffix(r.URL.Path, proto.SumsSuffix) {
			sumsAsked.Add(1)
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	pre := &Preupload{Server: e.x.Server, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Counters: e.x.Counters}
	e.scan.Blocks = e.x.State.LocalBlockSums
	e.scan.Preupload = pre.File
	e.x.Preupload = pre
	uploadAndEdit(t, e, "big.bin", PreuploadMin+1<<20)
	if sumsAsked.Load() == 0 {
		t.Fatal("the edit's new block was never offered as a patch")
	}
}

// uploadAndEdit writes a file of size random bytes at name, uploads it, changes the
// byte in its middle, uploads it again and checks the server holds the edit.
func uploadAndEdit(t *testing.T, e *env, name string, size int) {
	t.Helper()
	content := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(size)}).Read(content)
	for i := range 2 {
		if i == 1 {
			content[len(content)/2] ^= 0xff
		}
		if err := os.WriteFile(filepath.Join(e.dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
		e.rescan(t)
		if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
			t.Fatalf("upload %d: %+v", i, out)
		}
		e.pull(t)
	}
	ent, err := e.cl.Entry(context.Background(), name)
	if err != nil || ent.SHA256 != chunk.SumHex(content) {
		t.Fatalf("%s on the server: %+v, %v", name, ent, err)
	}
}

// The plan's upload of an edited file (one too small to pre-upload) sends its new
// blocks as patches of the blocks they replace too.
func TestEditedBlockIsUploadedAsAPatch(t *testing.T) {
	e := newEnv(t)
	cs := &countingServer{Server: e.x.Server, puts: map[string]int{}}
	e.x.Server = cs
	uploadAndEdit(t, e, "doc.bin", 3<<20)
	if cs.patched == 0 || cs.patchBytes >= cs.patched*2*proto.SumChunk {
		t.Fatalf("%d blocks sent as patches, %d bytes; want the edit's, under %d bytes each", cs.patched, cs.patchBytes, 2*proto.SumChunk)
	}
}

// A file rewritten through (every block new, none a patch of the one it replaces) asks
// for the sums of a few bases only: its other blocks go whole without asking.
func TestRewrittenFileStopsAskingForPatches(t *testing.T) {
	e := newEnv(t)
	cs := &countingServer{Server: e.x.Server, puts: map[string]int{}}
	e.x.Server = cs
	p := filepath.Join(e.dir, "doc.bin")
	var blocks int
	for i := range 2 {
		content := make([]byte, 16<<20)
		_, _ = rand.NewChaCha8([32]byte{byte(i)}).Read(content)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		blocks = len(blocksOf(t, content))
		e.rescan(t)
		if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
			t.Fatalf("upload %d: %+v", i, out)
		}
		e.pull(t)
	}
	if cs.patched != 0 || cs.sums == 0 || cs.sums > blocks/2 {
		t.Fatalf("%d sums asked, %d patches sent for a file rewritten through, of %d blocks; want a few asks, no patch",
			cs.sums, cs.patched, blocks)
	}
}
