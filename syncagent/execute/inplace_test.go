//go:build linux

package execute

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestChangedInPlace(t *testing.T) {
	const mib = 1 << 20
	list := func(names ...string) []proto.Block {
		var out []proto.Block
		for _, n := range names {
			size := int64(mib)
			if strings.HasPrefix(n, "+") { // a block one byte longer: what follows shifts
				size++
			}
			out = append(out, proto.Block{Hash: n, Size: size})
		}
		return out
	}
	ten := list("a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9")
	with := func(i int, name string) []proto.Block {
		out := slices.Clone(ten)
		out[i] = list(name)[0]
		return out
	}
	twoChanged := with(2, "b2")
	twoChanged[7] = list("b7")[0]
	for _, tc := range []struct {
		name        string
		local, list []proto.Block
		changed     []int
		ok          bool
	}{
		{"a block changed in the middle", ten, with(5, "b5"), []int{5}, true},
		{"unchanged", ten, ten, nil, true},
		{"a block added at the end", ten, append(slices.Clone(ten), list("b10")...), []int{10}, true},
		{"cut short", ten, ten[:9], nil, true},
		{"a block grown at the start: every offset after it moved", ten,
			append(list("+b0"), ten[1:]...), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, false},
		{"two blocks in ten: more than an eighth", ten, twoChanged, nil, false},
		{"too small", ten[:4], append(slices.Clone(ten[:3]), list("b3")...), nil, false},
		{"nothing indexed", nil, ten, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, ok := changedInPlace(tc.local, tc.list)
			if ok != tc.ok || ok && !slices.Equal(changed, tc.changed) {
				t.Errorf("changedInPlace = %v, %v; want %v, %v", changed, ok, tc.changed, tc.ok)
			}
		})
	}
	got := rangesOf(ten, []int{3, 4, 7})
	want := []patchRange{{Off: 3 * mib, Len: 2 * mib}, {Off: 7 * mib, Len: mib}}
	if !slices.Equal(got, want) {
		t.Errorf("rangesOf = %v; want adjacent blocks merged: %v", got, want)
	}
}

// inPlacePair is a writer and a reader of one large file on one server, the reader
// patching in place (its journal dir set); both hold the file's first version.
type inPlacePair struct {
	writer, reader *env
	data           []byte
	journals       string
}

func newInPlacePair(t *testing.T, size int) *inPlacePair {
	t.Helper()
	url, _ := testserver.Start(t, t.TempDir(), nil)
	want := largeFiles(t, url, 1, size)
	pp := &inPlacePair{writer: newEnvOn(t, url), reader: newEnvOn(t, url), data: want["large0.bin"], journals: t.TempDir()}
	pp.reader.x.JournalDir = pp.journals
	for _, e := range []*env{pp.reader, pp.writer} {
		e.pull(t)
		e.rescan(t)
		if out := e.run(t, e.plan()); out.Done != 1 || out.Failed != 0 {
			t.Fatalf("first download: %+v", out)
		}
		e.rescan(t)
	}
	return pp
}

