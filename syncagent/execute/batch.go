package execute

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Small files are downloaded in batches: one request (POST /v1/blocks/get) brings the
// blocks of up to batchMaxFiles files, instead of one GET per file. The first sync of
// 10,000 small files made 10,000 requests, and their HTTP cost on both ends was more than
// the bytes'.
const (
	// batchFileMax is the largest file that rides in a batch (in one block).
	batchFileMax  = 256 << 10
	batchMaxFiles = 256
	// batchMaxBytes bounds a batch's bytes: with two in flight and one being handed
	// over, 4 MiB batches held 5.7 MB of a reader's heap at its peak, 1 MiB ones 4.7 MB
	// (the block buffers of GetBlocks). 512 KiB is still about 60 of W1's files.
	batchMaxBytes = 512 << 10
	// batchesInFlight bounds the batches fetched and not yet handed to the workers, and
	// so the bytes they hold (with batchMaxBytes).
	batchesInFlight = 2
)

// job is one download for a worker; pre, when set, is the file's one block, fetched
// already in a batch, and done, when set, is called once the worker is through with it.
type job struct {
	op   plan.Op
	pre  []byte
	done func()
}

// finish tells the job's batch that the worker is through with it.
func (j job) finish() {
	if j.done != nil {
		j.done()
	}
}

// batchBufSize is the room of a batch's buffer: a batch goes out once it holds
// batchMaxBytes, so its last file may take it up to a whole batchFileMax over.
const batchBufSize = batchMaxBytes + batchFileMax

// batchBufsKept is how many batch buffers (of batchBufSize) a batcher keeps for its next
// batches: one for each batch in flight and one whose files are still landing.
const batchBufsKept = batchesInFlight + 1

// returnBatchBuf, when set (tests), sees every batch buffer as it goes back.
var returnBatchBuf func(*[]byte)

// batcher groups the small files of a download slice into batched block requests and
// hands each file, with its block, to the workers.
type batcher struct {
	x     *Executor
	ctx   context.Context
	next  chan<- job
	slots chan struct{}
	wg    sync.WaitGroup

	ops    []plan.Op
	hashes []string
	bytes  int64
	// bufs holds the buffers that batches read their blocks into, for the batcher's
	// next batches. A buffer goes back once every file of its batch landed. (A
	// sync.Pool lost them to the collector, which ran every few dozen milliseconds in a
	// first sync of 100,000 files: 110 MB of fresh buffers.)
	bufs chan *[]byte
	// localHashes are the contents of the local files (made on first use): the first 8
	// bytes of their SHA-256, sorted. A map of 100,000 hash strings was 5.8 MB of a
	// reader's heap at its peak, a map of the prefixes 4 MB, this is 0.8 MB. Two
	// contents that share a prefix only send a file down the usual path, which looks for
	// local copies itself.
	localHashes []uint64
}

func (x *Executor) newBatcher(ctx context.Context, next chan<- job) *batcher {
	return &batcher{x: x, ctx: ctx, next: next, slots: make(chan struct{}, batchesInFlight), bufs: make(chan *[]byte, batchBufsKept)}
}

