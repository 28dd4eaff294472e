package execute

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A reader need not wait for the commit of a large file to start on it. The server
// lists the uploads in progress (GET /v1/uploads) and the blocks each has stored so
// far, in file order (GET /v1/uploads/{no}); a prefetch writes those blocks, fetched
// and checked as a download's (fetchBlocks), into a temp file in the staging dir while
// the writer is still sending the rest. Nothing of it is visible: when the commit comes
// through the feed, the download of the path takes the temp file over (assemble) only
// if the blocks it holds are the first ones of the committed list, fetches the rest,
// and lands it as any download, with the same checks of the disk; otherwise the temp
// file is removed. So the reader's copy of a large file runs beside the upload instead
// of after it (docs/benchmarks.md, W2 and W6).
const (
	// maxPrefetches bounds the prefetches running at once.
	maxPrefetches = 2
	// prefetchKeep is how long a prefetch whose upload ended waits for its download.
	prefetchKeep = 30 * time.Second
	// prefetchPoll is how long one request for an upload's next blocks may wait.
	prefetchPoll = 20 * time.Second
)

// prefetch is the copy of one upload in progress.
type prefetch struct {
	up     proto.Upload
	name   string // the temp file's name in the staging dir
	cancel context.CancelFunc
	// stopPoll ends the requests for more blocks: the blocks fetched by then are
	// written, and the prefetch ends.
	stopPoll context.CancelFunc
	done     chan struct{} // closed when the prefetch's goroutine ended

	// Set by the goroutine, read once done is closed.
	f      *os.File
	a      *assembly
	blocks []proto.Block // the blocks handed to a, in order: a.n of them are written
	err    error
	ended  time.Time
}

// prefetches are the executor's prefetches, by path.
type prefetches struct {
	mu sync.Mutex
	m  map[string]*prefetch
}

// setup sets what Run and Prefetch need, once.
func (x *Executor) setup() {
	x.setupOnce.Do(func() {
		if x.Workers <= 0 {
			x.Workers = 8
		}
		if x.InlineMax <= 0 {
			x.InlineMax = 64 << 10
		}
		if x.inflight == nil {
			x.inflight = semaphore.NewWeighted(maxBlockBytesInFlight)
		}
	})
}