// edit commits data as the writer's new version of the file.
func (pp *inPlacePair) edit(t *testing.T, data []byte) {
	t.Helper()
	pp.data = data
	if err := os.WriteFile(filepath.Join(pp.writer.dir, "large0.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A later mtime than the first version's, whatever the clock's resolution.
	mt := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(pp.writer.dir, "large0.bin"), mt, mt); err != nil {
		t.Fatal(err)
	}
	pp.writer.rescan(t)
	if out := pp.writer.run(t, pp.writer.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload of the edit: %+v", out)
	}
}

// path is the reader's file.
func (pp *inPlacePair) path() string { return filepath.Join(pp.reader.dir, "large0.bin") }

// journals returns the names in the journal dir.
func (pp *inPlacePair) journalNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(pp.journals)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// noJournals checks that no patch journal is left.
func (pp *inPlacePair) noJournals(t *testing.T) {
	t.Helper()
	if names := pp.journalNames(t); len(names) != 0 {
		t.Errorf("journals left: %v", names)
	}
}

// An edit that keeps the other blocks at their offsets is written into the reader's
// file itself: the file keeps its inode, only the changed block comes from the server
// (as a delta), the index holds the new version with its fast sums, no journal stays.
func TestEditIsPatchedInPlace(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"a byte changed in the middle", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }},
		{"bytes added at the end", func(b []byte) []byte { return append(b, randomContent(3, 300<<10)...) }},
		{"cut short", func(b []byte) []byte { return b[:len(b)-200<<10] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pp := newInPlacePair(t, 12<<20)
			ino := inodeOf(t, pp.path())
			pp.edit(t, tc.edit(slices.Clone(pp.data)))
			pp.reader.pull(t)
			down := pp.reader.x.Counters.BytesDown.Load()
			if out := pp.reader.run(t, pp.reader.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("download of the edit: %+v", out)
			}
			checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": pp.data})
			if got := inodeOf(t, pp.path()); got != ino {
				t.Errorf("the file was replaced (inode %d, was %d); want it patched in place", got, ino)
			}
			if got := pp.reader.x.Counters.BytesDown.Load() - down; got > 2*chunk.MaxSize {
				t.Errorf("the reader fetched %d bytes of the edit; want the changed blocks only", got)
			}
			checkFastSums(t, pp.reader, "large0.bin", pp.data)
			pp.noJournals(t)
			noTempFiles(t, pp.reader.dir)
			fi, err := os.Stat(pp.path())
			if err != nil {
				t.Fatal(err)
			}
			wfi, err := os.Stat(filepath.Join(pp.writer.dir, "large0.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(wfi.ModTime()) || fi.Mode() != wfi.Mode() {
				t.Errorf("patched file: mtime %v mode %v; want the writer's %v %v", fi.ModTime(), fi.Mode(), wfi.ModTime(), wfi.Mode())
			}
			// The index took the new version: nothing is left to do.
			pp.reader.rescan(t)
			for _, op := range pp.reader.plan() {
				if op.Kind != plan.Report {
					t.Errorf("after the patch the plan has %v of %s; want nothing to do", op.Kind, op.Path)
				}
			}
		})
	}
}

// A file that has another hard link, or an edit that moves the bytes after it, is
// rebuilt and renamed into place as before: the other link keeps the old content.
func TestFileIsRebuiltWhenAPatchInPlaceWouldNotDo(t *testing.T) {
	for _, tc := range []string{"another hard link", "bytes inserted at the start"} {
		t.Run(tc, func(t *testing.T) {
			pp := newInPlacePair(t, 12<<20)
			old := slices.Clone(pp.data)
			ino := inodeOf(t, pp.path())
			link := filepath.Join(t.TempDir(), "link")
			next := slices.Clone(pp.data)
			if tc == "another hard link" {
				if err := os.Link(pp.path(), link); err != nil {
					t.Fatal(err)
				}
				next[len(next)/2] ^= 0xff
			} else {
				next = append([]byte("inserted"), next...)
			}
			pp.edit(t, next)
			pp.reader.pull(t)
			if out := pp.reader.run(t, pp.reader.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("download of the edit: %+v", out)
			}
			checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": pp.data})
			if inodeOf(t, pp.path()) == ino {
				t.Error("the file kept its inode; want it rebuilt and renamed into place")
			}
			if tc == "another hard link" {
				if got, err := os.ReadFile(link); err != nil || !bytes.Equal(got, old) {
					t.Errorf("the other link holds %d bytes (%v); want the old content", len(got), err)
				}
			}
			pp.noJournals(t)
		})
	}
}

// fetchHook is a Server that calls hook once, when the first block is fetched.
type fetchHook struct {
	Server
	once sync.Once
	hook func()
}

func (h *fetchHook) GetBlockDelta(ctx context.Context, hash, baseHash string, base []byte) ([]byte, error) {
	h.once.Do(h.hook)
	return h.Server.GetBlockDelta(ctx, hash, baseHash, base)
}

func (h *fetchHook) GetBlock(ctx context.Context, hash string) ([]byte, error) {
	h.once.Do(h.hook)
	return h.Server.GetBlock(ctx, hash)
}

