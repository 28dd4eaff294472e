//go:build linux

package execute

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// stoppedPatch runs the reader's download of an edit and stops the patch once its
// journal is durable, as a crash would: the download fails, the file is untouched,
// one journal stays. It returns the journal's path.
func stoppedPatch(t *testing.T, pp *inPlacePair, old []byte) string {
	t.Helper()
	patchFault = func(*os.File) error { return errors.New("stopped after the journal (test)") }
	defer func() { patchFault = nil }()
	pp.reader.pull(t)
	if out := pp.reader.run(t, pp.reader.plan()); out.Failed != 1 {
		t.Fatalf("download stopped after its journal: %+v; want it failed", out)
	}
	checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": old})
	names := pp.journalNames(t)
	if len(names) != 1 {
		t.Fatalf("journals: %v; want one", names)
	}
	return filepath.Join(pp.journals, names[0])
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// An agent that stopped in the middle of a patch in place finishes it from its journal
// when it starts again, over whatever part of the patch reached the file; a journal
// that was not complete, or whose path names another file now, is dropped and touches
// nothing; a complete journal that makes no sense is an error and stays.
func TestInterruptedPatchIsFinishedAtStart(t *testing.T) {
	start := func(t *testing.T) (*inPlacePair, []byte, string) {
		pp := newInPlacePair(t, 12<<20)
		old := slices.Clone(pp.data)
		next := slices.Clone(pp.data)
		next[len(next)/2] ^= 0xff
		pp.edit(t, next)
		return pp, old, stoppedPatch(t, pp, old)
	}
	replay := func(t *testing.T, pp *inPlacePair) error {
		return ReplayPatches(pp.reader.x.Root, pp.journals, discardLog())
	}

	t.Run("half written", func(t *testing.T) {
		pp, _, _ := start(t)
		// Part of the patch reached the file before the stop: garbage where it writes.
		f, err := os.OpenFile(pp.path(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 4096), int64(len(pp.data)/2-2048)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := replay(t, pp); err != nil {
			t.Fatalf("replay: %v", err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": pp.data})
		pp.noJournals(t)
		// Run again: nothing left to do, nothing changes.
		if err := replay(t, pp); err != nil {
			t.Fatalf("second replay: %v", err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": pp.data})
	})
	t.Run("journal not complete", func(t *testing.T) {
		pp, old, j := start(t)
		fi, err := os.Stat(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(j, fi.Size()-10); err != nil {
			t.Fatal(err)
		}
		if err := replay(t, pp); err != nil {
			t.Fatalf("replay: %v", err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": old})
		pp.noJournals(t)
	})
	t.Run("path names another file", func(t *testing.T) {
		pp, _, _ := start(t)
		other := []byte("another file, put there since")
		tmp := filepath.Join(pp.reader.dir, "other")
		if err := os.WriteFile(tmp, other, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, pp.path()); err != nil {
			t.Fatal(err)
		}
		if err := replay(t, pp); err != nil {
			t.Fatalf("replay: %v", err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": other})
		pp.noJournals(t)
	})
	t.Run("complete but bad", func(t *testing.T) {
		pp, old, j := start(t)
		b, err := os.ReadFile(j)
		if err != nil {
			t.Fatal(err)
		}
		// The header's path made to leave the folder, the sum made right again.
		n := binary.BigEndian.Uint32(b[len(journalMagic):])
		head := b[len(journalMagic)+4 : len(journalMagic)+4+int(n)]
		bad := bytes.Replace(head, []byte(`"large0.bin"`), []byte(`"../x/a.bin"`), 1)
		if bytes.Equal(bad, head) {
			t.Fatalf("header %s: no path to change", head)
		}
		copy(head, bad)
		sum := sha256.Sum256(b[:len(b)-sha256.Size])
		copy(b[len(b)-sha256.Size:], sum[:])
		if err := os.WriteFile(j, b, 0o600); err != nil {
			t.Fatal(err)
		}
		err = replay(t, pp)
		if err == nil || !strings.Contains(err.Error(), "not a path in the folder") || !strings.Contains(err.Error(), j) {
			t.Errorf("replay of a bad journal: %v; want an error naming it and its fault", err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": old})
		if names := pp.journalNames(t); len(names) != 1 {
			t.Errorf("journals: %v; want the bad one kept", names)
		}
	})
}

// A patch whose writes into the file fail (a disk error) leaves its journal; the
// agent's next scan is preceded by FinishPatches, which completes the file from it.
func TestFailedPatchIsFinishedBeforeTheNextScan(t *testing.T) {
	pp := newInPlacePair(t, 12<<20)
	old := slices.Clone(pp.data)
	next := slices.Clone(pp.data)
	next[len(next)/2] ^= 0xff
	pp.edit(t, next)
	writes := 0
	patchFault = func(f *os.File) error {
		writes++
		if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 4096), int64(len(old)/2-2048)); err != nil {
			return err
		}
		return errors.New("input/output error (injected)")
	}
	pp.reader.pull(t)
	out := pp.reader.run(t, pp.reader.plan())
	patchFault = nil
	if out.Failed != 1 || writes != 2 {
		t.Fatalf("download with failing writes: %+v after %d tries; want it failed after two", out, writes)
	}
	if names := pp.journalNames(t); len(names) != 1 {
		t.Fatalf("journals: %v; want the failed patch's", names)
	}
	if err := pp.reader.x.FinishPatches(); err != nil {
		t.Fatalf("FinishPatches: %v", err)
	}
	checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": next})
	pp.noJournals(t)
	if err := pp.reader.x.FinishPatches(); err != nil {
		t.Fatalf("FinishPatches with nothing left: %v", err)
	}
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
