package execute

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
)

// RecoverPatches undoes the patches in place whose writes into their files failed
// (their journals stayed; see the package's RecoverPatches). Run calls it before any
// op, and the agent before each scan: a file left part old, part new would otherwise
// look like a local edit, and its bytes would go to the server. It costs nothing when
// no patch failed.
func (x *Executor) RecoverPatches() error {
	if !x.patchesLeft.Load() {
		return nil
	}
	if err := RecoverPatches(x.Root, x.JournalDir, x.Log); err != nil {
		return err
	}
	x.patchesLeft.Store(false)
	return nil
}

// undoPatch puts back over f the bytes the patch h overwrote or cut off (read from
// the journal j, after the ranges' new bytes from dataOff on) and the old size, mode and
// mtime, and makes f durable: the file is again the version the state records, and
// the download that was patching it is planned again. It may run again with the same
// result. A mode or mtime the agent may no longer set is left (the scan then hashes
// the file, and finds the version the state records).
func undoPatch(f, j *os.File, h patchHeader, dataOff int64) error {
	if err := copySpans(f, j, h.oldSpans(), dataOff+rangesBytes(h.Ranges)); err != nil {
		return err
	}
	return settle(f, h.OldSize, h.OldMode, h.OldMTimeNs, true)
}

// RecoverPatches undoes the patches in place that an agent left unfinished when it
// stopped: for each journal in dir (the state dir) that is complete, the file it names
// in root gets back the bytes, size, mode and mtime of the version the state records
// (the patch's download is planned again), when it holds only what the patch and that
// version put there; a file its path no longer names, or one written to since, is left
// as it is. A journal of the first layout, which kept no old bytes, is finished
// instead. Journals that are not complete never touched their file. Every journal
// dealt with is removed. It must run before the folder is scanned: a half-patched file
// would otherwise look like a local edit. An error (a journal that cannot be read, a
// file that cannot be written) leaves that journal in place.
func RecoverPatches(root *os.Root, dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch journals: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), journalPrefix) || !strings.HasSuffix(e.Name(), journalSuffix) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if err := recoverPatch(root, name, log); err != nil {
			return fmt.Errorf("patch journal %s: %w (the file it patches may be part old, part new; "+
				"remove the journal to start without putting it back)", name, err)
		}
	}
	return nil
}

// recoverPatch is RecoverPatches of one journal, name.
func recoverPatch(root *os.Root, name string, log *slog.Logger) error {
	j, err := os.Open(name)
	if err != nil {
		return err
	}
	defer j.Close()
	h, dataOff, complete, err := readJournal(j)
	if err != nil {
		return err
	}
	if !complete {
		log.Info("removed an incomplete patch journal; its file was not touched", "journal", name)
		return removeJournal(name)
	}
	f, why := openPatched(root, h)
	if f == nil {
		log.Warn("removed a patch journal whose file is not there as it left it", "journal", name, "path", h.Path, "reason", why)
		return removeJournal(name)
	}
	defer f.Close()
	if h.v1 {
		// The first layout kept no old bytes: the patch can only be finished.
		if err := applyPatch(f, j, h, dataOff, true); err != nil {
			return err
		}
		log.Info("finished a patch in place that was interrupted", "path", h.Path, "bytes", rangesBytes(h.Ranges))
		return removeJournal(name)
	}
	ok, err := holdsPatchOrOld(f, j, h, dataOff)
	if err != nil {
		return err
	}
	if !ok {
		// Written to after the agent stopped: the scan sends what is there as a local
		// edit of the version the state records, and a conflict copy keeps it if the
		// server's version moved on too.
		log.Warn("removed a patch journal whose file was changed after the agent stopped; the file is left as it is",
			"journal", name, "path", h.Path)
		return removeJournal(name)
	}
	if err := undoPatch(f, j, h, dataOff); err != nil {
		return err
	}
	log.Info("undid a patch in place that was interrupted; its download is planned again", "path", h.Path,
		"bytes", rangesBytes(h.oldSpans()))
	return removeJournal(name)
}

