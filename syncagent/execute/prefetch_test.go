package execute

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// prefetchPair is a writer that pre-uploads large files and a reader, on one server.
type prefetchPair struct {
	up, down *env
}

func newPrefetchPair(t *testing.T) *prefetchPair {
	t.Helper()
	url, _ := testserver.Start(t, t.TempDir(), nil)
	up, down := newEnvOn(t, url), newEnvOn(t, url)
	pre := &Preupload{Server: up.x.Server, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Counters: up.x.Counters,
		Base: up.x.State.RemoteVersion}
	up.scan.Blocks = up.x.State.LocalBlockSums
	up.scan.Preupload = pre.File
	up.x.Preupload = pre
	return &prefetchPair{up: up, down: down}
}

// write makes the writer's file name hold content and indexes it: its blocks reach the
// server in an upload stream named after the file, not committed.
func (pp *prefetchPair) write(t *testing.T, name string, content []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(pp.up.dir, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
	pp.up.rescan(t)
}

// upload waits until the server lists the upload of name with size bytes.
func (pp *prefetchPair) upload(t *testing.T, name string, size int64) proto.Upload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var after int64
	for {
		resp, err := pp.down.cl.Uploads(ctx, after, 2*time.Second)
		if err != nil {
			t.Fatalf("uploads: %v", err)
		}
		for _, u := range resp.Uploads {
			if u.Path == name && u.Size == size {
				return u
			}
		}
		after = resp.Last
	}
}

// waitBytesDown waits until the reader fetched n bytes from the server.
func (pp *prefetchPair) waitBytesDown(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for pp.down.x.Counters.BytesDown.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the reader fetched %d bytes; want %d", pp.down.x.Counters.BytesDown.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// prefetched writes content to the writer's file name, waits for its upload to be
// listed, prefetches it on the reader and waits until every byte was fetched.
func (pp *prefetchPair) prefetched(t *testing.T, name string, content []byte) proto.Upload {
	t.Helper()
	pp.write(t, name, content)
	up := pp.upload(t, name, int64(len(content)))
	before := pp.down.x.Counters.BytesDown.Load()
	if !pp.down.x.Prefetch(context.Background(), up) {
		t.Fatalf("prefetch of upload %+v not started", up)
	}
	pp.waitBytesDown(t, before+int64(len(content)))
	return up
}

// synced writes content to the writer's file name, commits it, and downloads it on the
// reader.
func (pp *prefetchPair) synced(t *testing.T, name string, content []byte) {
	t.Helper()
	pp.write(t, name, content)
	if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	pp.up.pull(t)
	pp.download(t, name, content)
}

// download pulls the server's entries and runs the reader's plan; it checks that
// name holds content and that no temp file is left.
func (pp *prefetchPair) download(t *testing.T, name string, content []byte) {
	t.Helper()
	pp.down.pull(t)
	pp.down.rescan(t)
	if out := pp.down.run(t, pp.down.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("download: %+v", out)
	}
	got, err := os.ReadFile(filepath.Join(pp.down.dir, name))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("%s on the reader: %d bytes, %v; want the %d written", name, len(got), err, len(content))
	}
	pp.down.x.StopPrefetches()
	noTempFiles(t, pp.down.dir)
}

func randomContent(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// A reader copies a large file while it is uploaded: the download of its commit takes
// the copy over and fetches nothing again. With and without direct writes.
func TestUploadIsPrefetchedBeforeItsCommit(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) { uploadPrefetched(t, direct) })
	}
}

func uploadPrefetched(t *testing.T, direct bool) {
	pp := newPrefetchPair(t)
	pp.down.x.DirectIO = direct
	content := randomContent(1, PreuploadMin+3<<20)
	pp.write(t, "big.bin", content)
	up := pp.upload(t, "big.bin", int64(len(content)))
	if !pp.down.x.Prefetch(context.Background(), up) {
		t.Fatal("prefetch not started")
	}
	if pp.down.x.Prefetch(context.Background(), up) {
		t.Fatal("a second prefetch of the same path started")
	}
	pp.waitBytesDown(t, int64(len(content))) // all of it, before the commit
	if _, err := pp.up.cl.Entry(context.Background(), "big.bin"); err == nil {
		t.Fatal("big.bin committed before the writer's plan ran")
	}
	if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	pp.download(t, "big.bin", content)
	if got := pp.down.x.Counters.BytesDown.Load(); got != int64(len(content)) {
		t.Errorf("the reader fetched %d bytes in all; want the file's %d once", got, len(content))
	}
	// The landed file's blocks are indexed with their fast sums, as a download's.
	if _, sums, err := pp.down.x.State.LocalBlockSums("big.bin"); err != nil || len(sums.Fast) < 8 {
		t.Errorf("fast sums of the landed file: %d, %v", len(sums.Fast), err)
	}
}

