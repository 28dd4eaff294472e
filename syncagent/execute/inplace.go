package execute

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/syncedfolder/synced-folder/internal/dirsync"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A large file edited in a few places (a byte changed in the middle of a disk image)
// was rebuilt whole: the reader wrote a new copy of every byte and made it durable
// before the rename, 1 GiB for one byte, twice the disk space meanwhile, and seconds of
// a disk that the server's own commits then queued behind (docs/benchmarks.md, W3).
// When the new version keeps every other block of the version on disk at the same
// offset, the reader now writes only the changed byte ranges, into the file itself,
// behind a redo journal in the state dir: the ranges' new bytes are made durable in
// the journal first, then written over the file, which is made durable, then the
// journal is removed. An agent that stops in between (a crash, a power cut) finishes
// the patch from the journal when it starts again (ReplayPatches), before it looks at
// the folder; a journal that was not complete when it stopped never touched the file
// and is dropped. The file keeps its inode, so a program holding it open sees the new
// bytes where a rename would have left it the old version; a file with other hard
// links is rebuilt as before, so that they keep their content.
const (
	// inPlaceMinSize is the smallest file patched in place: below it a rebuild costs
	// little, and the rename keeps the replacement whole for readers.
	inPlaceMinSize = 8 << 20
	// inPlaceMaxShare: at most one byte in inPlaceMaxShare of the new version is
	// written in place (and first in the journal); more and the file is rebuilt.
	inPlaceMaxShare = 8
	// journalMagic starts every patch journal (version 1 of its layout).
	journalMagic = "sfpatch1"
	// journalPrefix and journalSuffix name the journals in the state dir.
	journalPrefix = "patch-"
	journalSuffix = ".journal"
)

// patchRange is a stretch of a file that a patch writes.
type patchRange struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}

// patchHeader is what a patch journal says of its patch; the ranges' bytes follow it,
// in order, then the SHA-256 of everything before.
type patchHeader struct {
	// Path is the file's path in the folder.
	Path string `json:"path"`
	// Ino is the file's inode: a journal whose path now names another file is dropped.
	Ino uint64 `json:"ino"`
	// Size, MTimeNs and Mode are the new version's.
	Size    int64        `json:"size"`
	MTimeNs int64        `json:"mtimeNs"`
	Mode    uint32       `json:"mode"`
	Ranges  []patchRange `json:"ranges"`
}

// changedInPlace returns the indexes in list of the blocks that local, the block list of
// the version on disk, does not hold at the same offset, when a patch in place may
// write them: list is at least inPlaceMinSize bytes, and they are at most one byte in
// inPlaceMaxShare of it. ok is false when the file is to be rebuilt.
func changedInPlace(local, list []proto.Block) (changed []int, ok bool) {
	if len(local) == 0 {
		return nil, false
	}
	at := make(map[int64]string, len(local))
	var off int64
	for _, b := range local {
		at[off] = b.Hash
		off += b.Size
	}
	var size, bytes int64
	for i, b := range list {
		if h, ok := at[size]; !ok || h != b.Hash {
			changed = append(changed, i)
			bytes += b.Size
		}
		size += b.Size
	}
	if size < inPlaceMinSize || bytes > size/inPlaceMaxShare {
		return nil, false
	}
	return changed, true
}

// rangesOf returns the byte ranges of the blocks of list at the indexes changed,
// adjacent ones merged.
func rangesOf(list []proto.Block, changed []int) []patchRange {
	var out []patchRange
	var off int64
	next := 0
	for i, b := range list {
		if next < len(changed) && changed[next] == i {
			next++
			if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == off {
				out[n-1].Len += b.Size
			} else {
				out = append(out, patchRange{Off: off, Len: b.Size})
			}
		}
		off += b.Size
	}
	return out
}

