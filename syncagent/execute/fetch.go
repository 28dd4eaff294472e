package execute

import (
	"context"
	"errors"
	"fmt"
	"io"

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
// which also names the block at fault.
func (x *Executor) fetchGroup(ctx context.Context, group []proto.Block, o *fetchOpts) []fetched {
	out := make([]fetched, len(group))
	var plain []int
	for k, b := range group {
		_, hinted := o.hints[b.Hash]
		switch {
		case len(group) == 1 || hinted:
			out[k].data, out[k].err = x.block(ctx, b, o)
		default:
			if data := x.localBlock(b, o.verify); data != nil {
				x.usedLocal(b, o)
				out[k].data = data
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
		if datas := x.fetchBatch(ctx, hashes, o.verify); datas != nil {
			left := plain[:0]
			for n, k := range plain {
				if datas[n] == nil {
					left = append(left, k) // the single fetch reports it missing
					continue
				}
				out[k].err = x.usedRemote(group[k], datas[n], o, !o.verify)
				if out[k].err == nil {
					out[k].data = datas[n]
				}
			}
			plain = left
		}
	}
	for _, k := range plain {
		out[k].data, out[k].err = x.block(ctx, group[k], o)
	}
	return out
}

// usedLocal counts a block taken from a local file.
func (x *Executor) usedLocal(b proto.Block, o *fetchOpts) {
	if !o.verify {
		o.unverified.Add(1)
	}
	x.Counters.BytesReused.Add(b.Size)
	x.Counters.BytesDone.Add(b.Size)
}

// usedRemote checks the size of a block the server sent and counts it; unverified says
// its bytes were not hashed on the way.
func (x *Executor) usedRemote(b proto.Block, data []byte, o *fetchOpts, unverified bool) error {
	if int64(len(data)) != b.Size {
		return fmt.Errorf("block %s: %d bytes, want %d", b.Hash, len(data), b.Size)
	}
	if unverified {
		o.unverified.Add(1)
	}
	x.Counters.BytesDown.Add(b.Size)
	x.Counters.BytesDone.Add(b.Size)
	return nil
}

// block returns a block's bytes, from a local file that held it when indexed if it
// still does, else from the server: compressed against the local block it replaces
// (hints) when there is one.
func (x *Executor) block(ctx context.Context, b proto.Block, o *fetchOpts) ([]byte, error) {
	if data := x.localBlock(b, o.verify); data != nil {
		x.usedLocal(b, o)
		return data, nil
	}
	var data []byte
	var err error
	if base, ok := o.hints[b.Hash]; ok {
		// The client checks the block it decodes against b's hash: a wrong base only
		// costs the fallback to the plain block.
		if bd := x.localBlock(base, false); bd != nil {
			data, err = x.Server.GetBlockDelta(ctx, b.Hash, base.Hash, bd)
			if err != nil && !transient(err) {
				x.Log.Info("block delta failed; fetching the block", "block", b.Hash, "err", err.Error())
				data, err = nil, nil
			}
		}
	}
	unverified := false
	if data == nil && err == nil {
		if o.verify {
			data, err = x.Server.GetBlock(ctx, b.Hash)
		} else {
			data, err = x.Server.GetBlockUnchecked(ctx, b.Hash)
			unverified = true
		}
	}
	if err != nil {
		return nil, err
	}
	if err := x.usedRemote(b, data, o, unverified); err != nil {
		return nil, err
	}
	return data, nil
}

func (x *Executor) readLocal(l state.BlockLocation) ([]byte, bool) {
	f, err := x.Root.Open(l.Path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	data := make([]byte, l.Size)
	if _, err := f.ReadAt(data, l.Offset); err != nil && (!errors.Is(err, io.EOF) || len(data) != int(l.Size)) {
		return nil, false
	}
	return data, true
}

// localBlock returns b's bytes from a local file that held it when indexed, or nil;
// with verify, only bytes that still hash to b.
func (x *Executor) localBlock(b proto.Block, verify bool) []byte {
	locs, err := x.State.FindBlock(b.Hash)
	if err != nil {
		return nil
	}
	for _, l := range locs {
		if l.Size != b.Size {
			continue
		}
		if data, ok := x.readLocal(l); ok && (!verify || chunk.SumHex(data) == b.Hash) {
			return data
		}
	}
	return nil
}
