//go:build linux

package execute

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
)

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
	// Its bytes untouched; a file that grows got its new space (zeros) first.
	got, err := os.ReadFile(pp.path())
	if err != nil || len(got) < len(old) || !bytes.Equal(got[:len(old)], old) ||
		len(bytes.Trim(got[len(old):], "\x00")) != 0 {
		t.Fatalf("file after the stop: %d bytes, %v; want the old ones, and zeros past them", len(got), err)
	}
	names := pp.journalNames(t)
	if len(names) != 1 {
		t.Fatalf("journals: %v; want one", names)
	}
	return filepath.Join(pp.journals, names[0])
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// statKey is what the scan compares of a file: its size, mtime and mode.
type statKey struct {
	size  int64
	mtime time.Time
	mode  os.FileMode
}

func statKeyOf(t *testing.T, p string) statKey {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return statKey{fi.Size(), fi.ModTime(), fi.Mode()}
}

// writeOver writes data into the file p at off, as a program (or part of a patch) would.
func writeOver(t *testing.T, p string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// journalOf reads the header of the journal j.
func journalOf(t *testing.T, j string) patchHeader {
	t.Helper()
	f, err := os.Open(j)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _, complete, err := readJournal(f)
	if err != nil || !complete {
		t.Fatalf("journal %s: complete %v, %v", j, complete, err)
	}
	return h
}

// partlyPatched leaves the reader's file as a patch to next stopped in its middle
// would: grown to next's size where next is longer, and the first half of every range
// written.
func partlyPatched(t *testing.T, pp *inPlacePair, h patchHeader, next []byte) {
	t.Helper()
	if int64(len(next)) > h.OldSize {
		if err := os.Truncate(pp.path(), int64(len(next))); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range h.Ranges {
		writeOver(t, pp.path(), r.Off, next[r.Off:r.Off+r.Len/2])
	}
}

// An agent that stopped in the middle of a patch in place undoes it from its journal
// when it starts again: the file is again the version the state records (bytes, size,
// mode, mtime), and the download, planned again, lands the new version. A journal
// that was not complete is dropped and touches nothing; a file the journal's path no
// longer names, or one written to after the stop, is left as it is and the journal
// dropped; a complete journal that makes no sense is an error and stays; a journal of
// the first layout is finished.
func TestInterruptedPatchIsUndoneAtStart(t *testing.T) {
	var key statKey // the reader's file as indexed, before the edit
	start := func(t *testing.T, edit func([]byte) []byte) (pp *inPlacePair, old, next []byte, j string) {
		pp = newInPlacePair(t, 12<<20)
		key = statKeyOf(t, pp.path())
		old = slices.Clone(pp.data)
		next = edit(slices.Clone(pp.data))
		pp.edit(t, next)
		return pp, old, next, stoppedPatch(t, pp, old)
	}
	middle := func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }
	recover := func(t *testing.T, pp *inPlacePair) error {
		return RecoverPatches(pp.reader.x.Root, pp.journals, discardLog())
	}
	// left checks that the journal is gone and the file holds want.
	left := func(t *testing.T, pp *inPlacePair, want []byte) {
		t.Helper()
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": want})
		pp.noJournals(t)
	}

	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"a byte changed in the middle", middle},
		{"bytes added at the end", func(b []byte) []byte { return append(b, randomContent(3, 300<<10)...) }},
		{"cut short", func(b []byte) []byte { return b[:len(b)-200<<10] }},
	} {
		t.Run("half written: "+tc.name, func(t *testing.T) {
			pp, old, next, j := start(t, tc.edit)
			partlyPatched(t, pp, journalOf(t, j), next)
			if err := recover(t, pp); err != nil {
				t.Fatalf("recover: %v", err)
			}
			left(t, pp, old)
			if got := statKeyOf(t, pp.path()); got != key {
				t.Errorf("stat after the undo: %+v; want the indexed version's %+v", got, key)
			}
			if err := recover(t, pp); err != nil { // nothing left to do
				t.Fatalf("second recover: %v", err)
			}
			left(t, pp, old)
			// The state was right all along: the download is planned again and lands.
			pp.reader.rescan(t)
			if out := pp.reader.run(t, pp.reader.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("download after the undo: %+v", out)
			}
			left(t, pp, next)
		})
	}
	t.Run("written whole, journal not yet removed", func(t *testing.T) {
		pp, old, next, _ := start(t, middle)
		if err := os.WriteFile(pp.path(), next, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := recover(t, pp); err != nil {
			t.Fatalf("recover: %v", err)
		}
		left(t, pp, old)
	})
	t.Run("journal not complete", func(t *testing.T) {
		pp, old, _, j := start(t, middle)
		fi, err := os.Stat(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(j, fi.Size()-10); err != nil {
			t.Fatal(err)
		}
		if err := recover(t, pp); err != nil {
			t.Fatalf("recover: %v", err)
		}
		left(t, pp, old)
	})
	t.Run("path names another file", func(t *testing.T) {
		pp, _, _, _ := start(t, middle)
		other := []byte("another file, put there since")
		tmp := filepath.Join(pp.reader.dir, "other")
		if err := os.WriteFile(tmp, other, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, pp.path()); err != nil {
			t.Fatal(err)
		}
		if err := recover(t, pp); err != nil {
			t.Fatalf("recover: %v", err)
		}
		left(t, pp, other)
	})
	// A program kept writing while the agent was down: its bytes stay, whether past the
	// patch's reach, in a block the patch kept, or in the patch's own range.
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, pp *inPlacePair, h patchHeader)
	}{
		{"bytes appended", func(t *testing.T, pp *inPlacePair, h patchHeader) {
			f, err := os.OpenFile(pp.path(), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("appended while the agent was down"); err != nil {
				t.Fatal(err)
			}
		}},
		{"a kept block changed", func(t *testing.T, pp *inPlacePair, h patchHeader) {
			writeOver(t, pp.path(), 100, []byte("written while the agent was down"))
		}},
		{"the patched range changed", func(t *testing.T, pp *inPlacePair, h patchHeader) {
			writeOver(t, pp.path(), h.Ranges[0].Off+10, []byte("written while the agent was down"))
		}},
	} {
		t.Run("written to after the stop: "+tc.name, func(t *testing.T) {
			pp, _, next, j := start(t, middle)
			h := journalOf(t, j)
			partlyPatched(t, pp, h, next)
			tc.write(t, pp, h)
			want, err := os.ReadFile(pp.path())
			if err != nil {
				t.Fatal(err)
			}
			if err := recover(t, pp); err != nil {
				t.Fatalf("recover: %v", err)
			}
			left(t, pp, want)
		})
	}
	for _, tc := range []string{"dir", "symlink out of the folder", "fifo"} {
		t.Run("path no longer a file: "+tc, func(t *testing.T) {
			pp, _, _, _ := start(t, middle)
			if err := os.Remove(pp.path()); err != nil {
				t.Fatal(err)
			}
			var err error
			switch tc {
			case "dir":
				err = os.Mkdir(pp.path(), 0o755)
			case "fifo":
				err = syscall.Mkfifo(pp.path(), 0o644)
			default:
				err = os.Symlink(filepath.Join(t.TempDir(), "outside"), pp.path())
			}
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- recover(t, pp) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("recover: %v; want the journal dropped", err)
				}
			case <-time.After(10 * time.Second):
				f, _ := os.OpenFile(pp.path(), os.O_RDONLY|syscall.O_NONBLOCK, 0) // lets it go
				err := <-done
				if f != nil {
					_ = f.Close()
				}
				t.Fatalf("recover blocked on what the path names now (then: %v)", err)
			}
			pp.noJournals(t)
		})
	}
	t.Run("complete but bad", func(t *testing.T) {
		pp, old, _, j := start(t, middle)
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
		err = recover(t, pp)
		if err == nil || !strings.Contains(err.Error(), "not a path in the folder") || !strings.Contains(err.Error(), j) {
			t.Errorf("recover from a bad journal: %v; want an error naming it and its fault", err)
		}
		checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": old})
		if names := pp.journalNames(t); len(names) != 1 {
			t.Errorf("journals: %v; want the bad one kept", names)
		}
	})
	t.Run("first layout", func(t *testing.T) {
		pp, _, next, j := start(t, middle)
		h := journalOf(t, j)
		partlyPatched(t, pp, h, next)
		// The same patch as an agent of the first layout wrote it: no old bytes.
		b, err := os.ReadFile(j)
		if err != nil {
			t.Fatal(err)
		}
		n := binary.BigEndian.Uint32(b[len(journalMagic):])
		data := len(journalMagic) + 4 + int(n)
		head, err := json.Marshal(map[string]any{"path": h.Path, "ino": h.Ino, "size": h.Size, "mtimeNs": h.MTimeNs,
			"mode": h.Mode, "ranges": h.Ranges})
		if err != nil {
			t.Fatal(err)
		}
		var v1 bytes.Buffer
		v1.WriteString(journalMagicV1)
		_ = binary.Write(&v1, binary.BigEndian, uint32(len(head)))
		v1.Write(head)
		v1.Write(b[data : data+int(rangesBytes(h.Ranges))])
		sum := sha256.Sum256(v1.Bytes())
		v1.Write(sum[:])
		if err := os.WriteFile(j, v1.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := recover(t, pp); err != nil {
			t.Fatalf("recover: %v", err)
		}
		left(t, pp, next)
	})
}

