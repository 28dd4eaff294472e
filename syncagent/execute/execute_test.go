package execute

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

type env struct {
	dir  string
	cl   *client.Client
	x    *Executor
	scan *scan.Scanner
}

// newEnv builds an executor on a fresh folder against a real in-process server.
func newEnv(t *testing.T) *env {
	t.Helper()
	url, _ := testserver.Start(t, t.TempDir(), nil)
	return newEnvOn(t, url)
}

// newEnvOn builds an executor on a fresh folder against the server at url.
func newEnvOn(t testing.TB, url string) *env {
	t.Helper()
	cl, err := client.New(client.Options{BaseURL: url, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	x := &Executor{Root: root, Server: cl, State: db, Trees: trees.New(0),
		OwnSeqs: map[string]OwnSeq{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Counters: &Counters{}}
	return &env{dir: dir, cl: cl, x: x, scan: &scan.Scanner{Root: root}}
}

// rescan refreshes the local tree and index from disk.
func (e *env) rescan(t testing.TB) {
	t.Helper()
	ups, err := e.scan.Full(context.Background(), e.x.Trees)
	if err != nil {
		t.Fatal(err)
	}
	err = e.x.State.Update(context.Background(), func(tx *state.Tx) error {
		for _, u := range ups {
			if u.Deleted {
				if err := tx.DeleteIndex(u.Path); err != nil {
					return err
				}
			} else if err := tx.PutIndex(u.Path, u.Entry, u.Blocks, chunk.Sums{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// allEntries reads the server's whole changes feed, page after page.
func allEntries(t testing.TB, cl *client.Client) []proto.Entry {
	t.Helper()
	var out []proto.Entry
	for since := int64(0); ; {
		resp, err := cl.Changes(context.Background(), since, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.Entries...)
		if since = resp.LastSeq; !resp.More {
			return out
		}
	}
}

// pull copies the server's entries into the remote tree, as the agent's feed does.
func (e *env) pull(t testing.TB) {
	t.Helper()
	entries := allEntries(t, e.cl)
	err := e.x.State.Update(context.Background(), func(tx *state.Tx) error {
		for _, en := range entries {
			if en.Deleted {
				e.x.Trees.Remote.Delete(en.Path)
				continue
			}
			n, err := state.NodeOf(en)
			if err != nil {
				return err
			}
			e.x.Trees.Remote.Set(en.Path, n)
			if err := tx.PutRemote(en); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) plan() []plan.Op {
	return plan.Plan(e.x.Trees.Local, e.x.Trees.Remote, e.x.Trees.Synced, plan.Options{AgentID: "t"})
}

func (e *env) run(t testing.TB, ops []plan.Op) Outcome {
	t.Helper()
	out, err := e.x.Run(context.Background(), ops)
	if err == nil {
		err = e.x.WaitRecorded() // the state as the agent has it once a pass is over
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nodeAt is the node of p in tree, or the zero node.
func nodeAt(tree trees.Side, p string) plan.Node {
	n, _ := tree.Get(p)
	return n
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), scan.TempPrefix) {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
}

// commitRemote makes the server's version of p hold data, as another agent would.
func commitRemote(t *testing.T, cl *client.Client, p, data string, base int64) {
	t.Helper()
	item := proto.CommitItem{Path: p, BaseSeq: base, Type: proto.TypeFile, Size: int64(len(data)), Mode: 0o644,
		SHA256: chunk.SumHex([]byte(data)), Data: []byte(data)}
	if len(data) > 0 {
		item.Blocks = []proto.Block{{Hash: item.SHA256, Size: int64(len(data))}}
	}
	res, err := cl.Commit(context.Background(), []proto.CommitItem{item})
	if err != nil || res[0].Status != proto.StatusOK {
		t.Fatalf("commit %s: %v %+v", p, err, res)
	}
}

func TestDownloadRefusesToClobberALocalEdit(t *testing.T) {
	e := newEnv(t)
	commitRemote(t, e.cl, "doc.txt", "server v1", 0)
	e.pull(t)
	e.rescan(t)
	e.run(t, e.plan()) // downloads v1
	if got, _ := os.ReadFile(filepath.Join(e.dir, "doc.txt")); string(got) != "server v1" {
		t.Fatalf("doc.txt = %q", got)
	}
	// The server moves on; plan the download of v2; then the user edits the file
	// before the executor gets to it.
	commitRemote(t, e.cl, "doc.txt", "server v2", nodeAt(e.x.Trees.Remote, "doc.txt").Seq)
	e.pull(t)
	ops := e.plan()
	if len(ops) != 1 || ops[0].Kind != plan.Download {
		t.Fatalf("plan %+v, want one download", ops)
	}
	writeFile(t, filepath.Join(e.dir, "doc.txt"), "user's unsaved work, longer")
	out := e.run(t, ops)
	if !out.Replan || out.Done != 0 {
		t.Errorf("outcome %+v; want the download skipped and a re-plan asked for", out)
	}
	if got, _ := os.ReadFile(filepath.Join(e.dir, "doc.txt")); string(got) != "user's unsaved work, longer" {
		t.Errorf("the user's edit was clobbered: %q", got)
	}
	noTempFiles(t, e.dir)
	// The re-plan sees a conflict and keeps both versions.
	e.rescan(t)
	e.run(t, e.plan())
	if got, _ := os.ReadFile(filepath.Join(e.dir, "doc.txt")); string(got) != "server v2" {
		t.Errorf("after re-plan doc.txt = %q, want server v2", got)
	}
	copies, _ := filepath.Glob(filepath.Join(e.dir, "doc.sync-conflict-*"))
	if len(copies) != 1 {
		t.Fatalf("conflict copies %v", copies)
	}
	if got, _ := os.ReadFile(copies[0]); string(got) != "user's unsaved work, longer" {
		t.Errorf("conflict copy holds %q", got)
	}
}

func TestUploadRefusesAFileChangedSincePlanning(t *testing.T) {
	e := newEnv(t)
	writeFile(t, filepath.Join(e.dir, "a.txt"), "planned")
	e.rescan(t)
	ops := e.plan()
	writeFile(t, filepath.Join(e.dir, "a.txt"), "changed after planning")
	out := e.run(t, ops)
	if !out.Replan || out.Done != 0 {
		t.Errorf("outcome %+v", out)
	}
	if _, err := e.cl.Entry(context.Background(), "a.txt"); !client.IsNotFound(err) {
		t.Errorf("the server got a.txt anyway: %v", err)
	}
}

func TestCorruptDownloadNeverLandsUnderItsName(t *testing.T) {
	e := newEnv(t)
	commitRemote(t, e.cl, "x.bin", "real bytes", 0)
	e.pull(t)
	e.rescan(t)
	ops := e.plan()
	// Make the planned entry claim other content than its blocks hold, as a corrupt
	// server answer would; no real server sends this, so it is staged in the op.
	bad := *ops[0].Remote
	bad.SHA256 = plan.HashOf([]byte("something else"))
	ops[0].Remote = &bad
	out := e.run(t, ops)
	if out.Failed != 1 || out.Done != 0 {
		t.Errorf("outcome %+v", out)
	}
	if _, err := os.Lstat(filepath.Join(e.dir, "x.bin")); !os.IsNotExist(err) {
		t.Errorf("unverified content landed under its final name: %v", err)
	}
	noTempFiles(t, e.dir)
}

// With and without direct writes (Executor.DirectIO) for the file of over 4 MiB.
func TestLargeFileRoundTripReusesLocalBlocks(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) { largeFileRoundTrip(t, direct) })
	}
}

func largeFileRoundTrip(t *testing.T, direct bool) {
	e := newEnv(t)
	e.x.DirectIO = direct
	data := make([]byte, 6<<20)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "big"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	e.pull(t)
	e.run(t, e.plan())
	e.pull(t)
	// Another agent renames it: the new path's blocks are all on disk already.
	e.commitCopy(t, "big", "moved/big")
	e.pull(t)
	down := e.x.Counters.BytesDown.Load()
	e.run(t, e.plan())
	if got := e.x.Counters.BytesDown.Load() - down; got != 0 {
		t.Errorf("downloaded %d bytes for content already on disk", got)
	}
	got, err := os.ReadFile(filepath.Join(e.dir, "moved/big"))
	if err != nil || chunk.SumHex(got) != chunk.SumHex(data) {
		t.Errorf("moved/big wrong: %v", err)
	}
	noTempFiles(t, e.dir)
}

// TestUploadOfABlockChangedInPlaceIsSkipped: the agent no longer hashes a block before
// sending it; the server refuses bytes that do not hash to the block's name, and the
// agent then tells a file that changed since indexing (skip and re-plan) from a failure.
func TestUploadOfABlockChangedInPlaceIsSkipped(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(e.dir, "big")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*13 + i/999)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	ops := e.plan()
	// Same size, same inode, same mtime: only the bytes tell the change.
	editInPlace(t, p, 1<<20, []byte("changed in place"))
	out := e.run(t, ops)
	if !out.Replan || out.Done != 0 || out.Failed != 0 {
		t.Errorf("outcome %+v", out)
	}
	if _, err := e.cl.Entry(context.Background(), "big"); !client.IsNotFound(err) {
		t.Errorf("the server got big anyway: %v", err)
	}
	// The file as it is now uploads once it is indexed again (the scan re-hashes a file
	// whose stat changed, as an editor's save would).
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	e.pull(t)
	if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
		t.Errorf("second run %+v", out)
	}
	ent, err := e.cl.Entry(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if ent.SHA256 != chunk.SumHex(got) {
		t.Errorf("server holds %s, the file hashes to %s", ent.SHA256, chunk.SumHex(got))
	}
}

// A local file changed in place with its stat key kept (the index still vouches for
// it): the block read from it fails its hash, is fetched from the server instead, and
// the right content lands.
func TestLocalBlockChangedInPlaceIsCaughtByItsHash(t *testing.T) {
	e := newEnv(t)
	data := make([]byte, 6<<20)
	if _, err := rand.Read(data); err != nil { // no block repeats elsewhere in the file
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, "big")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	e.rescan(t)
	e.pull(t)
	e.run(t, e.plan())
	e.pull(t)
	e.commitCopy(t, "big", "copy/big")
	e.pull(t)
	ops := e.plan()
	editInPlace(t, p, 3<<20, []byte("changed in place"))
	down := e.x.Counters.BytesDown.Load()
	if out := e.run(t, ops); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("outcome %+v", out)
	}
	got, err := os.ReadFile(filepath.Join(e.dir, "copy/big"))
	if err != nil || chunk.SumHex(got) != chunk.SumHex(data) {
		t.Fatalf("copy/big does not hold the committed content: %v", err)
	}
	if e.x.Counters.BytesDown.Load() == down {
		t.Error("the changed block was not fetched from the server")
	}
	noTempFiles(t, e.dir)
}

// editInPlace writes data at off in the file p and puts its mtime back: same size, same
// inode, same mtime, so only the bytes tell the change.
func editInPlace(t *testing.T, p string, off int64, data []byte) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// commitCopy commits, as another agent would, a file at to with the content the
// server holds at from (a rename or copy whose blocks are all stored).
func (e *env) commitCopy(t *testing.T, from, to string) {
	t.Helper()
	ent, err := e.cl.Entry(context.Background(), from)
	if err != nil {
		t.Fatal(err)
	}
	item := proto.CommitItem{Path: to, Type: proto.TypeFile, Size: ent.Size, Mode: ent.Mode,
		MTimeNs: ent.MTimeNs, SHA256: ent.SHA256, Blocks: ent.Blocks}
	if res, err := e.cl.Commit(context.Background(), []proto.CommitItem{item}); err != nil || res[0].Status != proto.StatusOK {
		t.Fatalf("commit: %v %+v", err, res)
	}
}
