package syncserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// lockedBuffer is a log sink tests read while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newLoggedEnv is newEnv with the server's debug log kept.
func newLoggedEnv(t *testing.T) (*testEnv, *lockedBuffer) {
	t.Helper()
	st := openStore(t)
	bs, err := blobs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := New(Config{GCInterval: -1}, st, bs, nil, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Shutdown(); hs.Close() })
	return &testEnv{t: t, srv: srv, http: hs, store: st, blocks: bs}, logs
}

var hashedWhileUploaded = regexp.MustCompile(`msg=verify path=(\S+) blocks=(\d+) hashedWhileUploaded=(\d+)`)

// streamed returns how many blocks of path's last verification the upload stream had
// hashed already.
func streamed(t *testing.T, logs *lockedBuffer, path string) int {
	t.Helper()
	n := -1
	for _, m := range hashedWhileUploaded.FindAllStringSubmatch(logs.String(), -1) {
		if m[1] == path {
			n, _ = strconv.Atoi(m[3])
		}
	}
	if n < 0 {
		t.Fatalf("no verification of %s logged", path)
	}
	return n
}

// randomContent returns n random bytes.
func randomContent(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// fileItem cuts content into blocks of size bs and returns its commit item and blocks.
func fileItem(path string, content []byte, bs int) (proto.CommitItem, [][]byte) {
	it := proto.CommitItem{Path: path, Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644, MTimeNs: 1, SHA256: sha(content)}
	var parts [][]byte
	for off := 0; off < len(content); off += bs {
		part := content[off:min(off+bs, len(content))]
		parts = append(parts, part)
		it.Blocks = append(it.Blocks, proto.Block{Hash: sha(part), Size: int64(len(part))})
	}
	return it, parts
}

func (e *testEnv) putStreamBlock(b []byte, stream string, off int) {
	e.t.Helper()
	code, raw := e.do("PUT", fmt.Sprintf("%s%s?stream=%s&off=%d", proto.RouteBlocks, sha(b), stream, off), b, nil)
	if code != http.StatusCreated && code != http.StatusOK {
		e.t.Fatalf("PUT block in stream: %d %s", code, raw)
	}
}

func TestCommitUsesTheHashOfItsUploadStream(t *testing.T) {
	e, logs := newLoggedEnv(t)
	content := randomContent(t, 1<<20+12345)
	const bs = 100 << 10
	it, parts := fileItem("big.bin", content, bs)
	// Out of order, as concurrent uploads arrive.
	for _, i := range []int{2, 0, 1, 5, 4, 3, 8, 6, 7, 9, 10} {
		e.putStreamBlock(parts[i], "s1", i*bs)
	}
	it.Stream = "s1"
	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	if n := streamed(t, logs, "big.bin"); n != len(parts) {
		t.Fatalf("the stream had hashed %d of %d blocks at commit; want all", n, len(parts))
	}

	// A stream that stops short: the rest is hashed at commit, and a wrong sha256 is
	// refused whatever part the stream did. Its blocks are read back from the store: the
	// bytes the streams may hold are spent.
	e.srv.streams.held.Add(heldBudget)
	content[0] ^= 1
	it2, parts2 := fileItem("two.bin", content, bs)
	for i := 0; i < len(parts2)-3; i++ {
		e.putStreamBlock(parts2[i], "s2", i*bs)
	}
	for _, p := range parts2[len(parts2)-3:] {
		e.putBlock(p)
	}
	it2.Stream = "s2"
	wrong := it2
	wrong.SHA256 = sha([]byte("not this"))
	before := e.snapshot()
	if r := e.commit(wrong)[0]; r.Status != proto.StatusError {
		t.Fatalf("commit with a wrong sha256 over a stream: %+v; want an item error", r)
	}
	if after := e.snapshot(); after.seq != before.seq {
		t.Fatal("a refused commit changed the store")
	}
	if n := streamed(t, logs, "two.bin"); n != len(parts2)-3 {
		t.Fatalf("the stream had hashed %d blocks; want %d", n, len(parts2)-3)
	}
	// The stream was taken by that commit: the next one hashes everything, and passes.
	if r := e.commit(it2)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	if n := streamed(t, logs, "two.bin"); n != 0 {
		t.Fatalf("a used stream served again (%d blocks)", n)
	}
	e.srv.streams.held.Add(-heldBudget)

	// A stream whose blocks are not the list's (another order): not used, and the
	// commit is checked in full.
	content[1] ^= 1
	it3, parts3 := fileItem("three.bin", content, bs)
	e.putStreamBlock(parts3[1], "s3", 0)
	e.putStreamBlock(parts3[0], "s3", int(it3.Blocks[1].Size))
	for _, p := range parts3[2:] {
		e.putBlock(p)
	}
	it3.Stream = "s3"
	if r := e.commit(it3)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	if n := streamed(t, logs, "three.bin"); n != 0 {
		t.Fatalf("a stream in another order served %d blocks", n)
	}
	if held := e.srv.streams.held.Load(); held != 0 {
		t.Errorf("the streams still count %d bytes held after their commits", held)
	}
}

func TestBadStreamRefused(t *testing.T) {
	e := newEnv(t)
	b := []byte("some block")
	before := e.snapshot()
	for _, q := range []string{"stream=&off=0", "stream=a/b&off=0", "stream=ok&off=-1", "stream=ok&off=x", "stream=ok"} {
		if code, raw := e.do("PUT", proto.RouteBlocks+sha(b)+"?"+q, b, nil); code != http.StatusBadRequest {
			t.Errorf("PUT ?%s: %d %s; want 400", q, code, raw)
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused PUTs changed the store: %+v → %+v", before, after)
	}
	it := inlineItem("a.txt", 0, []byte("x"))
	it.Stream = "no spaces please"
	if r := e.commit(it)[0]; r.Status != proto.StatusError {
		t.Fatalf("commit with a bad stream name: %+v; want an item error", r)
	}
}

var resumedAt = regexp.MustCompile(`msg=verify path=(\S+) blocks=\d+ hashedWhileUploaded=\d+ resumedAt=(\d+)`)

func lastResumedAt(t *testing.T, logs *lockedBuffer, path string) int {
	t.Helper()
	n := -1
	for _, m := range resumedAt.FindAllStringSubmatch(logs.String(), -1) {
		if m[1] == path {
			n, _ = strconv.Atoi(m[2])
		}
	}
	if n < 0 {
		t.Fatalf("no verification of %s logged", path)
	}
	return n
}

func TestEditedFileResumesFromTheHashOfItsUnchangedHead(t *testing.T) {
	defer func(v int64) { checkpointEvery = v }(checkpointEvery)
	const bs = 100 << 10
	checkpointEvery = 3 * bs // after every third block
	e, logs := newLoggedEnv(t)
	content := randomContent(t, 20*bs)
	commitAll := func(c []byte, mutate func(*proto.CommitItem)) proto.ItemResult {
		it, parts := fileItem("f.bin", c, bs)
		for _, p := range parts {
			e.putBlock(p)
		}
		if mutate != nil {
			mutate(&it)
		}
		ent, err := e.store.Get(context.Background(), "f.bin")
		if err == nil {
			it.BaseSeq = ent.Seq
		}
		return e.commit(it)[0]
	}
	if r := commitAll(content, nil); r.Status != proto.StatusOK {
		t.Fatalf("v1: %+v", r)
	}
	if n := lastResumedAt(t, logs, "f.bin"); n != 0 {
		t.Fatalf("v1 resumed at %d", n)
	}
	// Block 16 changes: blocks 0–15 are v1's, and there is a checkpoint after 15.
	content[16*bs+5] ^= 1
	if r := commitAll(content, nil); r.Status != proto.StatusOK {
		t.Fatalf("v2: %+v", r)
	}
	if n := lastResumedAt(t, logs, "f.bin"); n != 15 {
		t.Fatalf("v2 resumed at block %d; want 15", n)
	}
	// The same head under a wrong sha256 is still refused.
	content[19*bs] ^= 1
	if r := commitAll(content, func(it *proto.CommitItem) { it.SHA256 = sha([]byte("wrong")) }); r.Status != proto.StatusError {
		t.Fatalf("wrong sha256 over a checkpointed head: %+v; want an item error", r)
	}
	if n := lastResumedAt(t, logs, "f.bin"); n < 15 {
		t.Fatalf("resumed at %d; want at least 15", n)
	}
	// A change in the first block: nothing to resume from, and the content is right.
	content[0] ^= 1
	if r := commitAll(content, nil); r.Status != proto.StatusOK {
		t.Fatalf("v3: %+v", r)
	}
	if n := lastResumedAt(t, logs, "f.bin"); n != 0 {
		t.Fatalf("v3 resumed at %d; want 0", n)
	}
	code, body := e.do("GET", proto.RouteFile+"?path=f.bin", nil, nil)
	if code != http.StatusOK || !bytes.Equal(body, content) {
		t.Fatalf("GET f.bin: %d, %d bytes; want the last content", code, len(body))
	}
}

// The bytes a stream holds for blocks waiting for an earlier one are given back when the
// stream goes: evicted for newer streams, or broken by too many waiting blocks.
func TestStreamsGiveBackTheBytesTheyHold(t *testing.T) {
	hs := newHashStreams(nil, nil)
	block := func(n int) (proto.Block, *[]byte) {
		data := hs.hold()
		if data == nil {
			t.Fatal("hold refused a buffer within the budget")
		}
		*data = append(*data, make([]byte, n)...)
		return proto.Block{Hash: sha(*data), Size: int64(n)}, data
	}
	// Offset 10 waits for the bytes before it, which never come.
	for i := range 3 {
		b, data := block(10)
		hs.add(streamKey{"agent", fmt.Sprintf("old%d", i)}, 10, b, data)
	}
	if got := hs.held.Load(); got != 3*maxHeldBlock {
		t.Fatalf("held %d bytes; want 3 buffers", got)
	}
	for i := range maxStreams {
		hs.get(streamKey{"agent", fmt.Sprintf("new%d", i)}, true)
	}
	if got := hs.held.Load(); got != 0 {
		t.Errorf("held %d bytes after the streams were evicted; want 0", got)
	}
	// A block whose bytes are not its size is not held.
	b, data := block(10)
	b.Size = 11
	hs.add(streamKey{"agent", "short"}, 10, b, data)
	if got := hs.held.Load(); got != 0 {
		t.Errorf("held %d bytes of a block whose size does not match", got)
	}
}

// countingOpens counts the blocks read from a block store.
type countingOpens struct {
	BlockStore
	n atomic.Int32
}

func (c *countingOpens) Open(hash string) (io.ReadSeekCloser, int64, error) {
	c.n.Add(1)
	return c.BlockStore.Open(hash)
}

// streamStored names count blocks of version seq of path, from its block from on, as
// the stream's content at off.
func (e *testEnv) streamStored(stream string, off int64, path string, seq int64, from, count int) (int, proto.StreamBlocksResponse, []byte) {
	e.t.Helper()
	var resp proto.StreamBlocksResponse
	req := proto.StreamBlocksRequest{Off: off, Base: proto.ContentRef{Path: path, Seq: seq}, From: from, Count: count}
	code, raw := e.do("POST", proto.RouteStreams+stream+proto.StreamBlocksSuffix, req, &resp)
	return code, resp, raw
}

// An edit's upload stream names the unchanged blocks by reference: the stream hashes
// them before the commit, from the checkpoint of the unchanged head on (the head is
// not read), and the commit finds the whole file hashed.
func TestStoredBlocksContinueAStream(t *testing.T) {
	defer func(v int64) { checkpointEvery = v }(checkpointEvery)
	const bs = 100 << 10
	checkpointEvery = 3 * bs // after every third block
	e, logs := newLoggedEnv(t)
	opens := &countingOpens{BlockStore: e.srv.streams.blocks}
	e.srv.streams.blocks = opens
	content := randomContent(t, 40*bs)
	it, parts := fileItem("f.bin", content, bs)
	for _, p := range parts {
		e.putBlock(p)
	}
	r := e.commit(it)[0]
	if r.Status != proto.StatusOK {
		t.Fatalf("v1: %+v", r)
	}

	content[30*bs+7] ^= 1 // block 30 changes
	it2, parts2 := fileItem("f.bin", content, bs)
	it2.BaseSeq, it2.Stream = r.Entry.Seq, "s2"
	if code, resp, raw := e.streamStored("s2", 0, "f.bin", r.Entry.Seq, 0, 30); code != http.StatusOK || resp.End != 30*bs {
		t.Fatalf("blocks 0–29 to the stream: %d %s", code, raw)
	}
	e.putStreamBlock(parts2[30], "s2", 30*bs)
	opens.n.Store(0)
	if code, resp, raw := e.streamStored("s2", 31*bs, "f.bin", r.Entry.Seq, 31, 9); code != http.StatusOK || resp.End != 40*bs {
		t.Fatalf("blocks 31–39 to the stream: %d %s", code, raw)
	}
	// Past the edit no checkpoint of v1 can serve: the blocks are hashed before the
	// commit asks, not held back for one.
	for deadline := time.Now().Add(10 * time.Second); opens.n.Load() < 9; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream read %d of the 9 blocks after the edit before the commit; want all", opens.n.Load())
		}
	}
	r2 := e.commit(it2)[0]
	if r2.Status != proto.StatusOK {
		t.Fatalf("v2: %+v", r2)
	}
	if n := streamed(t, logs, "f.bin"); n != len(parts2) {
		t.Fatalf("the stream had hashed %d of %d blocks at commit; want all", n, len(parts2))
	}
	// Blocks 0–29 end on a checkpoint of v1's list; block 30 came with its PUT.
	if n := opens.n.Load(); n != 9 {
		t.Fatalf("the stream read %d stored blocks; want the 9 after the edit", n)
	}

	// A wrong sha256 over a stream of stored blocks is refused all the same.
	wrong := it2
	wrong.BaseSeq, wrong.Stream, wrong.SHA256 = r2.Entry.Seq, "s3", sha([]byte("not this"))
	e.streamStored("s3", 0, "f.bin", r2.Entry.Seq, 0, 40)
	before := e.snapshot()
	if r := e.commit(wrong)[0]; r.Status != proto.StatusError {
		t.Fatalf("wrong sha256 over a stream of stored blocks: %+v; want an item error", r)
	}
	if after := e.snapshot(); after.seq != before.seq {
		t.Fatal("a refused commit changed the store")
	}
	if n := streamed(t, logs, "f.bin"); n != len(parts2) {
		t.Fatalf("the stream had hashed %d of %d blocks at the refused commit; want all", n, len(parts2))
	}
	code, body := e.do("GET", proto.RouteFile+"?path=f.bin", nil, nil)
	if code != http.StatusOK || !bytes.Equal(body, content) {
		t.Fatalf("GET f.bin: %d, %d bytes; want v2", code, len(body))
	}
}

