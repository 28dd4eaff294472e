package execute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

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
// behind a journal in the state dir: the ranges' new bytes, and the bytes they
// overwrite, are made durable in the journal first, then the new ones are written over
// the file, which is made durable, then the journal is removed. An agent that stops in
// between (a crash, a power cut) undoes the patch from the journal when it starts
// again (RecoverPatches), before it looks at the folder: the file is again the version
// its state records, and the download is planned again. A journal that was not
// complete when it stopped never touched the file and is dropped. The file keeps its
// inode, so a program holding it open sees the new bytes where a rename would have
// left it the old version; a file with other hard links is rebuilt as before, so that
// they keep their content.
//
// What is not written is trusted only once read: the blocks the patch keeps are checked
// against the file (by their fast sums) before anything is written, as a rebuild checks
// each block it copies, and the file is checked again on its descriptor right before
// the write, so that an edit made meanwhile is never taken for the new version. A
// restart undoes a patch only over a file that holds what the patch and the old version
// left there (its kept blocks, and old or new bytes in its ranges); a file a program
// changed after the agent stopped is left as it is, for the scan to send as a local
// edit.
const (
	// inPlaceMinSize is the smallest file patched in place: below it a rebuild costs
	// little, and the rename keeps the replacement whole for readers.
	inPlaceMinSize = 8 << 20
	// inPlaceMaxShare: at most one byte in inPlaceMaxShare of the new version is
	// written in place (and first in the journal); more and the file is rebuilt.
	inPlaceMaxShare = 8
	// journalMagic starts every patch journal (version 2 of its layout: with the
	// bytes overwritten and the new block list); journalMagicV1 started the first
	// layout, which an agent of that layout may have left: such a patch is finished.
	journalMagic   = "sfpatch2"
	journalMagicV1 = "sfpatch1"
	// tornUnit is the unit in which a crash may leave a write done or not: a file's
	// range is checked in pieces of it, each old or new (disks write sectors whole).
	tornUnit = 512
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
	// OldSize, OldMTimeNs and OldMode are the version patched over's; its bytes in
	// the ranges (and past Size, when the file shrinks) follow the ranges' new bytes in
	// the journal.
	OldSize    int64  `json:"oldSize"`
	OldMTimeNs int64  `json:"oldMtimeNs"`
	OldMode    uint32 `json:"oldMode"`
	// Blocks is the new version's block list: a restart checks the blocks outside the
	// ranges against the file before it finishes the patch.
	Blocks []proto.Block `json:"blocks"`

	// v1 marks a journal of the first layout (no OldSize, Blocks or old bytes).
	v1 bool
}

// oldSpans returns the stretches of the version patched over that the patch
// overwrites or cuts off, whose bytes the journal keeps: the ranges within OldSize,
// then what lies past Size.
func (h *patchHeader) oldSpans() []patchRange {
	var out []patchRange
	for _, r := range h.Ranges {
		if n := min(r.Off+r.Len, h.OldSize) - r.Off; n > 0 {
			out = append(out, patchRange{Off: r.Off, Len: n})
		}
	}
	if h.OldSize > h.Size {
		out = append(out, patchRange{Off: h.Size, Len: h.OldSize - h.Size})
	}
	return out
}