// patchInPlace lands op, a file of blocks whose version on disk is prev (indexed as
// local), by writing only what changed into the file itself (see above). used is false
// when the edit or the file does not allow it (the caller rebuilds the file then).
func (x *Executor) patchInPlace(ctx context.Context, op plan.Op, blocks []proto.Block, prev *previousFile, local []proto.Block) (l landed, used bool, err error) {
	if !patchInPlaceSupported || x.JournalDir == "" || prev == nil || op.Local == nil || op.Local.Type != proto.TypeFile {
		return landed{}, false, nil
	}
	changed, ok := changedInPlace(local, blocks)
	if !ok || !covers(blocks, op.Remote.Size) {
		return landed{}, false, nil // rebuilt instead, whose checks report a bad list
	}
	// The file is opened once, and what is patched is what this descriptor names: the
	// checks of the disk are made on it.
	f, err := x.Root.OpenFile(op.Path, os.O_WRONLY, 0)
	if err != nil {
		return landed{}, false, nil //nolint:nilerr // rebuilt instead, whose checks report it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return landed{}, false, nil //nolint:nilerr // as above
	}
	ino, links, ok := fileIdentity(fi)
	st, isFile := scan.Stat(fi)
	if !ok || links != 1 || !isFile || st.Type != proto.TypeFile || !x.indexedAs(op.Path, st, op.Local) {
		return landed{}, false, nil
	}
	r := op.Remote
	h := patchHeader{Path: op.Path, Ino: ino, Size: r.Size, MTimeNs: r.MTimeNs, Mode: r.Mode & 0o777,
		Ranges: rangesOf(blocks, changed)}
	want := make([]proto.Block, len(changed))
	for k, i := range changed {
		want[k] = blocks[i]
	}
	j, dataOff, fast, err := x.writeJournal(ctx, h, want, &fetchOpts{hints: baseHints(local, blocks), prev: prev})
	if err != nil {
		return landed{}, true, err
	}
	defer j.Close()
	// A file that grows gets its new space first: a disk that is full then refuses
	// the patch before any byte of the file changed.
	if grow := r.Size - fi.Size(); grow > 0 {
		if err := reserve(f, fi.Size(), grow); err != nil {
			_ = removeJournal(j.Name())
			return landed{}, true, fmt.Errorf("patch %q in place: reserve %d bytes: %w", op.Path, grow, err)
		}
	}
	if err := x.applyPatch(f, j, h, dataOff); err != nil {
		// Part of the patch may be in the file: once more, and else the journal stays,
		// to be finished before the folder is scanned again (FinishPatches).
		if err2 := x.applyPatch(f, j, h, dataOff); err2 != nil {
			x.patchesLeft.Store(true)
			return landed{}, true, fmt.Errorf("patch %q in place: %w (the file may hold part of each version "+
				"until the patch is finished from %s)", op.Path, err, j.Name())
		}
	}
	if fi, err = f.Stat(); err != nil {
		return landed{}, true, fmt.Errorf("stat patched file: %w", err)
	}
	l = landedOf(fi, op, blocks)
	l.sums.Fast = patchedSums(blocks, changed, fast, prev)
	if err := removeJournal(j.Name()); err != nil {
		return landed{}, true, err
	}
	// The bytes kept count as done and reused, as those of a rebuild read from the file.
	written := rangesBytes(h.Ranges)
	x.Counters.BytesDone.Add(r.Size - written)
	x.Counters.BytesReused.Add(r.Size - written)
	x.Counters.PatchedInPlace.Add(1)
	x.Log.Info("patched in place", "path", op.Path, "bytes", written, "ranges", len(h.Ranges))
	return l, true, nil
}

// patchFault, when set (tests), writes to the file instead of a patch and fails, as a
// disk error in the middle of a patch would.
var patchFault func(f *os.File) error

// applyPatch is the package's applyPatch, or patchFault's stand-in.
func (x *Executor) applyPatch(f, j *os.File, h patchHeader, dataOff int64) error {
	if patchFault != nil {
		return patchFault(f)
	}
	return applyPatch(f, j, h, dataOff)
}

// FinishPatches finishes the patches in place whose writes into their files failed
// (their journals stayed; see ReplayPatches). The agent calls it before each scan: a
// file left part old, part new would otherwise look like a local edit, and its bytes
// would go to the server. It costs nothing when no patch failed.
func (x *Executor) FinishPatches() error {
	if !x.patchesLeft.Load() {
		return nil
	}
	if err := ReplayPatches(x.Root, x.JournalDir, x.Log); err != nil {
		return err
	}
	x.patchesLeft.Store(false)
	return nil
}