func (h *fetchHook) GetBlocksInto(ctx context.Context, hashes []string, buf []byte) ([][]byte, error) {
	h.once.Do(h.hook)
	return h.Server.GetBlocksInto(ctx, hashes, buf)
}

// A program that writes to the file while its patch is fetched keeps its edit: the
// patch is dropped before it writes anything, the download planned again, and the
// next scan sends the edit.
func TestEditDuringAPatchIsKept(t *testing.T) {
	pp := newInPlacePair(t, 12<<20)
	next := slices.Clone(pp.data)
	next[len(next)/2] ^= 0xff
	pp.edit(t, next)
	edit := []byte("written while the patch was fetched")
	pp.reader.x.Server = &fetchHook{Server: pp.reader.x.Server, hook: func() { writeOver(t, pp.path(), 4096, edit) }}
	pp.reader.pull(t)
	out := pp.reader.run(t, pp.reader.plan())
	if out.Done != 0 || !out.Replan {
		t.Errorf("download over an edit made during its fetch: %+v; want it skipped and planned again", out)
	}
	got, err := os.ReadFile(pp.path())
	if err != nil || !bytes.Contains(got, edit) {
		t.Fatalf("the edit is gone (%v)", err)
	}
	pp.noJournals(t)
	pp.reader.rescan(t)
	sent := false
	for _, op := range pp.reader.plan() {
		sent = sent || op.Kind == plan.Upload || op.Kind == plan.MoveToConflict
	}
	if !sent {
		t.Error("the next plan does not send the edit")
	}
}

