package execute

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncserver/client"
)

// A file edited in place with its size and mtime kept passes the stat check of
// planning; the content read while its commit is sent no longer matches the index. The
// server, which hashes what it receives, refuses that item and applies the others; the
// agent finds the file changed and skips it for a re-plan.
func TestUploadSkipsAFileChangedWhileItsCommitIsSent(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(e.dir, n+".txt"), "content of "+n)
	}
	e.rescan(t)
	ops := e.plan()
	p := filepath.Join(e.dir, "b.txt")
	editInPlace(t, p, 0, []byte("EDITED OF b"))
	out := e.run(t, ops)
	if !out.Replan || out.Done != 2 || out.Failed != 0 {
		t.Errorf("outcome %+v; want a and c committed, b skipped for a re-plan", out)
	}
	ctx := context.Background()
	for _, n := range []string{"a", "c"} {
		ent, err := e.cl.Entry(ctx, n+".txt")
		if err != nil || ent.SHA256 != chunk.SumHex([]byte("content of "+n)) {
			t.Errorf("%s.txt on the server: %+v, %v", n, ent, err)
		}
		if _, ok := e.x.Trees.Synced.Get(n + ".txt"); !ok {
			t.Errorf("%s.txt not recorded as synced", n)
		}
	}
	if _, err := e.cl.Entry(ctx, "b.txt"); !client.IsNotFound(err) {
		t.Errorf("b.txt reached the server with content that was never hashed: %v", err)
	}
	if _, ok := e.x.Trees.Synced.Get("b.txt"); ok {
		t.Errorf("b.txt recorded as synced")
	}
}

// Many multi-block downloads at once within a budget of one block: each file takes
// the budget in block order, so they all finish.
func TestDownloadsFinishWithinASmallBlockBudget(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	up := newEnvOn(t, url)
	want := map[string][]byte{}
	for i := range 6 {
		data := make([]byte, 3<<20+i*4096)
		for j := range data {
			data[j] = byte(j*31 + j/1000 + i*7)
		}
		name := fmt.Sprintf("f%d.bin", i)
		want[name] = data
		if err := os.WriteFile(filepath.Join(up.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up.rescan(t)
	up.run(t, up.plan())

	down := newEnvOn(t, url)
	down.x.inflight = semaphore.NewWeighted(chunk.MaxSize)
	down.pull(t)
	down.rescan(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := down.x.Run(ctx, down.plan())
	if err != nil || out.Done != len(want) || out.Failed != 0 {
		t.Fatalf("download: %+v, %v", out, err)
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(down.dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
	if n := down.x.inflight.TryAcquire(chunk.MaxSize); !n {
		t.Errorf("the block budget was not given back in full")
	}
	noTempFiles(t, down.dir)
}
