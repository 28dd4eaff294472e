package execute

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/syncedfolder/synced-folder/internal/dirsync"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// writebackChunk is how much of a large file is written before its writeback starts.
const writebackChunk = 8 << 20

// landed is a download that reached its final name, to be recorded.
type landed struct {
	op     plan.Op
	idx    trees.IndexEntry
	blocks []proto.Block
	// sums holds the blocks' fast sums, taken as they were written (files of several
	// blocks), or what the index kept of a file renamed into place (landRenamed).
	sums chunk.Sums
	// remote is a block list fetched from the server for op.Remote (the feed had
	// omitted it), to be recorded.
	remote []proto.Block
}

// downloadSlice bounds the files of one download slice: their results (about 300 bytes
// each) are held until the slice is flushed (one syncfs, which costs up to a second on
// a busy disk) and recorded.
const downloadSlice = 10000

// download makes the disk equal op.Remote for each op: dirs first (parents before
// children), then files and symlinks in parallel, in slices of downloadSlice ops whose
// results are recorded (after one flush) before the next slice starts, so that what a
// large plan holds in memory and what a crash would make it check again stay bounded.
func (x *Executor) download(ctx context.Context, ops []plan.Op, out *Outcome) error {
	var rest []plan.Op
	var done []landed
	for _, op := range ops {
		if op.Remote == nil {
			x.fail(op, errors.New("download without a remote node"), out)
			continue
		}
		if op.Remote.Type != proto.TypeDir {
			rest = append(rest, op)
			continue
		}
		l, err := x.downloadDir(op)
		if err != nil {
			x.outcome(op, err, out)
			continue
		}
		done = append(done, l)
	}
	x.openStage()
	defer x.closeStage()
	for start := 0; start == 0 || start < len(rest); start += downloadSlice {
		if err := x.downloadSome(ctx, rest[start:min(start+downloadSlice, len(rest))], done, out); err != nil {
			return err
		}
		done = nil
	}
	return nil
}

// downloadSome downloads ops in parallel and records them with done, the dirs that
// landed before.
func (x *Executor) downloadSome(ctx context.Context, ops []plan.Op, done []landed, out *Outcome) error {
	start := time.Now()
	// Room for every result at once: grown by appends, a slice of 10,000 made 90 MB of
	// garbage in a first sync of 100,000 files.
	done = slices.Grow(done, len(ops))
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		stopErr error
	)
	next := make(chan job)
	for range min(x.Workers, len(ops)) {
		wg.Go(func() {
			for j := range next {
				op := j.op
				var l landed
				var err error
				switch {
				case op.Remote.Type == proto.TypeSymlink:
					l, err = x.downloadSymlink(op)
				case j.pre != nil:
					l, err = x.assembleFetched(op, j.pre)
				default:
					l, err = x.downloadFile(ctx, op)
				}
				j.finish()
				mu.Lock()
				if err == nil {
					done = append(done, l)
				} else if transient(err) {
					if stopErr == nil {
						stopErr = err
					}
				} else {
					x.outcome(op, err, out)
				}
				mu.Unlock()
			}
		})
	}
	batches := x.newBatcher(ctx, next)
	for _, op := range ops {
		mu.Lock()
		stop := stopErr != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			batches.discard() // not sent, like the ops after it
			break
		}
		if !batches.add(op) {
			next <- job{op: op}
		}
	}
	batches.wait()
	close(next)
	wg.Wait()
	took := time.Since(start)
	x.noteLanded(done, out)
	// The slice before this one is recorded first: the state's writes stay in order.
	if err := x.WaitRecorded(); err != nil {
		return err
	}
	x.recordLater(done, len(ops), took)
	if limit := cmp.Or(x.leaveRunning, leaveRunningMax); len(done) > limit {
		if err := x.WaitRecorded(); err != nil {
			return err
		}
	}
	if stopErr != nil {
		return stopErr
	}
	return ctx.Err()
}

// leaveRunningMax is the most landed files whose record is left running beside the next
// slice: a larger slice's results (≈ 330 bytes a file) would stay in memory beside the
// next one's (3 MiB more at the peak of a 100,000-file first sync, whose slices hold
// 10,000), and its one flush is shared by many files anyway.
const leaveRunningMax = 4096