// A prefetch whose blocks are not the first ones of the committed list (the writer
// changed the file before its commit) is dropped, and the file downloaded anew.
func TestPrefetchOfOtherBlocksIsNotUsed(t *testing.T) {
	pp := newPrefetchPair(t)
	first := randomContent(2, PreuploadMin+1<<20)
	pp.prefetched(t, "big.bin", first)
	second := randomContent(3, PreuploadMin+2<<20)
	pp.write(t, "big.bin", second)
	if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	pp.download(t, "big.bin", second)
	if got, want := pp.down.x.Counters.BytesDown.Load(), int64(len(first)+len(second)); got != want {
		t.Errorf("the reader fetched %d bytes; want the prefetch's %d and the new content's %d", got, len(first), len(second))
	}
}

// runsServer counts the answers to UploadBlocks that came as runs and as blocks, and
// the blocks fetched as deltas and whole.
type runsServer struct {
	Server
	runs, plain    atomic.Int64
	deltas, wholes atomic.Int64
}

func (r *runsServer) GetBlockDelta(ctx context.Context, hash, baseHash string, base []byte) ([]byte, error) {
	r.deltas.Add(1)
	return r.Server.GetBlockDelta(ctx, hash, baseHash, base)
}

func (r *runsServer) GetBlock(ctx context.Context, hash string) ([]byte, error) {
	r.wholes.Add(1)
	return r.Server.GetBlock(ctx, hash)
}

func (r *runsServer) GetBlocksInto(ctx context.Context, hashes []string, buf []byte) ([][]byte, error) {
	r.wholes.Add(int64(len(hashes)))
	return r.Server.GetBlocksInto(ctx, hashes, buf)
}

func (r *runsServer) UploadBlocks(ctx context.Context, no int64, from int, base int64, wait time.Duration) (*proto.UploadBlocksResponse, error) {
	resp, err := r.Server.UploadBlocks(ctx, no, from, base, wait)
	switch {
	case err != nil:
	case resp.Runs != nil:
		r.runs.Add(1)
	case len(resp.Blocks) > 0:
		r.plain.Add(1)
	}
	return resp, err
}