// patchedSums returns the fast sums of the blocks of a file patched in place: fast for
// the changed ones (in order), the previous version's for the others; nil when the
// previous version's are unknown.
func patchedSums(blocks []proto.Block, changed []int, fast []chunk.FastSum, prev *previousFile) []chunk.FastSum {
	if prev.sums == nil || len(blocks) < 2 {
		return nil
	}
	out := make([]chunk.FastSum, len(blocks))
	next := 0
	for i, b := range blocks {
		if next < len(changed) && changed[next] == i {
			out[i] = fast[next]
			next++
			continue
		}
		s, ok := prev.sums[b.Hash]
		if !ok {
			return nil
		}
		out[i] = s
	}
	return out
}

func rangesBytes(rs []patchRange) int64 {
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

// writeJournal writes the journal of the patch h, whose ranges hold the blocks want
// (fetched as a download's, local ones from o.prev), and makes it durable. It returns
// the journal, open for reading, where the ranges' bytes start in it, and the blocks'
// fast sums.
func (x *Executor) writeJournal(ctx context.Context, h patchHeader, want []proto.Block, o *fetchOpts) (j *os.File, dataOff int64, fast []chunk.FastSum, err error) {
	if err := os.MkdirAll(x.JournalDir, 0o700); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(x.JournalDir, journalPrefix+hex.EncodeToString(rnd[:])+journalSuffix)
	j, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			j.Close()
			_ = os.Remove(name)
		}
	}()
	head, err := json.Marshal(h)
	if err != nil {
		return nil, 0, nil, err
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(j, sum), 1<<20)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(head)))
	_, _ = bw.WriteString(journalMagic)
	_, _ = bw.Write(n[:])
	_, _ = bw.Write(head)
	fast = make([]chunk.FastSum, 0, len(want))
	k := 0
	err = x.fetchBlocks(ctx, want, o, func(data []byte) error {
		if int64(len(data)) != want[k].Size {
			return fmt.Errorf("block %s: %d bytes, listed with %d", want[k].Hash, len(data), want[k].Size)
		}
		k++
		fast = append(fast, chunk.FastSumOf(data))
		_, err := bw.Write(data)
		return err
	})
	if err != nil {
		return nil, 0, nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	if _, err := j.Write(sum.Sum(nil)); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	if err := j.Sync(); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	if err := dirsync.SyncPath(os.Open, x.JournalDir); err != nil {
		return nil, 0, nil, fmt.Errorf("patch journal: %w", err)
	}
	ok = true
	return j, int64(len(journalMagic)) + 4 + int64(len(head)), fast, nil
}

// readJournal reads and checks the header of the journal j, and returns it with the
// offset of the ranges' bytes. complete is false when the journal is not whole (its
// sum is missing or wrong): it was being written when the agent stopped, so the file
// was never touched.
func readJournal(j *os.File) (h patchHeader, dataOff int64, complete bool, err error) {
	fi, err := j.Stat()
	if err != nil {
		return h, 0, false, err
	}
	size := fi.Size()
	pre := int64(len(journalMagic)) + 4
	if size < pre+sha256.Size {
		return h, 0, false, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(j, 0, size-sha256.Size)); err != nil {
		return h, 0, false, err
	}
	var got [sha256.Size]byte
	if _, err := j.ReadAt(got[:], size-sha256.Size); err != nil {
		return h, 0, false, err
	}
	if !bytes.Equal(sum.Sum(nil), got[:]) {
		return h, 0, false, nil
	}
	start := make([]byte, pre)
	if _, err := j.ReadAt(start, 0); err != nil {
		return h, 0, false, err
	}
	if string(start[:len(journalMagic)]) != journalMagic {
		return h, 0, true, fmt.Errorf("not a patch journal (magic %q)", start[:len(journalMagic)])
	}
	n := int64(binary.BigEndian.Uint32(start[len(journalMagic):]))
	if pre+n > size-sha256.Size {
		return h, 0, true, fmt.Errorf("header of %d bytes past the journal's end", n)
	}
	head := make([]byte, n)
	if _, err := j.ReadAt(head, pre); err != nil {
		return h, 0, true, err
	}
	if err := json.Unmarshal(head, &h); err != nil {
		return h, 0, true, fmt.Errorf("header: %w", err)
	}
	dataOff = pre + n
	if err := h.validate(size - sha256.Size - dataOff); err != nil {
		return h, 0, true, err
	}
	return h, dataOff, true, nil
}

