package agent

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/execute"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A running agent fetches a large file while another agent uploads it: its copy is
// done before the commit, which it does not make visible before the commit, and the
// download of the commit takes it over without fetching anything again.
func TestReaderFetchesAnUploadBeforeItsCommit(t *testing.T) {
	srv := startServer(t)
	reader := newAgent(t, srv, t.TempDir(), "reader", nil)
	runAgents(t, reader)
	cl, err := client.New(client.Options{BaseURL: srv.url, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	content := make([]byte, execute.PreuploadMin+1<<20)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(content)
	res, err := chunk.Hash(bytes.NewReader(content), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.OpenStream(ctx, "s1", "big.bin", int64(len(content))); err != nil {
		t.Fatal(err)
	}
	var off int64
	for _, b := range res.Blocks {
		if err := cl.PutStreamBlock(ctx, b.Hash, content[off:off+b.Size], false, "s1", off); err != nil {
			t.Fatal(err)
		}
		off += b.Size
	}
	deadline := time.Now().Add(30 * time.Second)
	for reader.counters.BytesDown.Load() < int64(len(content)) {
		if time.Now().After(deadline) {
			t.Fatalf("the reader fetched %d bytes of the upload; want all %d before its commit", reader.counters.BytesDown.Load(), len(content))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := filepath.Join(reader.cfg.Dir, "big.bin")
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("big.bin is on the reader before its commit: %v", err)
	}
	item := proto.CommitItem{Path: "big.bin", Type: proto.TypeFile, Size: res.Size, Mode: 0o644, MTimeNs: time.Now().UnixNano(),
		SHA256: res.SHA256, Blocks: res.Blocks, Stream: "s1"}
	if r, err := cl.Commit(ctx, []proto.CommitItem{item}); err != nil || r[0].Status != proto.StatusOK {
		t.Fatalf("commit: %v %+v", err, r)
	}
	for {
		got, err := os.ReadFile(p)
		if err == nil && bytes.Equal(got, content) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("big.bin on the reader: %d bytes, %v", len(got), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := reader.counters.BytesDown.Load(); got != int64(len(content)) {
		t.Errorf("the reader fetched %d bytes in all; want the file's %d once", got, len(content))
	}
}

// An agent prefetches only what it would download: a large file, on a valid path, in a
// mode that receives.
func TestPrefetchOnlyWhatWouldBeDownloaded(t *testing.T) {
	srv := startServer(t)
	cl, err := client.New(client.Options{BaseURL: srv.url, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	no, err := cl.OpenStream(context.Background(), "s1", "big.bin", execute.PreuploadMin)
	if err != nil {
		t.Fatal(err)
	}
	big := proto.Upload{No: no, Path: "big.bin", Size: execute.PreuploadMin}
	staged := func(a *Agent) int {
		entries, _ := os.ReadDir(filepath.Join(a.cfg.Dir, execute.StageDir))
		return len(entries)
	}
	sendOnly := newAgent(t, srv, t.TempDir(), "send", func(c *Config) { c.Mode = plan.SendOnly })
	sendOnly.prefetch(context.Background(), big)
	if n := staged(sendOnly); n != 0 {
		t.Errorf("a send-only agent prefetched: %d temp files", n)
	}
	a := newAgent(t, srv, t.TempDir(), "two-way", nil)
	for _, up := range []proto.Upload{
		{No: no, Path: "big.bin", Size: execute.PreuploadMin - 1},
		{No: no, Path: "../big.bin", Size: execute.PreuploadMin},
		{No: no, Path: "/big.bin", Size: execute.PreuploadMin},
	} {
		a.prefetch(context.Background(), up)
		if n := staged(a); n != 0 {
			t.Errorf("upload %+v prefetched", up)
		}
	}
	a.prefetch(context.Background(), big)
	if n := staged(a); n != 1 {
		t.Errorf("the upload of a large file: %d temp files; want its prefetch's one", n)
	}
	a.exec.StopPrefetches()
	if n := staged(a); n != 0 {
		t.Errorf("%d temp files left after the prefetches stopped", n)
	}
}