// openPatched opens the file that the patch h was writing, for reading and writing;
// nil, with the reason, when its path no longer names it: gone, not a regular file, not
// reachable in the folder, another inode, or a file with other links now.
func openPatched(root *os.Root, h patchHeader) (*os.File, string) {
	p := path.Clean(h.Path)
	fi, err := root.Lstat(p)
	if err != nil {
		return nil, err.Error()
	}
	if !fi.Mode().IsRegular() {
		return nil, "not a regular file: " + fi.Mode().Type().String()
	}
	f, err := root.OpenFile(p, os.O_RDWR|replayOpenFlags, 0)
	if err != nil {
		return nil, err.Error()
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, err.Error()
	}
	if ino, links, ok := fileIdentity(fi); !ok || ino != h.Ino || links != 1 || !fi.Mode().IsRegular() {
		f.Close()
		return nil, "another file, or one with other links"
	}
	return f, ""
}

// holdsPatchOrOld reports whether the file f holds only what the patch h (its journal
// j, its bytes from dataOff on) and the version it patched put there: a size of one or
// the other, every block outside the ranges as listed, and in the ranges, piece by
// piece, the new bytes, the old ones or, past the old size, the zeros an allocation
// left. Anything else was written by someone else after the agent stopped.
func holdsPatchOrOld(f, j *os.File, h patchHeader, dataOff int64) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	size := fi.Size()
	if size != h.Size && size != h.OldSize {
		return false, nil
	}
	// The bytes the patch overwrote, in the journal after the new ones, by offset.
	oldAt := dataOff + rangesBytes(h.Ranges)
	old := make(map[int64]int64) // a span's offset in the file → in the journal
	for _, r := range h.oldSpans() {
		old[r.Off] = oldAt
		oldAt += r.Len
	}
	newAt := dataOff
	got := make([]byte, tornUnit)
	want := make([]byte, tornUnit)
	for _, r := range h.Ranges {
		jOld, hasOld := old[r.Off]
		for o := int64(0); o < r.Len && r.Off+o < size; o += tornUnit {
			n := min(tornUnit, r.Len-o, size-r.Off-o)
			if _, err := f.ReadAt(got[:n], r.Off+o); err != nil {
				return false, err
			}
			if _, err := j.ReadAt(want[:n], newAt+o); err != nil {
				return false, err
			}
			if bytes.Equal(got[:n], want[:n]) {
				continue
			}
			// Within the old size the old bytes; past it the zeros of the allocation.
			inOld := min(max(h.OldSize-(r.Off+o), 0), n)
			if inOld > 0 {
				if !hasOld {
					return false, nil
				}
				if _, err := j.ReadAt(want[:inOld], jOld+o); err != nil {
					return false, err
				}
			}
			clear(want[inOld:n])
			if !bytes.Equal(got[:n], want[:n]) {
				return false, nil
			}
		}
		newAt += r.Len
	}
	if size > h.Size { // not cut yet: what lies past the new size is still the old
		at, ok := old[h.Size]
		if !ok {
			return false, nil
		}
		same, err := sameBytes(f, h.Size, j, at, size-h.Size)
		if err != nil || !same {
			return false, err
		}
	}
	return keptBlocksHold(f, h)
}

// keptBlocksHold reports whether f holds, at its offset, every block of h.Blocks that
// lies outside h's ranges, checked by its hash.
func keptBlocksHold(f *os.File, h patchHeader) (bool, error) {
	var off int64
	next := 0
	for _, b := range h.Blocks {
		for next < len(h.Ranges) && h.Ranges[next].Off+h.Ranges[next].Len <= off {
			next++
		}
		if next < len(h.Ranges) && h.Ranges[next].Off < off+b.Size {
			off += b.Size // in a range: checked piece by piece
			continue
		}
		if b.Size > chunk.MaxSize {
			return false, nil
		}
		data := chunk.GetBuf(int(b.Size))
		_, err := f.ReadAt(data, off)
		ok := err == nil && holds(b, data)
		chunk.PutBuf(data)
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if !ok {
			return false, nil
		}
		off += b.Size
	}
	return true, nil
}

// sameBytes reports whether a holds at aOff the n bytes b holds at bOff.
func sameBytes(a *os.File, aOff int64, b *os.File, bOff, n int64) (bool, error) {
	x, y := make([]byte, 1<<20), make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(x)))
		if _, err := a.ReadAt(x[:k], aOff); err != nil {
			return false, err
		}
		if _, err := b.ReadAt(y[:k], bOff); err != nil {
			return false, err
		}
		if !bytes.Equal(x[:k], y[:k]) {
			return false, nil
		}
		aOff, bOff, n = aOff+k, bOff+k, n-k
	}
	return true, nil
}
