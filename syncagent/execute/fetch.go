package execute

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A file of several blocks is fetched in groups of consecutive blocks, each group in one
// request (POST /v1/blocks/get) for the blocks no local file holds: one request per
// block of a large file cost the reader and the server as much CPU per request as the
// block's bytes, and left the cores idle between them.
const (
	// fetchGroupBytes and fetchGroupBlocks bound a group (which holds at least one
	// block); the count stays far under a server's cap on the hashes of one request.
	fetchGroupBytes  = 2 << 20
	fetchGroupBlocks = 256
	// groupsAhead is how many groups of one file are fetched ahead of the writer.
	groupsAhead = 4
)

type fetched struct {
	data []byte
	err  error
	// pooled says that data goes back to the block buffers once written.
	pooled bool
	// group, when set, is the buffer of the batched request that data came in, given
	// back once every block it holds is written.
	group *groupBuf
}

// groupBuf is the buffer one batched request of a group reads its blocks into: a
// download of 1 GiB allocated 1 GiB of fresh slices, one per block, and the collector
// and the kernel's fresh pages that came with them were a tenth of the reader's CPU.
type groupBuf struct {
	b    []byte
	refs atomic.Int32
}

// groupBufs are the buffers of groupBuf, each of fetchGroupBytes: a group's blocks
// fit in one.
var groupBufs = sync.Pool{New: func() any { return &groupBuf{b: make([]byte, fetchGroupBytes)} }}

// getGroupBuf returns a group buffer with one reference, its caller's.
func getGroupBuf() *groupBuf {
	g := groupBufs.Get().(*groupBuf)
	g.refs.Store(1)
	return g
}

// returnGroupBuf, when set (tests), sees every group buffer as it goes back.
var returnGroupBuf func(*groupBuf)

// release drops a reference; the last one gives the buffer back.
func (g *groupBuf) release() {
	if g.refs.Add(-1) == 0 {
		if returnGroupBuf != nil {
			returnGroupBuf(g)
		}
		groupBufs.Put(g)
	}
}

// maxBlockBytesInFlight bounds the block bytes that all downloads together hold at once
// (fetched and not yet written): Workers files, each groupsAhead groups of up to
// fetchGroupBytes ahead, would otherwise hold up to 64 MiB.
const maxBlockBytesInFlight = 16 << 20

// weight is a block's share of the in-flight budget.
func weight(b proto.Block) int64 {
	return min(max(b.Size, 1), maxBlockBytesInFlight)
}

