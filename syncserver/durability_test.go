package syncserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// syncWatch records the blocks a commit syncs, and whether the entry was already
// visible in the metadata store at that moment.
type syncWatch struct {
	*blobs.Store
	st   store.Store
	path string

	mu            sync.Mutex
	synced        map[string]bool
	visibleAtSync bool
	syncCalls     int
	failNext      bool
}

func (w *syncWatch) Sync(hashes []string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncCalls++
	if _, err := w.st.Get(context.Background(), w.path); !errors.Is(err, store.ErrNotFound) {
		w.visibleAtSync = true
	}
	if w.failNext {
		w.failNext = false
		return errors.New("disk on fire")
	}
	for _, h := range hashes {
		w.synced[h] = true
	}
	return w.Store.Sync(hashes)
}

func TestCommitSyncsItsBlocksBeforeApplying(t *testing.T) {
	st := openStore(t)
	bs, err := blobs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &syncWatch{Store: bs, st: st, path: "big.bin", synced: map[string]bool{}}
	srv, err := New(Config{GCInterval: -1}, st, w, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Shutdown(); hs.Close() })
	e := &testEnv{t: t, srv: srv, http: hs, store: st, blocks: bs}

	content := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes, 3 blocks
	it := proto.CommitItem{Path: "big.bin", Type: proto.TypeFile, Size: int64(len(content)),
		Mode: 0o644, MTimeNs: 1, SHA256: sha(content)}
	for off := 0; off < len(content); off += 256 << 10 {
		part := content[off:min(off+256<<10, len(content))]
		it.Blocks = append(it.Blocks, proto.Block{Hash: e.putBlock(part), Size: int64(len(part))})
	}

	// A failing sync fails the commit and applies nothing.
	w.failNext = true
	before := e.snapshot()
	code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{it}}, nil)
	if code < 500 {
		t.Fatalf("commit with a failing sync: %d %s; want a 5xx", code, raw)
	}
	if after := e.snapshot(); after.seq != before.seq || after.audit != before.audit {
		t.Fatalf("a commit whose blocks could not be synced changed the store: %+v → %+v", before, after)
	}

	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.visibleAtSync {
		t.Fatal("the entry was visible before its blocks were synced")
	}
	for _, b := range it.Blocks {
		if !w.synced[b.Hash] {
			t.Fatalf("block %s of the commit was not synced", b.Hash[:8])
		}
	}
}