// validate checks a header read back against the data bytes its journal holds.
func (h patchHeader) validate(data int64) error {
	if h.Path == "" || !fs.ValidPath(h.Path) || h.Path == "." || strings.Contains(h.Path, "\\") {
		return fmt.Errorf("path %q is not a path in the folder", h.Path)
	}
	if h.Size < 0 || h.Mode&^0o777 != 0 {
		return fmt.Errorf("size %d, mode %o: out of range", h.Size, h.Mode)
	}
	var end, n int64
	for _, r := range h.Ranges {
		if r.Off < end || r.Len <= 0 || r.Off+r.Len > h.Size {
			return fmt.Errorf("range %d+%d: out of order or past the size %d", r.Off, r.Len, h.Size)
		}
		end = r.Off + r.Len
		n += r.Len
	}
	if n != data {
		return fmt.Errorf("ranges of %d bytes, journal holds %d", n, data)
	}
	return nil
}

// applyPatch writes the ranges of h, read from the journal j from dataOff on, over f, sets f's size,
// mode and mtime to the new version's, and makes f durable. It may run again on a file
// it already patched, with the same result.
func applyPatch(f, j *os.File, h patchHeader, dataOff int64) error {
	buf := make([]byte, 1<<20)
	for _, r := range h.Ranges {
		if _, err := io.CopyBuffer(io.NewOffsetWriter(f, r.Off), io.NewSectionReader(j, dataOff, r.Len), buf); err != nil {
			return err
		}
		dataOff += r.Len
	}
	if err := f.Truncate(h.Size); err != nil {
		return err
	}
	if err := f.Chmod(fs.FileMode(h.Mode)); err != nil {
		return err
	}
	if err := setMTime(f, h.MTimeNs); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return f.Sync()
}

// removeJournal removes a patch's journal once its file is durable, and makes the
// removal durable: a journal found again would patch the file again, over what a
// program wrote to it since.
func removeJournal(name string) error {
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("remove patch journal: %w", err)
	}
	if err := dirsync.SyncPath(os.Open, filepath.Dir(name)); err != nil {
		return fmt.Errorf("remove patch journal: %w", err)
	}
	return nil
}

// ReplayPatches finishes the patches in place that an agent left unfinished when it
// stopped: for each journal in dir (the state dir) that is complete, the file it names
// in root is patched from it, unless that path now names another file. Journals that
// are not complete never touched their file and are removed. It must run before the
// folder is scanned: a half-patched file would otherwise look like a local edit. An
// error (a journal that cannot be read or applied) leaves that journal in place.
func ReplayPatches(root *os.Root, dir string, log *slog.Logger) error {
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
		if err := replayPatch(root, name, log); err != nil {
			return fmt.Errorf("patch journal %s: %w (the file it patches may be part old, part new; "+
				"remove the journal to start without finishing it)", name, err)
		}
	}
	return nil
}

func replayPatch(root *os.Root, name string, log *slog.Logger) error {
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
	f, err := root.OpenFile(path.Clean(h.Path), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("removed a patch journal whose file is gone", "journal", name, "path", h.Path)
		return removeJournal(name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if ino, _, ok := fileIdentity(fi); !ok || ino != h.Ino || !fi.Mode().IsRegular() {
		log.Info("removed a patch journal whose path names another file now", "journal", name, "path", h.Path)
		return removeJournal(name)
	}
	if err := applyPatch(f, j, h, dataOff); err != nil {
		return err
	}
	log.Info("finished a patch in place that was interrupted", "path", h.Path, "bytes", rangesBytes(h.Ranges))
	return removeJournal(name)
}