// noteLanded puts landed files in the trees, so that the next plan starts from the disk
// as it is, and counts them; recordLater records them in the state.
func (x *Executor) noteLanded(done []landed, out *Outcome) {
	for _, l := range done {
		p := l.op.Path
		x.Trees.Synced.Set(p, *l.op.Remote)
		x.Trees.Index.Set(p, l.idx)
		x.Trees.Local.Set(p, l.idx.Node())
		out.Done++
		x.Counters.FilesDone.Add(1)
	}
}

// recordLater flushes a download slice (flushLanded) and then records it in the state,
// in the background: the agent meanwhile pulls, plans and lands the next slice, instead
// of waiting for the disk. The state still says synced only once the files are on disk.
// The record takes the state's connection once released (pendingRecord.start): by the
// executor's next Run, or by a wait for it.
// WaitRecorded collects the outcome; every other write of the state by the executor
// waits for it first (Run), and so must the agent's own writes that a stale row could
// contradict (an index write of a path it holds, see Recording; a reset of the trees)
// and its Close.
func (x *Executor) recordLater(done []landed, files int, took time.Duration) {
	if len(done) == 0 {
		return
	}
	r := &pendingRecord{done: make(chan struct{}), start: make(chan struct{}), landed: done}
	x.recording = r
	go func() {
		defer close(r.done)
		start := time.Now()
		if err := flushLanded(x.Root, done); err != nil {
			r.err = fmt.Errorf("sync downloaded files: %w", err)
			return
		}
		synced := time.Now()
		<-r.start
		r.err = x.recordLanded(done)
		x.Log.Debug("downloaded", "files", files, "took", took.String(),
			"syncTook", synced.Sub(start).String(), "recordTook", time.Since(synced).String())
	}()
}

// flushLanded makes what a download slice landed durable before the state says synced:
// each file's bytes, and each dir entry a rename or mkdir made. Were an entry lost in a
// crash, the state would hold the new version while the old file (or none) is back at
// the path, and the next scan would take that for a local edit or delete, and send it.
func flushLanded(root *os.Root, done []landed) error {
	wholeFS, dirs := planFlush(done, haveSyncFS, syncEachAbove)
	if wholeFS {
		return syncFS(root)
	}
	for _, d := range dirs {
		if err := dirsync.SyncPath(root.Open, d); err != nil {
			return err
		}
	}
	return nil
}

// planFlush decides how flushLanded makes done durable: with one syncfs (wholeFS, only
// when haveSyncFS), or by fsyncing dirs. A file of more than syncEachAbove bytes (every
// file where syncfs(2) is missing: syncEachAbove < 0) was fsynced before its rename, so
// only its dir is left. A smaller file, a symlink (which cannot be opened to fsync) or a
// new dir (whose own entries and inode are new) needs the whole filesystem flushed where
// syncfs exists; where it does not, its dir is fsynced, and a new dir itself too.
func planFlush(done []landed, haveSyncFS bool, syncEachAbove int64) (wholeFS bool, dirs []string) {
	set := make(map[string]struct{})
	for _, l := range done {
		r := l.op.Remote
		if haveSyncFS && (r.Type != proto.TypeFile || r.Size <= syncEachAbove) {
			return true, nil
		}
		set[path.Dir(l.op.Path)] = struct{}{}
		if r.Type == proto.TypeDir {
			set[l.op.Path] = struct{}{}
		}
	}
	return false, slices.Sorted(maps.Keys(set))
}

// pendingRecord is a download slice's record left running by recordLater.
type pendingRecord struct {
	done chan struct{} // closed when it is over
	// start, closed by release, lets the record take the state's one connection. Until
	// then the agent applies the feed's next pages and plans without waiting for it
	// (20–50 ms a slice of a first sync, twice as long as the slice's flush and plan);
	// the record then runs beside the next slice's downloads.
	start   chan struct{}
	started sync.Once
	err     error // its outcome, once done is closed
	landed  []landed
	paths   map[string]struct{} // landed's paths, made on the first Recording call
}