// changedInPlace returns the indexes in list of the blocks that local, the block list of
// the version on disk, does not hold at the same offset, when a patch in place may
// write them: list is at least inPlaceMinSize bytes, and they and what the new version
// cuts off the old are at most one byte in inPlaceMaxShare of it (the journal keeps the
// bytes overwritten or cut off). ok is false when the file is to be rebuilt.
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
	bytes += max(off-size, 0)
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
	f, err := x.Root.OpenFile(op.Path, os.O_RDWR, 0)
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
	if !ok || links != 1 || !isFile || st.Type != proto.TypeFile || !x.indexedAs(op.Path, st, op.Local) ||
		!settable(f, fi) || !keptHold(f, prev, blocks, changed) {
		return landed{}, false, nil
	}
	r := op.Remote
	h := patchHeader{Path: op.Path, Ino: ino, Size: r.Size, MTimeNs: r.MTimeNs, Mode: r.Mode & 0o777,
		Ranges: rangesOf(blocks, changed), OldSize: st.Size, OldMTimeNs: st.MTimeNs, OldMode: st.Mode, Blocks: blocks}
	want := make([]proto.Block, len(changed))
	for k, i := range changed {
		want[k] = blocks[i]
	}
	j, dataOff, fast, err := x.writeJournal(ctx, h, want, &fetchOpts{hints: baseHints(local, blocks), prev: prev}, f)
	if err != nil {
		return landed{}, true, err
	}
	defer j.Close()
	// The fetch took a while: a program that wrote to the file meanwhile keeps its
	// edit (the plan is made again), as a rebuild's last check before its rename does.
	if now, err := f.Stat(); err != nil || !scan.HasStat(now, st) || !x.indexedAs(op.Path, st, op.Local) {
		_ = removeJournal(j.Name())
		return landed{}, true, fmt.Errorf("%q: %w (written to while its patch was fetched)", op.Path, errChanged)
	}
	// A file that grows gets its new space first: a disk that is full then refuses
	// the patch before any byte of the file changed.
	if grow := r.Size - fi.Size(); grow > 0 {
		if err := reserve(f, fi.Size(), grow); err != nil {
			_ = f.Truncate(fi.Size()) // what a partial allocation added
			_ = removeJournal(j.Name())
			return landed{}, true, fmt.Errorf("patch %q in place: reserve %d bytes: %w", op.Path, grow, err)
		}
	}
	if err := x.applyPatch(f, j, h, dataOff); err != nil {
		// Part of the patch may be in the file: once more, and else the journal stays,
		// to be undone before anything else touches the folder (RecoverPatches).
		if err2 := x.applyPatch(f, j, h, dataOff); err2 != nil {
			x.patchesLeft.Store(true)
			return landed{}, true, fmt.Errorf("patch %q in place: %w (the file may hold part of each version "+
				"until the patch is undone from %s)", op.Path, err, j.Name())
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

// settable reports whether the agent may set f's mode and mtime, as a patch must (a
// file of another owner, shared through a group or world write bit, is not): setting
// its mode to what it is tells, and changes nothing but its ctime.
func settable(f *os.File, fi fs.FileInfo) bool {
	return f.Chmod(fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)) == nil
}

// keptHold reports whether the file f holds, at its offset, every block of blocks that
// a patch would keep (those not at the indexes changed): checked as a rebuild checks
// the blocks it copies from the previous version (prev.holds), since the index may
// lag the disk (a stat key kept by an edit) or the state (a list recorded late).
func keptHold(f *os.File, prev *previousFile, blocks []proto.Block, changed []int) bool {
	buf := chunk.GetBuf(int(chunk.MaxSize))
	defer chunk.PutBuf(buf)
	var off int64
	next := 0
	for i, b := range blocks {
		if next < len(changed) && changed[next] == i {
			next++
		} else if b.Size > int64(cap(buf)) {
			return false
		} else if _, err := f.ReadAt(buf[:b.Size], off); err != nil || !prev.holds(b, buf[:b.Size]) {
			return false
		}
		off += b.Size
	}
	return true
}

// patchFault, when set (tests), writes to the file instead of a patch and fails, as a
// disk error in the middle of a patch would.
var patchFault func(f *os.File) error

// applyPatch is the package's applyPatch, or patchFault's stand-in.
func (x *Executor) applyPatch(f, j *os.File, h patchHeader, dataOff int64) error {
	if patchFault != nil {
		return patchFault(f)
	}
	return applyPatch(f, j, h, dataOff, false)
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

// applyPatch writes the ranges of h, read from the journal j from dataOff on, over f,
// sets f's size, mode and mtime to the new version's, and makes f durable. It may run
// again on a file it already patched, with the same result. With lenient set (a
// restart finishing a journal of the first layout), a mode or mtime the agent may no
// longer set is left: the scan then takes the file by its content.
func applyPatch(f, j *os.File, h patchHeader, dataOff int64, lenient bool) error {
	if err := copySpans(f, j, h.Ranges, dataOff); err != nil {
		return err
	}
	return settle(f, h.Size, h.Mode, h.MTimeNs, lenient)
}

// copySpans writes over f, at each span's offset, the journal j's bytes from at on, in
// order.
func copySpans(f, j *os.File, spans []patchRange, at int64) error {
	buf := make([]byte, 1<<20)
	for _, r := range spans {
		if _, err := io.CopyBuffer(io.NewOffsetWriter(f, r.Off), io.NewSectionReader(j, at, r.Len), buf); err != nil {
			return err
		}
		at += r.Len
	}
	return nil
}

// settle sets f's size, mode and mtime, and makes f durable; with lenient set, a mode
// or mtime the agent may not set is left.
func settle(f *os.File, size int64, mode uint32, mtimeNs int64, lenient bool) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	err := f.Chmod(fs.FileMode(mode))
	if err == nil {
		if err = setMTime(f, mtimeNs); err != nil {
			err = fmt.Errorf("set mtime: %w", err)
		}
	}
	if err != nil && (!lenient || !errors.Is(err, fs.ErrPermission)) {
		return err
	}
	return f.Sync()
}