// A patch whose writes into the file fail (a disk error) leaves its journal; before
// anything else touches the folder (the next Run, the next scan) the patch is undone,
// so that a later download of the same path is not undone over, nor a half-patched
// file taken for a local edit.
func TestFailedPatchIsUndoneBeforeAnythingElse(t *testing.T) {
	for _, later := range []bool{false, true} {
		t.Run(fmt.Sprintf("a later version first=%v", later), func(t *testing.T) {
			pp := newInPlacePair(t, 12<<20)
			old := slices.Clone(pp.data)
			next := slices.Clone(pp.data)
			next[len(next)/2] ^= 0xff
			pp.edit(t, next)
			writes := 0
			patchFault = func(f *os.File) error {
				writes++
				if _, err := f.WriteAt(next[len(next)/2-2048:len(next)/2+2048], int64(len(next)/2-2048)); err != nil {
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
			if later {
				next = slices.Clone(next)
				next[len(next)/2] ^= 0x0f
				pp.edit(t, next)
				pp.reader.pull(t)
			} else {
				if err := pp.reader.x.RecoverPatches(); err != nil { // the next scan's
					t.Fatalf("RecoverPatches: %v", err)
				}
				checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": old})
				pp.noJournals(t)
				pp.reader.rescan(t)
			}
			if out := pp.reader.run(t, pp.reader.plan()); out.Done != 1 || out.Failed != 0 {
				t.Fatalf("the download again: %+v", out)
			}
			checkTree(t, pp.reader.dir, map[string][]byte{"large0.bin": next})
			pp.noJournals(t)
			pp.reader.rescan(t)
			for _, op := range pp.reader.plan() {
				if op.Kind != plan.Report {
					t.Errorf("after the download the plan has %v of %s; want nothing to do", op.Kind, op.Path)
				}
			}
		})
	}
}
