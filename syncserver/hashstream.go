package syncserver

import (
	"crypto/sha256"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Hash streams let the commit of a large file skip re-reading it. A client that
// uploads a file's blocks may name an upload stream and each block's offset in the file
// (PUT /v1/blocks/{hash}?stream=ID&off=N), then name the stream in the commit item. The
// server hashes the stream's blocks in file order as they arrive (from the bytes the
// PUT carried, which the store verified against the block's name, while they fit in
// heldBudget; else reading each back from the store), so that at commit time the
// whole-file SHA-256 of the list's content is already computed, up to where the stream
// got. The commit uses the stream only as far as its blocks are exactly the entry's
// list, in order, with the stored sizes, and hashes the rest of the list from the store
// as before: the SHA-256 the commit checks is always that of the stored bytes of the
// listed blocks in list order, computed by the server; what the client says only decides
// how much of it was done early. A stream is the agent's own (keyed by its identity),
// and an unknown, expired or broken stream only means the whole list is hashed at
// commit.
const (
	// maxStreams bounds the streams the server keeps; the least recently used goes.
	maxStreams = 64
	// streamIdle is how long an unused stream is kept.
	streamIdle = 10 * time.Minute
	// maxStreamPending bounds the blocks a stream holds that wait for an earlier
	// offset; a stream over it is dropped.
	maxStreamPending = 4096
	// maxStreamID bounds a stream's name.
	maxStreamID = 64
	// heldBudget bounds the bytes of uploaded blocks all streams hold until their turn
	// to be hashed; a block beyond it is read back from the store when its turn comes.
	heldBudget = 64 << 20
	// maxHeldBlock is the largest block whose bytes are held: the largest packed one.
	maxHeldBlock = 1 << 20
)

// heldBufs are the buffers that hold blocks' bytes for their streams.
var heldBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, maxHeldBlock)
	return &b
}}

// pendingBlock is a block of a stream waiting for the blocks before it.
type pendingBlock struct {
	b    proto.Block
	data *[]byte // its bytes, verified by the store (nil: read it back)
}

type streamKey struct{ agent, id string }

// hashStream is the running SHA-256 of one upload, in file order.
type hashStream struct {
	mu      sync.Mutex
	idle    *sync.Cond // signalled when pumping ends
	h       hash.Hash  // written only by the goroutine that set pumping
	next    int64      // offset of the first byte not hashed
	list    []proto.Block
	pending map[int64]pendingBlock
	pumping bool
	broken  bool
	used    time.Time
	track   prefixTracker // written only by the pumping goroutine, like h
}

// hashStreams holds the server's streams.
type hashStreams struct {
	blocks BlockStore
	cps    *checkpoints
	now    func() time.Time
	mu     sync.Mutex
	m      map[streamKey]*hashStream
	held   atomic.Int64 // bytes of blocks held by pending entries (heldBudget)
}

func newHashStreams(blocks BlockStore, cps *checkpoints) *hashStreams {
	return &hashStreams{blocks: blocks, cps: cps, now: time.Now, m: map[streamKey]*hashStream{}}
}