// Prefetch starts copying the upload up, which another agent is sending, into a temp
// file, for the download of its commit to take over. It must be called from the
// goroutine that owns the trees (it looks up the file's current version there, whose
// blocks are read from it). It reports whether a prefetch started: not when as many
// run already, when one of that upload does, or when the staging dir cannot be made. A
// prefetch of an earlier upload of the same path is dropped.
func (x *Executor) Prefetch(ctx context.Context, up proto.Upload) bool {
	x.setup()
	x.pre.mu.Lock()
	defer x.pre.mu.Unlock()
	if old := x.pre.m[up.Path]; old != nil {
		if old.up.No == up.No {
			return false
		}
		// An earlier upload of the path: its writer started again (the file changed
		// while it was sent), and the commit will name the later one's blocks.
		old.stop(x)
		delete(x.pre.m, up.Path)
	}
	running := 0
	for _, old := range x.pre.m {
		select {
		case <-old.done:
		default:
			running++
		}
	}
	if running >= maxPrefetches {
		return false
	}
	if err := x.Root.Mkdir(StageDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		x.Log.Debug("no prefetch: no staging dir", "path", up.Path, "err", err.Error())
		return false
	}
	name := tempName("")
	f, err := x.Root.OpenFile(StageDir+"/"+name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		x.Log.Debug("no prefetch: temp file", "path", up.Path, "err", err.Error())
		return false
	}
	prev, _ := x.openPrevious(up.Path)
	// The version of the path the server holds, whose blocks an edit names by reference:
	// the upload's blocks then come as stretches of its list.
	baseSeq, base, err := x.State.RemoteVersion(up.Path)
	if err != nil || len(base) == 0 { // none, or the feed left its list out
		baseSeq, base = 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	pollCtx, stopPoll := context.WithCancel(ctx)
	p := &prefetch{up: up, name: name, cancel: cancel, stopPoll: stopPoll, done: make(chan struct{}),
		f: f, a: newAssembly(f, up.Size, true, x.DirectIO)}
	if x.pre.m == nil {
		x.pre.m = map[string]*prefetch{}
	}
	x.pre.m[up.Path] = p
	go func() {
		defer close(p.done)
		defer prev.close()
		p.err = x.follow(ctx, pollCtx, p, prev, baseSeq, base)
		p.ended = time.Now()
		x.Log.Debug("prefetch ended", "path", up.Path, "upload", up.No, "blocks", p.a.n, "err", p.err)
	}()
	x.Log.Debug("prefetching an upload", "path", up.Path, "upload", up.No, "size", up.Size)
	return true
}

// follow fetches the upload's blocks as the server stores them, until the upload ends
// or pollCtx does. base is the list of the path's version baseSeq (0: none), which the
// server may answer runs of.
func (x *Executor) follow(ctx, pollCtx context.Context, p *prefetch, prev *previousFile, baseSeq int64, base []proto.Block) error {
	o := &fetchOpts{prev: prev}
	var written int64
	lastBase := -1 // the base block the last stretch ended with
	// An edit that keeps the base's blocks at their offsets will be patched in place
	// (patchInPlace): a copy of the file would only load the disk. Such an upload is
	// followed without fetching (held), until it turns out to be another kind of
	// change; then what was held is fetched first.
	var held []proto.Block
	var heldHints map[string]proto.Block
	hold := patchInPlaceSupported && x.JournalDir != "" && len(base) > 0 && p.up.Size >= inPlaceMinSize
	var baseOffs []int64
	if hold {
		baseOffs = offsetsOf(base)
	}
	var heldNew int64 // bytes of new blocks among held
	for {
		resp, err := x.Server.UploadBlocks(pollCtx, p.up.No, len(p.blocks), baseSeq, prefetchPoll)
		switch {
		case pollCtx.Err() != nil || client.IsNotFound(err):
			// Stopped for a download, or the upload ended: what was written stays.
			return nil //nolint:nilerr // the end of the upload, not a failure
		case err != nil:
			return err
		case resp.Runs != nil && resp.Base != baseSeq:
			return fmt.Errorf("upload %d: runs of version %d, asked against %d", p.up.No, resp.Base, baseSeq)
		}
		blocks, err := resp.Expand(base)
		if err != nil {
			return fmt.Errorf("upload %d: %w", p.up.No, err)
		}
		if len(blocks) == 0 {
			if resp.Done {
				return nil
			}
			continue
		}
		for _, b := range blocks {
			if b.Size <= 0 {
				return fmt.Errorf("upload %d: block %s of %d bytes", p.up.No, b.Hash, b.Size)
			}
			// The temp file stays within the size the writer announced.
			if written += b.Size; written > p.up.Size {
				return fmt.Errorf("upload %d: more than its %d bytes", p.up.No, p.up.Size)
			}
		}
		o.hints, lastBase = runHints(resp.Runs, base, lastBase)
		p.blocks = append(p.blocks, blocks...)
		if hold {
			kept, added := keepsOffsets(resp.Runs, baseOffs, written-sizeOf(blocks))
			heldNew += added
			hold = kept && heldNew <= p.up.Size/inPlaceMaxShare
			if hold {
				held = append(held, blocks...)
				heldHints = mergeHints(heldHints, o.hints)
				continue
			}
			blocks = append(held, blocks...)
			o.hints = mergeHints(heldHints, o.hints)
			held, heldHints = nil, nil
		}
		if err := x.fetchBlocks(ctx, blocks, o, p.a.write); err != nil {
			return err
		}
	}
}

// keepsOffsets reports whether runs, an answer's blocks starting at offset off of the
// new version, hold each stretch of the base (whose blocks start at baseOffs, its size
// last) at the offset it has there, and returns the bytes of the runs' new blocks.
func keepsOffsets(runs []proto.UploadRun, baseOffs []int64, off int64) (kept bool, added int64) {
	if runs == nil {
		return false, 0 // blocks only: not an edit of the base
	}
	for _, r := range runs {
		if r.Count > 0 {
			end := r.BaseFrom + r.Count // within the base: Expand checked it
			if end >= len(baseOffs) || baseOffs[r.BaseFrom] != off {
				return false, added
			}
			off += baseOffs[end] - baseOffs[r.BaseFrom]
			continue
		}
		n := sizeOf(r.Blocks)
		added += n
		off += n
	}
	return true, added
}

// offsetsOf returns the offset of each block of list, and the list's size last.
func offsetsOf(list []proto.Block) []int64 {
	out := make([]int64, len(list)+1)
	for i, b := range list {
		out[i+1] = out[i] + b.Size
	}
	return out
}

func sizeOf(list []proto.Block) int64 {
	var n int64
	for _, b := range list {
		n += b.Size
	}
	return n
}

// mergeHints returns a with b's pairs added (a may be nil).
func mergeHints(a, b map[string]proto.Block) map[string]proto.Block {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = make(map[string]proto.Block, len(b))
	}
	maps.Copy(a, b)
	return a
}