// Recording reports whether the record left running (recordLater) writes the state of
// p: a write of p's index must wait for it, while others need not.
func (x *Executor) Recording(p string) bool {
	r := x.recording
	if r == nil {
		return false
	}
	if r.paths == nil {
		r.paths = make(map[string]struct{}, len(r.landed))
		for _, l := range r.landed {
			r.paths[l.op.Path] = struct{}{}
		}
	}
	_, ok := r.paths[p]
	return ok
}

// release lets the record take the state's connection; see pendingRecord.start.
func (r *pendingRecord) release() {
	r.started.Do(func() { close(r.start) })
}

// releaseRecord releases the record left running, if any: the next run of the executor
// and every wait for the record do, so that it runs beside the next slice or while the
// agent has nothing else to do.
func (x *Executor) releaseRecord() {
	if x.recording != nil {
		x.recording.release()
	}
}

// Recorded is closed when the record recordLater left running is over (nil when none
// is): a loop can wait for it beside other events, then collect it with WaitRecorded.
// It lets the record start.
func (x *Executor) Recorded() <-chan struct{} {
	if x.recording == nil {
		return nil
	}
	x.recording.release()
	return x.recording.done
}

// WaitRecorded waits for the record of the last download slice (recordLater) and returns
// its error. Should it have failed, the slice's files leave the Synced tree (unless a
// later op set them anew), so that the next plan looks at them again instead of trusting
// what the state never got.
func (x *Executor) WaitRecorded() error {
	r := x.recording
	if r == nil {
		return nil
	}
	r.release()
	<-r.done
	x.recording = nil
	if r.err == nil {
		return nil
	}
	for _, l := range r.landed {
		if n, ok := x.Trees.Synced.Get(l.op.Path); ok && n == *l.op.Remote {
			x.Trees.Synced.Delete(l.op.Path)
		}
	}
	return fmt.Errorf("record downloads: %w", r.err)
}

// outcome files a non-transient op error under skip or fail.
func (x *Executor) outcome(op plan.Op, err error, out *Outcome) {
	if errors.Is(err, errChanged) {
		x.skip(op, err, out)
	} else {
		x.fail(op, err, out)
	}
}