// add takes op into the current batch when it is a small file whose block is to come
// from the server; it reports false when op must be downloaded on its own.
func (b *batcher) add(op plan.Op) bool {
	x := b.x
	r := op.Remote
	if x.noBatch.Load() || r == nil || r.Type != proto.TypeFile || r.Size <= 0 || r.Size > batchFileMax {
		return false
	}
	if idx, ok := x.Trees.Index.Get(op.Path); ok && idx.Type == proto.TypeFile {
		// A new version of a local file: its block may come as a delta of the old one.
		return false
	}
	hash := r.SHA256
	if r.Size > chunk.MinSize {
		// Larger files may have been cut in several blocks: ask the state. Up to the
		// chunker's minimum, a file is one block named by its hash (should the server hold
		// no such block, the batch says so and the file takes the usual path).
		blocks, err := x.State.RemoteBlocks(op.Path)
		if err != nil || len(blocks) != 1 || blocks[0].Size != r.Size {
			return false
		}
		// One block of the whole file is named by the file's hash: the worker then lands
		// the downloaded block, checked by the client, without hashing it again. A list
		// that says otherwise takes the usual path, which checks each block.
		if h, err := plan.ParseHash(blocks[0].Hash); err != nil || h != hash {
			return false
		}
	}
	if b.localHashes == nil {
		b.localHashes = make([]uint64, 0, x.Trees.Index.Len())
		for _, idx := range x.Trees.Index.All() {
			if idx.Type == proto.TypeFile {
				b.localHashes = append(b.localHashes, hashPrefix(idx.SHA256))
			}
		}
		slices.Sort(b.localHashes)
	}
	if _, ok := slices.BinarySearch(b.localHashes, hashPrefix(hash)); ok {
		return false // a local file holds the content: the usual path copies it
	}
	b.ops = append(b.ops, op)
	b.hashes = append(b.hashes, hash.String())
	b.bytes += r.Size
	if len(b.ops) >= batchMaxFiles || b.bytes >= batchMaxBytes {
		b.flush()
	}
	return true
}

// hashPrefix is the first 8 bytes of a hash.
func hashPrefix(h plan.Hash) uint64 { return binary.BigEndian.Uint64(h[:8]) }

// flush fetches the current batch in the background and hands its files to the workers.
func (b *batcher) flush() {
	if len(b.ops) == 0 {
		return
	}
	ops, hashes := b.ops, b.hashes
	b.ops, b.hashes, b.bytes = nil, nil, 0
	select {
	case b.slots <- struct{}{}:
	case <-b.ctx.Done():
		// Hand the files over unfetched: the workers see the cancellation.
		for _, op := range ops {
			b.next <- job{op: op}
		}
		return
	}
	b.wg.Go(func() {
		defer func() { <-b.slots }()
		var data [][]byte
		var done func()
		if !b.x.noBatch.Load() { // a batch in flight may have found the server without them
			buf := b.buf()
			if data = b.x.fetchBatch(b.ctx, hashes, *buf); data == nil {
				b.putBuf(buf)
			} else {
				// The buffer goes back when the last file's worker is through with its block.
				var left atomic.Int32
				left.Store(int32(len(ops)))
				done = func() {
					if left.Add(-1) == 0 {
						b.putBuf(buf)
					}
				}
			}
		}
		for i, op := range ops {
			j := job{op: op}
			if data != nil {
				j.pre, j.done = data[i], done
			}
			b.next <- j
		}
	})
}

// buf returns a buffer of batchBufSize for a batch.
func (b *batcher) buf() *[]byte {
	select {
	case buf := <-b.bufs:
		return buf
	default:
		buf := make([]byte, batchBufSize)
		return &buf
	}
}

// putBuf keeps buf for a later batch, unless batchBufsKept are kept already.
func (b *batcher) putBuf(buf *[]byte) {
	if returnBatchBuf != nil {
		returnBatchBuf(buf)
	}
	select {
	case b.bufs <- buf:
	default:
	}
}

// discard drops the batch being gathered.
func (b *batcher) discard() {
	b.ops, b.hashes, b.bytes = nil, nil, 0
}

// wait flushes what is left and waits until every batch was handed over.
func (b *batcher) wait() {
	b.flush()
	b.wg.Wait()
}

// fetchBatch returns the blocks of hashes, each checked against its hash, or nil when
// the batch failed: the blocks are then downloaded one by one, which retries, reports
// and falls back as usual.
func (x *Executor) fetchBatch(ctx context.Context, hashes []string, buf []byte) [][]byte {
	data, err := x.Server.GetBlocksInto(ctx, hashes, buf)
	if errors.Is(err, client.ErrNotSupported) {
		x.Log.Info("the server has no batched block downloads; fetching blocks one by one", "err", err.Error())
		x.noBatch.Store(true)
		return nil
	}
	if err != nil {
		if ctx.Err() == nil {
			x.Log.Info("batched block download failed; fetching the blocks one by one", "blocks", len(hashes), "err", err.Error())
		}
		return nil
	}
	return data
}