// An edit of a file the reader holds is prefetched from its local copy: the upload's
// unchanged blocks are listed as stretches of the version it holds and read from its
// file, the changed one comes as a delta of the block it replaces, and the commit's
// download fetches nothing more.
func TestEditIsPrefetchedFromTheLocalCopy(t *testing.T) {
	pp := newPrefetchPair(t)
	content := randomContent(8, PreuploadMin+3<<20)
	pp.synced(t, "big.bin", content)
	x := pp.down.x
	rs := &runsServer{Server: x.Server}
	x.Server = rs
	down, done := x.Counters.BytesDown.Load(), x.Counters.BytesDone.Load()

	content[len(content)/2] ^= 0xff
	pp.write(t, "big.bin", content)
	up := pp.upload(t, "big.bin", int64(len(content)))
	if !x.Prefetch(context.Background(), up) {
		t.Fatal("prefetch not started")
	}
	deadline := time.Now().Add(20 * time.Second)
	for x.Counters.BytesDone.Load()-done < int64(len(content)) {
		if time.Now().After(deadline) {
			t.Fatalf("the prefetch took %d bytes of the edit; want all %d", x.Counters.BytesDone.Load()-done, len(content))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload of the edit: %+v", out)
	}
	pp.download(t, "big.bin", content)
	if got := x.Counters.BytesDown.Load() - down; got <= 0 || got > chunk.MaxSize {
		t.Errorf("the reader fetched %d bytes of the edit from the server; want the changed block", got)
	}
	if rs.deltas.Load() != 1 || rs.wholes.Load() != 0 {
		t.Errorf("the edit's blocks came as %d deltas and %d whole; want the changed one as a delta of the one it replaces",
			rs.deltas.Load(), rs.wholes.Load())
	}
	if got := x.Counters.BytesDone.Load() - done; got != int64(len(content)) {
		t.Errorf("the reader took %d bytes for the edit; want the file's %d once", got, len(content))
	}
	if rs.runs.Load() == 0 || rs.plain.Load() != 0 {
		t.Errorf("%d answers as runs and %d as blocks; want runs only", rs.runs.Load(), rs.plain.Load())
	}
}

// A later upload of a path (its writer started again: the file changed while it was
// sent) replaces the prefetch of the earlier one, and its commit takes the new copy
// over.
func TestLaterUploadOfAPathReplacesItsPrefetch(t *testing.T) {
	pp := newPrefetchPair(t)
	first := randomContent(6, PreuploadMin+1<<20)
	up1 := pp.prefetched(t, "big.bin", first)
	second := randomContent(7, PreuploadMin+2<<20)
	pp.write(t, "big.bin", second)
	up2 := pp.upload(t, "big.bin", int64(len(second)))
	if up2.No == up1.No || !pp.down.x.Prefetch(context.Background(), up2) {
		t.Fatalf("prefetch of the later upload %+v (earlier %+v) not started", up2, up1)
	}
	if pp.down.x.Prefetch(context.Background(), up2) {
		t.Fatal("a second prefetch of the same upload started")
	}
	if entries, err := os.ReadDir(filepath.Join(pp.down.dir, StageDir)); err != nil || len(entries) != 1 {
		t.Fatalf("staging dir holds %d files (%v); want the later prefetch's one", len(entries), err)
	}
	pp.waitBytesDown(t, int64(len(first)+len(second)))
	if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	pp.download(t, "big.bin", second)
	if got, want := pp.down.x.Counters.BytesDown.Load(), int64(len(first)+len(second)); got != want {
		t.Errorf("the reader fetched %d bytes; want both prefetches' %d and nothing after the commit", got, want)
	}
}

// An upload that sends more than the size it was announced with is not followed past
// that size: the prefetch stops, is not used, and the file is downloaded in full.
func TestPrefetchStopsAtTheAnnouncedSize(t *testing.T) {
	pp := newPrefetchPair(t)
	content := randomContent(4, PreuploadMin+1<<20)
	pp.write(t, "big.bin", content)
	up := pp.upload(t, "big.bin", int64(len(content)))
	up.Size = 1 << 20 // less than the first blocks
	if !pp.down.x.Prefetch(context.Background(), up) {
		t.Fatal("prefetch not started")
	}
	p := pp.down.x.pre.m["big.bin"]
	<-p.done
	if p.err == nil || p.a.n != 0 {
		t.Fatalf("prefetch past its announced size: %d blocks written, err %v", p.a.n, p.err)
	}
	if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	pp.download(t, "big.bin", content)
}

// A prefetch whose upload ended without a download taking it (a commit refused, an
// unknown upload) is removed once prefetchKeep passed; one still running is not.
func TestUnusedPrefetchIsRemoved(t *testing.T) {
	pp := newPrefetchPair(t)
	content := randomContent(5, PreuploadMin+1<<20)
	pp.write(t, "big.bin", content)
	up := pp.upload(t, "big.bin", int64(len(content)))
	x := pp.down.x
	if !x.Prefetch(context.Background(), up) || !x.Prefetch(context.Background(), proto.Upload{No: up.No + 1000, Path: "gone.bin", Size: 1 << 30}) {
		t.Fatal("prefetches not started")
	}
	<-x.pre.m["gone.bin"].done // the server knows no such upload: ended at once
	pp.waitBytesDown(t, int64(len(content)))
	x.ExpirePrefetches(time.Now().Add(prefetchKeep + time.Second))
	if _, ok := x.pre.m["gone.bin"]; ok {
		t.Error("the prefetch of an unknown upload was kept past prefetchKeep")
	}
	if _, ok := x.pre.m["big.bin"]; !ok {
		t.Error("the prefetch of an upload in progress was removed")
	}
	entries, err := os.ReadDir(filepath.Join(pp.down.dir, StageDir))
	if err != nil || len(entries) != 1 {
		t.Errorf("staging dir holds %d files (%v); want the running prefetch's one", len(entries), err)
	}
	x.StopPrefetches()
	noTempFilesExceptStage(t, pp.down.dir)
}

// noTempFilesExceptStage is noTempFiles for a folder whose staging dir may be left,
// empty.
func noTempFilesExceptStage(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, StageDir))
	if err == nil && len(entries) > 0 {
		t.Errorf("staging dir holds %d files", len(entries))
	}
	_ = os.Remove(filepath.Join(dir, StageDir))
	noTempFiles(t, dir)
}