// fetchBlocks calls write with each block's bytes in order, fetching up to groupsAhead
// groups of blocks ahead within the executor's in-flight budget. Each file takes its
// share of the budget in block order and gives a block's share back once it is
// written, so a file waiting for its next block never waits on a share that it holds
// itself.
func (x *Executor) fetchBlocks(ctx context.Context, blocks []proto.Block, o *fetchOpts, write func([]byte) error) error {
	if len(blocks) == 1 {
		if err := x.inflight.Acquire(ctx, weight(blocks[0])); err != nil {
			return err
		}
		defer x.inflight.Release(weight(blocks[0]))
		data, err := x.block(ctx, blocks[0], o)
		if err != nil {
			return err
		}
		return write(data)
	}
	ctx, cancel := context.WithCancel(ctx)
	futures := make([]chan fetched, len(blocks))
	for i := range futures {
		futures[i] = make(chan fetched, 1)
	}
	// groupEnd[i] marks the last block of a group: its slot in window is given back
	// once it is written. Set before the group is launched, read after its future.
	groupEnd := make([]bool, len(blocks))
	window := make(chan struct{}, groupsAhead)
	launched, consumed := 0, 0
	prefetched := make(chan struct{})
	go func() {
		defer close(prefetched)
		for i := 0; i < len(blocks); {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			// The group's first block waits for its share; the others join it only if
			// their shares are free now: waiting while holding shares of a group not
			// launched yet could wait for ever on a small budget.
			if err := x.inflight.Acquire(ctx, weight(blocks[i])); err != nil {
				return
			}
			j, size := i+1, blocks[i].Size
			for j < len(blocks) && j-i < fetchGroupBlocks && size+blocks[j].Size <= fetchGroupBytes &&
				x.inflight.TryAcquire(weight(blocks[j])) {
				size += blocks[j].Size
				j++
			}
			groupEnd[j-1] = true
			launched = j
			first, group := i, blocks[i:j]
			go func() {
				for k, f := range x.fetchGroup(ctx, group, o) {
					futures[first+k] <- f
				}
			}()
			i = j
		}
	}()
	defer func() {
		// Give back the shares of blocks fetched (or being fetched) but not written.
		cancel()
		<-prefetched
		for i := consumed; i < launched; i++ {
			<-futures[i]
			x.inflight.Release(weight(blocks[i]))
		}
	}()
	for i := range blocks {
		var f fetched
		select {
		case f = <-futures[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		consumed = i + 1
		err := f.err
		if err == nil {
			if err = write(f.data); err != nil {
				err = fmt.Errorf("write temp file: %w", err)
			}
			if f.pooled {
				chunk.PutBuf(f.data)
			} else if f.group != nil {
				f.group.release()
			}
		}
		x.inflight.Release(weight(blocks[i]))
		if groupEnd[i] {
			<-window
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fetchGroup returns the bytes of a group of consecutive blocks, in order: from local
// files where they still hold them, with a delta against a local block where there is a
// hint, and the rest from the server in one request. When that request fails (or the
// server does not have it, or lacks a block), those blocks are fetched one by one,
// which also names the block at fault. Every block is checked against its hash here,
// on the group's goroutine: the groups in flight spread that work over the cores.
func (x *Executor) fetchGroup(ctx context.Context, group []proto.Block, o *fetchOpts) []fetched {
	out := make([]fetched, len(group))
	var plain []int
	for k, b := range group {
		_, hinted := o.hints[b.Hash]
		switch {
		case len(group) == 1 || hinted:
			out[k].data, out[k].err = x.block(ctx, b, o)
		default:
			if data := x.localBlock(b, o, true); data != nil {
				x.usedLocal(b)
				out[k].data, out[k].pooled = data, true
			} else {
				plain = append(plain, k)
			}
		}
	}
	if len(plain) > 1 && !x.noBatch.Load() {
		hashes := make([]string, len(plain))
		for n, k := range plain {
			hashes[n] = group[k].Hash
		}
		g := getGroupBuf()
		if datas := x.fetchBatch(ctx, hashes, g.b); datas != nil {
			left := plain[:0]
			for n, k := range plain {
				if datas[n] == nil {
					left = append(left, k) // the single fetch reports it missing
					continue
				}
				out[k].err = x.usedRemote(group[k], datas[n])
				if out[k].err == nil {
					g.refs.Add(1)
					out[k].data, out[k].group = datas[n], g
				}
			}
			plain = left
		}
		g.release()
	}
	for _, k := range plain {
		out[k].data, out[k].err = x.block(ctx, group[k], o)
	}
	return out
}

// usedLocal counts a block taken from a local file.
func (x *Executor) usedLocal(b proto.Block) {
	x.Counters.BytesReused.Add(b.Size)
	x.Counters.BytesDone.Add(b.Size)
}

// usedRemote checks the size of a block the server sent and counts it.
func (x *Executor) usedRemote(b proto.Block, data []byte) error {
	if int64(len(data)) != b.Size {
		return fmt.Errorf("block %s: %d bytes, want %d", b.Hash, len(data), b.Size)
	}
	x.Counters.BytesDown.Add(b.Size)
	x.Counters.BytesDone.Add(b.Size)
	return nil
}

// block returns a block's bytes, checked against its hash: from a local file that held
// it when indexed if it still does, else from the server, compressed against the local
// block it replaces (hints) when there is one.
func (x *Executor) block(ctx context.Context, b proto.Block, o *fetchOpts) ([]byte, error) {
	if data := x.localBlock(b, o, true); data != nil {
		x.usedLocal(b)
		return data, nil
	}
	var data []byte
	var err error
	if base, ok := o.hints[b.Hash]; ok {
		// The client checks the block it decodes against b's hash: a wrong base only
		// costs the fallback to the plain block.
		if bd := x.localBlock(base, o, false); bd != nil {
			data, err = x.Server.GetBlockDelta(ctx, b.Hash, base.Hash, bd)
			if err != nil && !transient(err) {
				x.Log.Info("block delta failed; fetching the block", "block", b.Hash, "err", err.Error())
				data, err = nil, nil
			}
		}
	}
	if data == nil && err == nil {
		data, err = x.Server.GetBlock(ctx, b.Hash)
	}
	if err != nil {
		return nil, err
	}
	if err := x.usedRemote(b, data); err != nil {
		return nil, err
	}
	return data, nil
}

// readLocal returns the bytes at l, or false when l no longer holds as many.
func (x *Executor) readLocal(l state.BlockLocation) ([]byte, bool) {
	f, err := openLocalFile(x.Root, l.Path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	return readBlockAt(f, l.Offset, l.Size)
}

// openLocalFile opens the folder's file p for reading its blocks, only when p is a
// regular file: a FIFO (or a device) a program put at an indexed path since its scan
// must not block the download that reads it, nor be read.
func openLocalFile(root *os.Root, p string) (*os.File, error) {
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%q: not a regular file: %w", p, errChanged)
	}
	return f, nil
}

// readBlockAt reads size bytes at off of f into a block buffer (chunk.GetBuf); false
// when f holds fewer.
func readBlockAt(f *os.File, off, size int64) ([]byte, bool) {
	data := chunk.GetBuf(int(size))
	if n, err := f.ReadAt(data, off); n != len(data) && err != nil {
		chunk.PutBuf(data)
		return nil, false
	}
	return data, true
}

// localBlock returns b's bytes from a local file that held it when indexed (the file's
// previous version first), or nil; with check, only bytes that still hash to b. The
// bytes are in a block buffer, which the caller may give back once done with them.
func (x *Executor) localBlock(b proto.Block, o *fetchOpts, check bool) []byte {
	if data := o.prev.read(b); data != nil {
		if !check || o.prev.holds(b, data) {
			return data
		}
		chunk.PutBuf(data)
	}
	locs, err := x.State.FindBlock(b.Hash)
	if err != nil {
		return nil
	}
	for _, l := range locs {
		if l.Size != b.Size || o.prev.tried(b, l) {
			continue
		}
		data, ok := x.readLocal(l)
		if ok && (!check || holds(b, data)) {
			return data
		}
		if ok {
			chunk.PutBuf(data)
		}
	}
	return nil
}

// holds reports whether data hashes to b's name.
func holds(b proto.Block, data []byte) bool {
	want, ok := proto.DecodeHash(b.Hash)
	return ok && sha256.Sum256(data) == want
}

// previousFile is the file's version on disk that a download replaces, open once for
// the whole assembly: most blocks of an edited large file are its blocks, which are
// read from it at the offsets its index gives, instead of each being looked up in the
// state and its file opened again. Each block read is checked (the file may have
// changed in place since it was indexed, its stat key kept): by its fast sum when the
// index has the file's, else against its hash.
type previousFile struct {
	path string
	f    *os.File
	at   map[string]state.BlockLocation // block hash → where the file held it
	sums map[string]chunk.FastSum       // block hash → its fast sum, when indexed
}

// openPrevious opens the file at p when the index holds its block list local, and
// returns it with that list; nil (and no list) when there is none or it cannot be
// opened.
func (x *Executor) openPrevious(p string) (*previousFile, []proto.Block) {
	idx, ok := x.Trees.Index.Get(p)
	if !ok || idx.Type != proto.TypeFile {
		return nil, nil
	}
	local, sums, err := x.State.LocalBlockSums(p)
	if err != nil || len(local) == 0 {
		return nil, nil
	}
	f, err := openLocalFile(x.Root, p)
	if err != nil {
		return nil, local
	}
	prev := &previousFile{path: p, f: f, at: make(map[string]state.BlockLocation, len(local))}
	fast := sums.Fast
	if fast != nil {
		prev.sums = make(map[string]chunk.FastSum, len(local))
	}
	var off int64
	for i, b := range local {
		if _, dup := prev.at[b.Hash]; !dup {
			prev.at[b.Hash] = state.BlockLocation{Path: p, Offset: off, Size: b.Size}
			if fast != nil {
				prev.sums[b.Hash] = fast[i]
			}
		}
		off += b.Size
	}
	return prev, local
}

// holds reports whether data, read where the previous version held b, still is b: by
// the block's fast sum when the index keeps one (chunk.FastSum), else by its SHA-256.
func (p *previousFile) holds(b proto.Block, data []byte) bool {
	if sum, ok := p.sums[b.Hash]; ok {
		return chunk.FastSumOf(data) == sum
	}
	return holds(b, data)
}

// read returns b's bytes where the previous version held it, unchecked; nil when it
// did not or no longer holds as many bytes. p may be nil.
func (p *previousFile) read(b proto.Block) []byte {
	if p == nil {
		return nil
	}
	l, ok := p.at[b.Hash]
	if !ok || l.Size != b.Size {
		return nil
	}
	data, _ := readBlockAt(p.f, l.Offset, l.Size)
	return data
}

// tried reports whether l is where read looked for b already.
func (p *previousFile) tried(b proto.Block, l state.BlockLocation) bool {
	return p != nil && p.at[b.Hash] == l
}

// close closes the file; p may be nil, and close may be called again.
func (p *previousFile) close() {
	if p != nil && p.f != nil {
		p.f.Close()
		p.f = nil
	}
}