// validStreamID accepts short names of letters, digits, '-' and '_'.
func validStreamID(id string) bool {
	if id == "" || len(id) > maxStreamID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func (hs *hashStreams) get(k streamKey, create bool) *hashStream {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	now := hs.now()
	st := hs.m[k]
	if st == nil && create {
		var oldest streamKey
		var oldestUse time.Time
		for key, o := range hs.m {
			if now.Sub(o.used) > streamIdle {
				delete(hs.m, key)
				hs.drop(o)
			} else if oldestUse.IsZero() || o.used.Before(oldestUse) {
				oldest, oldestUse = key, o.used
			}
		}
		if len(hs.m) >= maxStreams {
			hs.drop(hs.m[oldest])
			delete(hs.m, oldest)
		}
		st = &hashStream{h: sha256.New(), pending: map[int64]pendingBlock{}, track: prefixTracker{cps: hs.cps}}
		st.idle = sync.NewCond(&st.mu)
		hs.m[k] = st
	}
	if st != nil {
		st.used = now
	}
	return st
}

// hold returns a buffer for the bytes of a block uploaded to a stream, or nil when the
// streams hold heldBudget already; each buffer counts as maxHeldBlock bytes. The caller
// gives it to add, or back with release.
func (hs *hashStreams) hold() *[]byte {
	if hs.held.Add(maxHeldBlock) > heldBudget {
		hs.held.Add(-maxHeldBlock)
		return nil
	}
	b := heldBufs.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// release gives back a buffer hold returned (nil: none).
func (hs *hashStreams) release(data *[]byte) {
	if data == nil {
		return
	}
	hs.held.Add(-maxHeldBlock)
	heldBufs.Put(data)
}

// heldWriter collects a block's bytes into a buffer from hold. Bytes past its capacity
// (a block too large to hold) are left out, so the buffer then falls short of the block's
// size and add does not use it.
type heldWriter struct{ b *[]byte }

func (w heldWriter) Write(p []byte) (int, error) {
	if len(*w.b)+len(p) <= cap(*w.b) {
		*w.b = append(*w.b, p...)
	}
	return len(p), nil
}

// drop releases what a stream no longer used holds.
func (hs *hashStreams) drop(st *hashStream) {
	st.mu.Lock()
	defer st.mu.Unlock()
	hs.dropPending(st)
}

// dropPending releases the stream's pending blocks; the caller holds st.mu.
func (hs *hashStreams) dropPending(st *hashStream) {
	for _, p := range st.pending {
		hs.release(p.data)
	}
	st.pending = nil
}

// add records that block b, just stored (or found stored), is at offset off of the
// stream, with its bytes in data when hold gave a buffer (the store verified them against
// b's name), and starts hashing the blocks that are next in order. add takes data over.
func (hs *hashStreams) add(k streamKey, off int64, b proto.Block, data *[]byte) {
	if data != nil && int64(len(*data)) != b.Size {
		hs.release(data)
		data = nil
	}
	st := hs.get(k, true)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken || off < st.next {
		hs.release(data)
		return // a block sent again for a part already hashed: the list check decides
	}
	if len(st.pending) >= maxStreamPending {
		hs.release(data)
		st.broken = true
		hs.dropPending(st)
		return
	}
	if old, ok := st.pending[off]; ok {
		hs.release(old.data)
	}
	st.pending[off] = pendingBlock{b: b, data: data}
	if !st.pumping {
		st.pumping = true
		go hs.pump(st)
	}
}

// pump hashes the stream's blocks while the next one is there.
func (hs *hashStreams) pump(st *hashStream) {
	st.mu.Lock()
	defer st.mu.Unlock()
	defer st.idle.Broadcast()
	for !st.broken {
		p, ok := st.pending[st.next]
		if !ok {
			break
		}
		delete(st.pending, st.next)
		st.mu.Unlock()
		var err error
		if p.data != nil {
			st.h.Write(*p.data)
			hs.release(p.data)
		} else {
			err = hashBlock(hs.blocks, st.h, p.b)
		}
		if err == nil {
			st.track.add(p.b, st.h)
		}
		st.mu.Lock()
		if err != nil {
			st.broken = true
			hs.dropPending(st)
			break
		}
		st.list = append(st.list, p.b)
		st.next += p.b.Size
	}
	st.pumping = false
}

// hashBlock writes a stored block's bytes to h, checking its size.
func hashBlock(blocks BlockStore, h io.Writer, b proto.Block) error {
	f, err := openBlock(blocks, b)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(h, f)
	if err == nil && n != b.Size {
		return itemErrorf("block %s is shorter than its size", b.Hash)
	}
	return err
}

// take removes the stream and returns its hash state and how many blocks of list it
// covers: the longest prefix of list that the stream hashed, in order. It returns nil
// when the stream is unknown, broken, or does not start as list does.
func (hs *hashStreams) take(k streamKey, list []proto.Block) (hash.Hash, int) {
	hs.mu.Lock()
	st := hs.m[k]
	delete(hs.m, k)
	hs.mu.Unlock()
	if st == nil {
		return nil, 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for st.pumping {
		st.idle.Wait()
	}
	hs.dropPending(st) // blocks past a gap: never hashed now
	if st.broken || len(st.list) == 0 || len(st.list) > len(list) {
		return nil, 0
	}
	for i, b := range st.list {
		if list[i] != b {
			return nil, 0
		}
	}
	st.broken = true // taken: any late add changes nothing
	return st.h, len(st.list)
}