// The blocks a patch keeps are read and checked first: a file whose bytes are not what
// the index's block list says (an edit that put its mtime back, or a list recorded
// after the next download began) is rebuilt, and ends as the new version.
func TestPatchChecksTheBlocksItKeeps(t *testing.T) {
	t.Run("an edit that kept the stat key", func(t *testing.T) {
		pp := newInPlacePair(t, 12<<20)
		fi, err := os.Stat(pp.path())
		if err != nil {
			t.Fatal(err)
		}
		writeOver(t, pp.path(), 100, []byte("XXXX"))
		if err := os.Chtimes(pp.path(), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		next := slices.Clone(pp.data)
		next[len(next)/2] ^= 0xff
		pp.edit(t, next)
		pp.reader.pull(t)
		if out := pp.reader.run(t, pp.reader.plan()); out.Done != 1 || out.Failed != 0 {
			t.Fatalf("download: %+v", out)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": next})
		if n := pp.reader.x.Counters.PatchedInPlace.Load(); n != 0 {
			t.Errorf("%d files patched in place; want the file rebuilt", n)
		}
	})
	t.Run("a block list recorded late", func(t *testing.T) {
		pp := newInPlacePair(t, 12<<20)
		x := pp.reader.x
		v0 := slices.Clone(pp.data)
		v1 := slices.Clone(v0)
		v1[len(v1)/2] ^= 0xff
		pp.edit(t, v1)
		pp.reader.pull(t)
		if out, err := x.Run(context.Background(), pp.reader.plan()); err != nil || out.Done != 1 {
			t.Fatalf("download of v1: %+v %v", out, err)
		}
		// v1's record is held until the next download is over: the state's block list is
		// still v0's when the writer's undo comes.
		r := x.recording
		if r == nil {
			t.Fatal("no record left running")
		}
		r.started.Do(func() {})
		landed := x.Counters.FilesDone.Load()
		go func() { // once the next download landed, before it waits for this record
			for deadline := time.Now().Add(time.Minute); x.Counters.FilesDone.Load() == landed && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			close(r.start)
		}()
		pp.edit(t, slices.Clone(v0))
		pp.reader.pull(t)
		out, err := x.Run(context.Background(), pp.reader.plan())
		if err == nil {
			err = x.WaitRecorded()
		}
		if err != nil || out.Done != 1 || out.Failed != 0 {
			t.Fatalf("download of the undo: %+v %v", out, err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": v0})
	})
}

// A file the agent may write but not set the mode and mtime of (another owner's,
// shared through its group or world write bit) is rebuilt: a patch would stop half
// way, between its bytes and its mtime.
func TestFileOfAnotherOwnerIsRebuilt(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (it makes a file of another owner)")
		}
		t.Skip("needs root to make a file of another owner")
	}
	pp := newInPlacePair(t, 12<<20)
	// The file made writable by all, on both sides.
	if err := os.Chmod(filepath.Join(pp.writer.dir, "large0.bin"), 0o666); err != nil {
		t.Fatal(err)
	}
	pp.writer.rescan(t)
	if out := pp.writer.run(t, pp.writer.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("upload of the mode: %+v", out)
	}
	pp.reader.pull(t)
	if out := pp.reader.run(t, pp.reader.plan()); out.Done != 1 || out.Failed != 0 {
		t.Fatalf("download of the mode: %+v", out)
	}
	next := slices.Clone(pp.data)
	next[len(next)/2] ^= 0xff
	pp.edit(t, next)
	pp.reader.pull(t)
	for _, d := range []string{pp.reader.dir, pp.journals} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(pp.path(), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	pp.reader.rescan(t)
	ops := pp.reader.plan()
	patched := pp.reader.x.Counters.PatchedInPlace.Load()
	// The run as another user (every thread of the process), root again right after.
	if err := syscall.Setresuid(-1, 65534, -1); err != nil {
		t.Fatal(err)
	}
	var out Outcome
	var err error
	func() {
		defer func() {
			if err := syscall.Setresuid(-1, 0, -1); err != nil {
				panic(err)
			}
		}()
		out, err = pp.reader.x.Run(context.Background(), ops)
		if err == nil {
			err = pp.reader.x.WaitRecorded()
		}
	}()
	if err != nil || out.Done != 1 || out.Failed != 0 {
		t.Fatalf("download as another user: %+v, %v", out, err)
	}
	checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": next})
	if n := pp.reader.x.Counters.PatchedInPlace.Load() - patched; n != 0 {
		t.Errorf("%d files patched in place; want the file rebuilt", n)
	}
	pp.noJournals(t)
}

// A reader does not copy ahead an upload that will be patched in place: it follows it
// without fetching, and the commit's download fetches only the changed block. An
// upload that moves the bytes after an edit is copied ahead as before.
func TestEditToBePatchedInPlaceIsNotCopiedAhead(t *testing.T) {
	for _, insert := range []bool{false, true} {
		t.Run(fmt.Sprintf("insert=%v", insert), func(t *testing.T) {
			pp := newPrefetchPair(t)
			pp.down.x.JournalDir = t.TempDir()
			content := randomContent(8, PreuploadMin+3<<20)
			pp.synced(t, "big.bin", content)
			x := pp.down.x
			ino := inodeOf(t, filepath.Join(pp.down.dir, "big.bin"))
			if insert {
				content = append([]byte("inserted at the start"), content...)
			} else {
				content[len(content)/2] ^= 0xff
			}
			pp.write(t, "big.bin", content)
			up := pp.upload(t, "big.bin", int64(len(content)))
			done := x.Counters.BytesDone.Load()
			if !x.Prefetch(context.Background(), up) {
				t.Fatal("prefetch not started")
			}
			if out := pp.up.run(t, pp.up.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("upload of the edit: %+v", out)
			}
			x.pre.mu.Lock()
			p := x.pre.m["big.bin"]
			x.pre.mu.Unlock()
			<-p.done
			if insert && p.a.n != len(p.blocks) || !insert && p.a.n != 0 {
				t.Errorf("the prefetch wrote %d of the %d blocks it followed; want all when copied ahead, none when held",
					p.a.n, len(p.blocks))
			}
			if !insert && x.Counters.BytesDone.Load() != done {
				t.Errorf("the prefetch took %d bytes; want none", x.Counters.BytesDone.Load()-done)
			}
			down := x.Counters.BytesDown.Load()
			pp.download(t, "big.bin", content)
			patched := inodeOf(t, filepath.Join(pp.down.dir, "big.bin")) == ino
			if patched == insert {
				t.Errorf("patched in place: %v; want %v", patched, !insert)
			}
			if got := x.Counters.BytesDown.Load() - down; !insert && (got <= 0 || got > chunk.MaxSize) {
				t.Errorf("the download after the commit fetched %d bytes; want the changed block", got)
			}
		})
	}
}