// runHints pairs each new block of runs (an edit's) with the block of base at its
// place, the one after the stretch before it (base's first when none was yet): the
// server can send it as a delta of that block (see baseHints). last is the index in
// base of the block the stretch before runs ended with (-1: none); runHints returns it
// for the next answer.
func runHints(runs []proto.UploadRun, base []proto.Block, last int) (map[string]proto.Block, int) {
	var hints map[string]proto.Block
	for _, r := range runs {
		if r.Count > 0 {
			last = r.BaseFrom + r.Count - 1
			continue
		}
		for _, b := range r.Blocks {
			last = min(last+1, len(base)-1)
			if last < 0 {
				continue
			}
			if hints == nil {
				hints = map[string]proto.Block{}
			}
			hints[b.Hash] = base[last]
		}
	}
	return hints, last
}

// takePrefetch returns the prefetch of p, which no longer belongs to the executor, or
// nil when there is none.
func (x *Executor) takePrefetch(p string) *prefetch {
	x.pre.mu.Lock()
	defer x.pre.mu.Unlock()
	pf := x.pre.m[p]
	delete(x.pre.m, p)
	return pf
}

// ExpirePrefetches removes the prefetches whose upload ended more than prefetchKeep
// ago without a download taking them (its commit was refused, or named other blocks).
func (x *Executor) ExpirePrefetches(now time.Time) {
	x.pre.mu.Lock()
	defer x.pre.mu.Unlock()
	for path, p := range x.pre.m {
		select {
		case <-p.done:
			if now.Sub(p.ended) > prefetchKeep {
				p.discard(x)
				delete(x.pre.m, path)
			}
		default:
		}
	}
}

// StopPrefetches ends every prefetch and removes its temp file.
func (x *Executor) StopPrefetches() {
	x.pre.mu.Lock()
	defer x.pre.mu.Unlock()
	for path, p := range x.pre.m {
		p.stop(x)
		delete(x.pre.m, path)
	}
}

// stop ends p and removes its temp file.
func (p *prefetch) stop(x *Executor) {
	p.cancel()
	<-p.done
	p.discard(x)
}

// discard removes the temp file of a prefetch that ended.
func (p *prefetch) discard(x *Executor) {
	p.f.Close()
	_ = x.Root.Remove(StageDir + "/" + p.name)
}

// assemblePrefetched lands op, a file of blocks, from its prefetch p: when the blocks p
// wrote are the first ones of blocks, it fetches the rest into the same temp file and
// lands it as assembleIn does. used is false when p could not be used (it is removed
// then, and the caller assembles the file anew).
func (x *Executor) assemblePrefetched(ctx context.Context, op plan.Op, blocks []proto.Block, p *prefetch, fetch func(blocks []proto.Block, write func([]byte) error) error) (l landed, used bool, err error) {
	p.stopPoll()
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	p.cancel() // ends what it fetches when ctx ended first
	<-p.done
	n := p.a.n
	if p.err != nil && !errors.Is(p.err, context.Canceled) || n == 0 || len(blocks) < 2 ||
		n > len(blocks) || !slices.Equal(p.blocks[:n], blocks[:n]) ||
		x.stage.dir == nil || x.unstaged(op.Path) || isDir(op.Local) {
		x.Log.Debug("prefetch not used", "path", op.Path, "upload", p.up.No, "written", n, "err", p.err)
		p.discard(x)
		return landed{}, false, nil
	}
	placed := false
	defer func() {
		if !placed {
			p.discard(x)
		}
	}()
	dir, name, release, err := x.parentDir(op.Path)
	if err != nil {
		return landed{}, true, err
	}
	defer release()
	if err := fetch(blocks[n:], p.a.write); err != nil {
		return landed{}, true, err
	}
	t := tempFile{dir: x.stage.dir.Root, name: p.name, staged: true}
	l, placed, err = x.landAssembled(dir, name, op, blocks, p.f, t, false, p.a)
	if !placed {
		return landed{}, true, err
	}
	x.Log.Debug("prefetch used", "path", op.Path, "upload", p.up.No, "prefetched", n, "blocks", len(blocks))
	return l, true, err
}