func TestBadStoredBlocksRefused(t *testing.T) {
	e := newEnv(t)
	content := make([]byte, 4<<10)
	r := e.commitFile("f.bin", 0, content, 1<<10)
	d := e.commit(proto.CommitItem{Path: "d", Type: proto.TypeDir, Mode: 0o755})[0]
	if r.Status != proto.StatusOK || d.Status != proto.StatusOK {
		t.Fatalf("setup: %+v %+v", r, d)
	}
	seq := r.Entry.Seq
	if code, _, raw := e.streamStored("s", 0, "f.bin", seq, 0, 2); code != http.StatusOK {
		t.Fatalf("a good request: %d %s", code, raw)
	}
	before := e.snapshot()
	for _, c := range []struct {
		name   string
		stream string
		body   any
		want   int
	}{
		{"bad stream name", "a.b", proto.StreamBlocksRequest{Base: proto.ContentRef{Path: "f.bin", Seq: seq}, Count: 1}, http.StatusBadRequest},
		{"not JSON", "s", "{", http.StatusBadRequest},
		{"negative off", "s", proto.StreamBlocksRequest{Off: -1, Base: proto.ContentRef{Path: "f.bin", Seq: seq}, Count: 1}, http.StatusBadRequest},
		{"no seq", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "f.bin"}, Count: 1}, http.StatusBadRequest},
		{"bad path", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "../f.bin", Seq: seq}, Count: 1}, http.StatusBadRequest},
		{"negative from", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "f.bin", Seq: seq}, From: -1, Count: 1}, http.StatusBadRequest},
		{"no count", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "f.bin", Seq: seq}}, http.StatusBadRequest},
		{"past the list", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "f.bin", Seq: seq}, From: 3, Count: 2}, http.StatusBadRequest},
		{"no such version", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "f.bin", Seq: 99}, Count: 1}, http.StatusNotFound},
		{"a dir", "s", proto.StreamBlocksRequest{Off: 4 << 10, Base: proto.ContentRef{Path: "d", Seq: d.Entry.Seq}, Count: 1}, http.StatusBadRequest},
		{"a part already named", "s", proto.StreamBlocksRequest{Off: 1 << 10, Base: proto.ContentRef{Path: "f.bin", Seq: seq}, From: 1, Count: 1}, http.StatusConflict},
	} {
		code, raw := e.do("POST", proto.RouteStreams+c.stream+proto.StreamBlocksSuffix, c.body, nil)
		if code != c.want || !bytes.Contains(raw, []byte(`"error"`)) {
			t.Errorf("%s: %d %s; want %d with an error message", c.name, code, raw, c.want)
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused requests changed the store: %+v → %+v", before, after)
	}
}
