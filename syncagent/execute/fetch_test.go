package execute

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// largeFiles writes files of about size bytes (several blocks each) through an
// uploading agent and returns them.
func largeFiles(t *testing.T, url string, n, size int) map[string][]byte {
	t.Helper()
	up := newEnvOn(t, url)
	want := map[string][]byte{}
	for i := range n {
		// Random bytes: the chunker cuts them into blocks of its average size.
		data := make([]byte, size+i*4099)
		_, _ = rand.NewChaCha8([32]byte{byte(i)}).Read(data)
		name := fmt.Sprintf("large%d.bin", i)
		want[name] = data
		if err := os.WriteFile(filepath.Join(up.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up.rescan(t)
	if out := up.run(t, up.plan()); out.Failed != 0 || out.Done != n {
		t.Fatalf("upload: %+v", out)
	}
	return want
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// blocksOf returns the blocks the chunker cuts b into.
func blocksOf(t *testing.T, b []byte) []proto.Block {
	t.Helper()
	res, err := chunk.Hash(bytesReader(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Blocks
}

// A file of several blocks comes in a few requests of up to fetchGroupBytes, not one
// request per block; from a server without the batched call, one request per block.
func TestLargeFileBlocksComeInGroups(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("oldServer=%v", old), func(t *testing.T) {
			url, _ := testserver.Start(t, t.TempDir(), nil)
			want := largeFiles(t, url, 2, 6<<20)
			var rc routeCounter
			down := newEnvOn(t, rc.start(t, url, old))
			down.pull(t)
			down.rescan(t)
			if out := down.run(t, down.plan()); out.Failed != 0 || out.Done != len(want) {
				t.Fatalf("download: %+v", out)
			}
			checkTree(t, down.dir, want)
			var blocks, bytes int
			for _, data := range want {
				res, err := chunk.Hash(bytesReader(data), nil)
				if err != nil {
					t.Fatal(err)
				}
				blocks += len(res.Blocks)
				bytes += len(data)
			}
			b, s := int(rc.batched.Load()), int(rc.single.Load())
			if old {
				// The groups in flight when the refusal comes back may each have
				// tried the call; then every block is asked for on its own.
				if b > groupsAhead*len(want) || s != blocks || !down.x.noBatch.Load() {
					t.Errorf("%d batched and %d single requests for %d blocks; want at most %d batched, then %d single",
						b, s, blocks, groupsAhead*len(want), blocks)
				}
				return
			}
			// A group is one request; one of a single block (a file's last, say) is a
			// plain GET.
			if most := bytes/fetchGroupBytes + 2*len(want); b+s > most || b < len(want) || s > len(want) {
				t.Errorf("%d batched and %d single requests for %d blocks of %d bytes; want %d–%d requests, at most %d single",
					b, s, blocks, bytes, len(want), most, len(want))
			}
		})
	}
}

// A group's blocks come in one buffer, which goes back once every one of them is
// written: buffers scribbled on as they go back, the files still land whole.
func TestGroupBufferGoesBackOnceItsBlocksAreWritten(t *testing.T) {
	var returned atomic.Int64
	returnGroupBuf = func(g *groupBuf) {
		returned.Add(1)
		clear(g.b)
	}
	t.Cleanup(func() { returnGroupBuf = nil })
	url, _ := testserver.Start(t, t.TempDir(), nil)
	want := largeFiles(t, url, 3, 5<<20)
	down := newEnvOn(t, url)
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Done != len(want) {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, want)
	if n := returned.Load(); n < int64(len(want)*5<<20/fetchGroupBytes) {
		t.Errorf("%d group buffers went back for %d files of 5 MiB; want one per group", n, len(want))
	}
}

// A file whose blocks are partly held by a local file takes those from it and asks
// the server only for the others, in groups.
func TestGroupTakesLocalBlocksAndFetchesTheRest(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	want := largeFiles(t, url, 1, 5<<20)
	var rc routeCounter
	down := newEnvOn(t, rc.start(t, url, false))
	// The reader already holds the first 3 MiB of the file, under another name.
	data := want["large0.bin"]
	if err := os.WriteFile(filepath.Join(down.dir, "head.bin"), data[:3<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	down.rescan(t)
	down.pull(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Done < 1 {
		t.Fatalf("download: %+v", out)
	}
	got, err := os.ReadFile(filepath.Join(down.dir, "large0.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("large0.bin: %d bytes, %v", len(got), err)
	}
	if reused := down.x.Counters.BytesReused.Load(); reused < 2<<20 {
		t.Errorf("%d bytes taken from the local file; want most of its 3 MiB", reused)
	}
	if down := down.x.Counters.BytesDown.Load(); down > int64(len(data))-2<<20 {
		t.Errorf("%d bytes downloaded; want only the part no local file holds", down)
	}
	held := map[string]bool{}
	for _, b := range blocksOf(t, data[:3<<20]) {
		held[b.Hash] = true
	}
	remote := 0
	for _, b := range blocksOf(t, data) {
		if !held[b.Hash] {
			remote++
		}
	}
	if n := int(rc.single.Load() + rc.batched.Load()); n >= remote || n == 0 {
		t.Errorf("%d requests for the %d blocks no local file holds; want fewer, in groups", n, remote)
	}
}

// A block garbled on the wire (or by the server) fails the client's check of its hash:
// the group's blocks are then fetched one by one, and only the right content lands.
func TestGarbledBlockIsFetchedAgain(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	want := largeFiles(t, url, 1, 3<<20)
	var garbled atomic.Bool
	down := newEnvOn(t, interpose(t, url, func(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
		if r.URL.Path != proto.RouteBlocksGet || garbled.Load() {
			proxy.ServeHTTP(w, r)
			return
		}
		r.Header.Del("Accept-Encoding") // the blocks' bytes as they are on the wire
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && len(body) > 0 && garbled.CompareAndSwap(false, true) {
			body[len(body)/2] ^= 0xff
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("outcome %+v", out)
	}
	if !garbled.Load() {
		t.Fatal("no batch of blocks was garbled")
	}
	checkTree(t, down.dir, want)
	noTempFiles(t, down.dir)
}

// A file edited elsewhere is rebuilt from its version on disk, read at the offsets its
// index gives; only the changed blocks come from the server. A block of that version
// changed in place since it was indexed (its stat key kept) fails its check (by the
// fast sums the download recorded) and comes from the server too.
func TestEditedFileIsRebuiltFromItsPreviousVersion(t *testing.T) {
	for _, changedInPlace := range []bool{false, true} {
		t.Run(fmt.Sprintf("changedInPlace=%v", changedInPlace), func(t *testing.T) {
			url, _ := testserver.Start(t, t.TempDir(), nil)
			want := largeFiles(t, url, 1, 6<<20)
			reader, writer := newEnvOn(t, url), newEnvOn(t, url)
			for _, e := range []*env{reader, writer} {
				e.pull(t)
				e.rescan(t)
				if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
					t.Fatalf("first download: %+v", out)
				}
				e.rescan(t)
			}
			data := want["large0.bin"]
			before := blocksOf(t, data)
			checkFastSums(t, reader, "large0.bin", data)
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(filepath.Join(writer.dir, "large0.bin"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			writer.rescan(t)
			if out := writer.run(t, writer.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("upload of the edit: %+v", out)
			}
			// What must come from the server: the blocks the edit made, and with a
			// change in place the reader's first block too.
			held := map[string]bool{}
			for _, b := range before {
				held[b.Hash] = true
			}
			if changedInPlace {
				editInPlace(t, filepath.Join(reader.dir, "large0.bin"), 0, []byte("changed in place"))
				held[before[0].Hash] = false
			}
			var wantDown int64
			for _, b := range blocksOf(t, data) {
				if !held[b.Hash] {
					wantDown += b.Size
				}
			}
			reader.pull(t)
			down, reused := reader.x.Counters.BytesDown.Load(), reader.x.Counters.BytesReused.Load()
			if out := reader.run(t, reader.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("download of the edit: %+v", out)
			}
			checkTree(t, reader.dir, want)
			checkFastSums(t, reader, "large0.bin", data)
			down, reused = reader.x.Counters.BytesDown.Load()-down, reader.x.Counters.BytesReused.Load()-reused
			if down != wantDown || reused != int64(len(data))-wantDown {
				t.Errorf("%d bytes downloaded and %d reused of %d; want %d downloaded, the rest reused",
					down, reused, len(data), wantDown)
			}
		})
	}
}

// checkFastSums checks that the index of e holds, for the file p, the blocks of data
// and their fast sums.
func checkFastSums(t *testing.T, e *env, p string, data []byte) {
	t.Helper()
	want, err := chunk.Hash(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	blocks, sums, err := e.x.State.LocalBlockSums(p)
	if err != nil || !slices.Equal(blocks, want.Blocks) || !slices.Equal(sums.Fast, want.Fast) {
		t.Fatalf("index of %s: %d blocks, %d fast sums, %v; want its %d blocks and their sums", p, len(blocks), len(sums.Fast), err, len(want.Blocks))
	}
}