// recordLanded writes landed files to the state. It touches only the state and done (it
// runs beside the agent's goroutine, which owns the trees).
func (x *Executor) recordLanded(done []landed) error {
	if len(done) == 0 {
		return nil
	}
	return x.State.Update(context.Background(), func(tx *state.Tx) error {
		for _, l := range done {
			p := l.op.Path
			if err := tx.PutSynced(p, *l.op.Remote); err != nil {
				return err
			}
			if err := tx.PutIndex(p, l.idx, l.blocks, l.sums); err != nil {
				return err
			}
			if l.remote != nil {
				if err := tx.SetRemoteBlocks(p, l.op.Remote.Seq, l.remote); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// ensureParent creates the parent dirs of p that are missing (a dir the plan creates in
// the same batch may come later than its content when the batch runs in parallel).
func (x *Executor) ensureParent(p string) error {
	dir := path.Dir(p)
	if dir == "." {
		return nil
	}
	if err := x.Root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%q: %w (parent dir: %w)", p, errChanged, err)
	}
	return nil
}

func (x *Executor) downloadDir(op plan.Op) (landed, error) {
	r := op.Remote
	fi, err := x.Root.Lstat(op.Path)
	if err == nil && !fi.IsDir() {
		// A file or link planned to be replaced by a dir: remove it once it still is what
		// the plan saw (its content is on the server or in a conflict copy by now).
		if err := x.checkDisk(op.Path, op.Local); err != nil {
			return landed{}, err
		}
		if err := x.Root.Remove(op.Path); err != nil {
			return landed{}, fmt.Errorf("remove %q to make a dir: %w", op.Path, err)
		}
		fi, err = nil, fs.ErrNotExist
		op.Local = nil
	}
	switch {
	case absent(err):
		if op.Local != nil {
			return landed{}, fmt.Errorf("%q: %w (gone)", op.Path, errChanged)
		}
		if err := x.ensureParent(op.Path); err != nil {
			return landed{}, err
		}
		if err := x.Root.Mkdir(op.Path, os.FileMode(r.Mode&0o777)|0o700); errors.Is(err, fs.ErrExist) {
			// Made since the stat: a dir is the one planned, anything else the user's.
			if fi, err := x.Root.Lstat(op.Path); err != nil || !fi.IsDir() {
				return landed{}, fmt.Errorf("%q: %w (appeared)", op.Path, errChanged)
			}
		} else if err != nil {
			return landed{}, fmt.Errorf("mkdir: %w", err)
		}
	case err != nil:
		return landed{}, fmt.Errorf("stat: %w", err)
	case !fi.IsDir():
		return landed{}, fmt.Errorf("%q: %w (not a dir)", op.Path, errChanged)
	}
	if r.Mode&0o777 != 0 {
		if err := x.Root.Chmod(op.Path, os.FileMode(r.Mode&0o777)); err != nil {
			return landed{}, fmt.Errorf("chmod: %w", err)
		}
	}
	return x.stat(op, nil)
}

// stat reads the stat key of a path just landed.
func (x *Executor) stat(op plan.Op, blocks []proto.Block) (landed, error) {
	return x.statAt(x.Root, op.Path, op, blocks)
}

// statAt is stat of op.Path, found as name in dir.
func (x *Executor) statAt(dir *os.Root, name string, op plan.Op, blocks []proto.Block) (landed, error) {
	fi, err := dir.Lstat(name)
	if err != nil {
		return landed{}, fmt.Errorf("stat after landing: %w", err)
	}
	return landedOf(fi, op, blocks), nil
}

// landedOf is what landing op recorded: the stat key fi and the remote content.
func landedOf(fi os.FileInfo, op plan.Op, blocks []proto.Block) landed {
	st, _ := scan.Stat(fi)
	st.SHA256, st.Target = op.Remote.SHA256, op.Remote.Target
	return landed{op: op, idx: st, blocks: blocks}
}

func tempName(p string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	dir := path.Dir(p)
	name := scan.TempPrefix + hex.EncodeToString(b[:])
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// replaceAt moves the temp file t over the path p, found as name in dir, once the disk
// at p still equals want; a dir at p (being replaced by a file or link) must be empty by
// now and is removed first.
func (x *Executor) replaceAt(dir *dircache.Dir, t tempFile, name, p string, want *plan.Node) error {
	if want == nil {
		// Planned absent: the rename itself refuses to replace what appeared since.
		if err := x.land(t, dir, name, p, true); !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	if err := x.checkDiskAt(dir.Root, name, p, want); err != nil {
		return err
	}
	if want != nil && want.Type == proto.TypeDir {
		if err := dir.Root.Remove(name); err != nil {
			return fmt.Errorf("%q: %w (dir not empty: %w)", p, errChanged, err)
		}
		// The path is absent now: what appears there before the rename is the user's.
		if err := x.land(t, dir, name, p, true); !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
		if _, err := dir.Root.Lstat(name); !absent(err) {
			return fmt.Errorf("%q: %w (appeared)", p, errChanged)
		}
	} else if want != nil {
		if err := x.exchangeChecked(t, dir, name, p, want); !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	return x.land(t, dir, name, p, false)
}

// exchangeChecked lands t over the file or link at p (name in dir), checked to be want,
// only if what it replaces is what was checked: t and p are swapped in one step
// (RENAME_EXCHANGE), and what came out is compared with the index before it is removed.
// A program's save that replaced p since the check is what came out: it is swapped back,
// and errChanged says so (t then holds the download again). ErrUnsupported where the
// system cannot swap: the caller renames over p.
func (x *Executor) exchangeChecked(t tempFile, dir *dircache.Dir, name, p string, want *plan.Node) error {
	from := dir.File
	if t.staged {
		if x.stage.rename != nil || x.stage.dir == nil {
			return errors.ErrUnsupported
		}
		from = x.stage.dir.File
	}
	if from == nil || dir.File == nil {
		return errors.ErrUnsupported
	}
	if err := exchangeAt(from, t.name, dir.File, name); err != nil {
		if absent(err) {
			return fmt.Errorf("%q: %w (gone)", p, errChanged)
		}
		return err
	}
	if x.holdsIndexed(t.dir, t.name, p, want) {
		return t.dir.Remove(t.name) // the version replaced
	}
	if err := exchangeAt(from, t.name, dir.File, name); err != nil {
		// The save stays where it came out; out of the temp name, which is removed.
		keep := path.Base(proto.ConflictPath(p, "saved-while-replaced", time.Now()))
		if err2 := renameAt(from, t.name, dir.File, keep, true); err2 != nil {
			return fmt.Errorf("%q: a save made while it was replaced is at %q of the staging or its dir: %w", p, t.name, err)
		}
		return fmt.Errorf("%q: %w (saved while it was replaced; kept as %q beside it)", p, errChanged, keep)
	}
	return fmt.Errorf("%q: %w (saved while it was replaced)", p, errChanged)
}

func (x *Executor) downloadSymlink(op plan.Op) (landed, error) {
	if err := x.ensureParent(op.Path); err != nil {
		return landed{}, err
	}
	l, err := x.symlinkVia(op, true)
	if errors.Is(err, errNotStaged) {
		x.retryUnstaged(op.Path, err)
		l, err = x.symlinkVia(op, false)
	}
	return l, err
}

// symlinkVia makes the link of op as a temp link (in the staging dir when stage is set)
// and renames it into place.
func (x *Executor) symlinkVia(op plan.Op, stage bool) (landed, error) {
	dir, name, release, err := x.parentDir(op.Path)
	if err != nil {
		return landed{}, err
	}
	defer release()
	t := x.newTemp(dir.Root, name, op.Path, stage && !isDir(op.Local))
	if err := t.dir.Symlink(op.Remote.Target, t.name); err != nil {
		if t.staged {
			return landed{}, fmt.Errorf("symlink: %w: %w", errNotStaged, err)
		}
		return landed{}, fmt.Errorf("symlink: %w", err)
	}
	if err := x.replaceAt(dir, t, name, op.Path, op.Local); err != nil {
		_ = t.dir.Remove(t.name)
		return landed{}, err
	}
	return x.stat(op, nil)
}

// isDir reports whether n is a dir. A dir being replaced is removed before the rename,
// so its replacement is made beside it, never in the staging dir: a failed rename from
// there must leave nothing changed for the retry to check.
func isDir(n *plan.Node) bool { return n != nil && n.Type == proto.TypeDir }

// assembleFetched writes a small file whose one block was fetched in a batch (data,
// checked against its hash by the client).
func (x *Executor) assembleFetched(op plan.Op, data []byte) (landed, error) {
	b := proto.Block{Hash: op.Remote.SHA256.String(), Size: int64(len(data))}
	x.Counters.BytesDown.Add(b.Size)
	x.Counters.BytesDone.Add(b.Size)
	return x.assembleFrom(op, []proto.Block{b}, func(write func([]byte) error) error {
		return write(data)
	})
}

// fetchOpts is how one assembly gets its blocks.
type fetchOpts struct {
	// hints pairs new blocks with the local blocks they replace (baseHints).
	hints map[string]proto.Block
	// prev is the version of the file on disk that the assembly replaces, or nil.
	prev *previousFile
}

// assemble writes a file from blocks (local ones where it can, server ones otherwise)
// in a temp file beside it, then renames it into place. Every block is checked against
// its hash on the way (fetchGroup), and the server checked, when the list was
// committed, that the blocks in order hash to the file's SHA-256; so the assembled file
// is not hashed again as a whole. That one pass could not be spread over the cores and
// was the longest stage of a large file's rebuild (docs/benchmarks.md).
func (x *Executor) assemble(ctx context.Context, op plan.Op, blocks []proto.Block) (landed, error) {
	prev, local := x.openPrevious(op.Path)
	if l, used, err := x.patchInPlace(ctx, op, blocks, prev, local); used {
		if p := x.takePrefetch(op.Path); p != nil {
			p.stop(x)
		}
		prev.close()
		return l, err
	}
	o := &fetchOpts{hints: baseHints(local, blocks), prev: prev}
	if p := x.takePrefetch(op.Path); p != nil {
		l, used, err := x.assemblePrefetched(ctx, op, blocks, p, func(rest []proto.Block, write func([]byte) error) error {
			return x.fetchBlocks(ctx, rest, o, write)
		})
		if used && !errors.Is(err, errNotStaged) {
			go prev.close()
			return l, err
		}
	}
	l, err := x.assembleFrom(op, blocks, func(write func([]byte) error) error {
		err := x.fetchBlocks(ctx, blocks, o, write)
		if !renameOverOpenFile {
			// A retry (not through the staging dir) finds the blocks by the state.
			o.prev.close()
			o.prev = nil
		}
		return err
	})
	// The version replaced is freed when its last descriptor closes; that costs the
	// file system about 0.1 s per GiB (ext4 frees its extents), so it is done off the
	// download's path instead of in the rename.
	go prev.close()
	return l, err
}

// renameOverOpenFile says whether a file open for reading may be replaced by a rename:
// Windows refuses it (Go opens files there without FILE_SHARE_DELETE).
const renameOverOpenFile = runtime.GOOS != "windows"

// assembleFrom writes the file of op from the bytes fetch passes to write, in a temp
// file (in the staging dir, else beside it), then renames it into place. A file that
// cannot land through the staging dir is made again beside its path (fetched again,
// unless fetch holds its bytes).
func (x *Executor) assembleFrom(op plan.Op, blocks []proto.Block, fetch func(write func([]byte) error) error) (landed, error) {
	r := op.Remote
	if !covers(blocks, r.Size) {
		return landed{}, fmt.Errorf("remote entry's blocks do not cover its %d bytes", r.Size)
	}
	// The bytes of one block are the whole content: its name is the file's hash.
	if len(blocks) == 1 && blocks[0].Hash != r.SHA256.String() {
		return landed{}, fmt.Errorf("remote entry's one block %s is not its content %s", blocks[0].Hash, r.SHA256)
	}
	dir, name, release, err := x.parentDir(op.Path)
	if err != nil {
		return landed{}, err
	}
	defer release()
	l, err := x.assembleIn(dir, name, op, blocks, fetch, true)
	if errors.Is(err, errNotStaged) {
		x.retryUnstaged(op.Path, err)
		l, err = x.assembleIn(dir, name, op, blocks, fetch, false)
	}
	return l, err
}

// assembleIn is assembleFrom with op's dir open as dir, op's name there being name; its
// temp file is in the staging dir when stage is set (and the staging dir is usable), an
// unnamed one there when op can be (openAnonFor), linked into place instead of renamed.
func (x *Executor) assembleIn(dir *dircache.Dir, name string, op plan.Op, blocks []proto.Block, fetch func(write func([]byte) error) error, stage bool) (landed, error) {
	r := op.Remote
	var t tempFile
	f, anon := x.openAnonFor(dir, op, stage)
	if !anon {
		t = x.newTemp(dir.Root, name, op.Path, stage && !isDir(op.Local))
		var err error
		f, err = t.dir.OpenFile(t.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			if t.staged {
				return landed{}, fmt.Errorf("create temp file: %w: %w", errNotStaged, err)
			}
			return landed{}, fmt.Errorf("create temp file: %w", err)
		}
	}
	ok := false
	defer func() {
		if !ok {
			f.Close() // an unnamed file is gone with its descriptor
			if !anon {
				_ = t.dir.Remove(t.name)
			}
		}
	}()
	a := newAssembly(f, r.Size, len(blocks) > 1, x.DirectIO)
	err := fetch(a.write)
	if err == nil {
		var l landed
		if l, ok, err = x.landAssembled(dir, name, op, blocks, f, t, anon, a); ok {
			return l, err
		}
	}
	return landed{}, err
}

// assembly is a file being written from its blocks, in order.
type assembly struct {
	w fileWriter
	// fast holds the fast sums of the blocks as written (files of several blocks): a
	// later rebuild of the file checks the blocks it takes from it by them
	// (previousFile), at a few percent of SHA-256's cost.
	fast    []chunk.FastSum
	several bool
	n       int // pieces written in full
}

func newAssembly(f *os.File, size int64, several, direct bool) *assembly {
	return &assembly{w: newFileWriter(f, size, direct), several: several}
}

// write writes the next block's bytes.
func (a *assembly) write(data []byte) error {
	if err := a.w.write(data); err != nil {
		return err
	}
	if a.several {
		a.fast = append(a.fast, chunk.FastSumOf(data))
	}
	a.n++
	return nil
}

// landAssembled finishes the temp file f (t, or unnamed when anon) that holds the
// content of op, written by a, and moves it into place as name in dir, which is
// op.Path, and returns what landed. placed says the file is in place (the caller must
// not remove it, even when err says its close failed).
func (x *Executor) landAssembled(dir *dircache.Dir, name string, op plan.Op, blocks []proto.Block, f *os.File, t tempFile, anon bool, a *assembly) (l landed, placed bool, err error) {
	r := op.Remote
	if err := a.w.finish(); err != nil {
		return landed{}, false, err
	}
	fast := a.fast
	if len(fast) != len(blocks) {
		fast = nil // written in other pieces than blocks
	}
	mode := os.FileMode(r.Mode & 0o777) // what Chmod would set of 0o7777 too
	if !anon {
		if err := f.Chmod(mode); err != nil {
			return landed{}, false, fmt.Errorf("chmod: %w", err)
		}
	}
	// The mtime is set, and the stat key read, on the open file where the system allows
	// (a rename changes neither): no path is resolved for them.
	statted := false
	err = setMTime(f, r.MTimeNs)
	if err == nil {
		statted = true
		fi, err := f.Stat()
		if err == nil && anon && fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != mode {
			// Made with its mode less the umask (openAnon): set in full only when that
			// differs, a system call per file spared in the usual case.
			if err = f.Chmod(mode); err != nil {
				return landed{}, false, fmt.Errorf("chmod: %w", err)
			}
			fi, err = f.Stat()
		}
		if err != nil {
			return landed{}, false, fmt.Errorf("stat temp file: %w", err)
		}
		l = landedOf(fi, op, blocks)
		l.sums.Fast = fast
	} else if !errors.Is(err, errors.ErrUnsupported) {
		return landed{}, false, fmt.Errorf("set mtime: %w", err)
	}
	if r.Size > syncEachAbove {
		if err := f.Sync(); err != nil {
			return landed{}, false, fmt.Errorf("fsync: %w", err)
		}
	}
	if anon {
		if !statted {
			return landed{}, false, errors.New("set mtime: not on the open file")
		}
		if err := x.landAnon(f, dir, name, op.Path); err != nil {
			return landed{}, false, err
		}
		if err := f.Close(); err != nil {
			return l, true, fmt.Errorf("close landed file: %w", err)
		}
		return l, true, nil
	}
	if err := f.Close(); err != nil {
		return landed{}, false, fmt.Errorf("close temp file: %w", err)
	}
	if !statted {
		mt := time.Unix(0, r.MTimeNs)
		if err := t.dir.Chtimes(t.name, mt, mt); err != nil {
			return landed{}, false, fmt.Errorf("set mtime: %w", err)
		}
	}
	if err := x.replaceAt(dir, t, name, op.Path, op.Local); err != nil {
		return landed{}, false, err
	}
	if statted {
		return l, true, nil
	}
	l, err = x.statAt(dir.Root, name, op, blocks)
	l.sums.Fast = fast
	return l, true, err
}

// baseHints pairs the blocks of list that replace blocks of local, the indexed list of
// the file being replaced (the middle of the two lists, head and tail being equal),
// with the block each replaces, by position: the server can then send each as a delta
// of the one the agent holds.
func baseHints(local, list []proto.Block) map[string]proto.Block {
	if len(local) == 0 {
		return nil
	}
	d := proto.DiffBlocks(0, local, list)
	old := local[d.Head : len(local)-d.Tail]
	if len(old) == 0 || len(d.Blocks) == 0 {
		return nil
	}
	hints := make(map[string]proto.Block, len(d.Blocks))
	for k, b := range d.Blocks {
		hints[b.Hash] = old[min(k*len(old)/len(d.Blocks), len(old)-1)]
	}
	return hints
}
