package syncserver

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
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
	// maxStreamPending bounds the blocks a stream holds that are not hashed yet (waiting
	// for an earlier offset, or queued); a stream over it is dropped. A 1 GiB file is
	// about 4,096 blocks.
	maxStreamPending = 8192
	// maxListsKept bounds the version lists kept for the streams' next stretches (a
	// 1 GiB file's is about 4,096 blocks, 0.5 MB).
	maxListsKept = 4
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
	// baseIdx is the block's index in the list of the stream's base version when it was
	// named as such (addStored), else -1.
	baseIdx int
}

// queuedBlock is a block of a stream whose blocks before it are all there, waiting to be
// hashed.
type queuedBlock struct {
	pendingBlock
	key   prefixKey // names the stream's prefix that ends with this block
	state []byte    // a checkpoint's SHA-256 state after that prefix, when the server has one
}

type streamKey struct{ agent, id string }

// hashStream is the running SHA-256 of one upload, in file order.
type hashStream struct {
	mu    sync.Mutex
	idle  *sync.Cond    // signalled when pumping ends
	h     hash.Hash     // written only by the goroutine that set pumping
	track prefixTracker // written only by the pumping goroutine, like h

	list  []proto.Block // blocks taken for hashing, in order (all hashed when !pumping)
	queue []queuedBlock // the blocks after list, in order, not hashed yet
	// bases holds, for each block of list then queue, its index in the list of base
	// when it was named as one of those (addStored), else -1: the upload's readers get
	// such stretches as references to the version they hold (uploads.go).
	bases   []int32
	end     int64     // offset just after list and queue
	endKey  prefixKey // names the prefix list + queue
	pending map[int64]pendingBlock
	stored  bool  // blocks were named by reference (addStored): hashing them reads the store
	missed  int64 // bytes queued since the last one whose prefix has a checkpoint
	// base is the version whose blocks addStored named first; diverged says the stream's
	// blocks are no longer the first ones of its list (the edit is behind): no
	// checkpoint of that version lies ahead.
	base     proto.ContentRef
	diverged bool
	final    bool // the stream is being taken: hash everything queued
	pumping  bool
	broken   bool
	// gone says the stream left hs.m (taken by its commit, or dropped): it takes no
	// more blocks.
	gone bool
	used time.Time
	// ctx ends the stream's hashing when it is dropped (cancel): a stream pushed out by
	// newer ones, or expired, must not go on reading and hashing the blocks it named.
	ctx    context.Context
	cancel context.CancelFunc

	// no, path and size describe the upload once its writer opened the stream
	// (uploads.go); they are written under hs.mu and st.mu both, so either reads them.
	no   int64
	path string
	size int64
	// changed wakes the upload's readers when list and queue grow or the stream ends
	// (broken or gone).
	changed wakeup
}

// hashStreams holds the server's streams.
type hashStreams struct {
	blocks BlockStore
	cps    *checkpoints
	now    func() time.Time
	mu     sync.Mutex
	m      map[streamKey]*hashStream
	held   atomic.Int64  // bytes of blocks held by pending entries (heldBudget)
	lists  []versionList // the version lists addStored resolved last, oldest first
	lastNo int64         // the last upload number given (uploads.go)
	opened wakeup        // fired when a stream is opened as an upload; guarded by mu
}

// versionList is the block list of a version.
type versionList struct {
	ref    proto.ContentRef
	blocks []proto.Block
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
		hs.expire(now)
		if len(hs.m) >= maxStreams {
			var oldest streamKey
			var oldestUse time.Time
			for key, o := range hs.m {
				if oldestUse.IsZero() || o.used.Before(oldestUse) {
					oldest, oldestUse = key, o.used
				}
			}
			hs.drop(hs.m[oldest])
			delete(hs.m, oldest)
		}
		st = &hashStream{h: sha256.New(), pending: map[int64]pendingBlock{}, track: prefixTracker{cps: hs.cps}}
		st.ctx, st.cancel = context.WithCancel(context.Background())
		st.idle = sync.NewCond(&st.mu)
		hs.m[k] = st
	}
	if st != nil {
		st.used = now
	}
	return st
}

// expire drops the streams unused for streamIdle. The caller holds hs.mu.
func (hs *hashStreams) expire(now time.Time) {
	for key, o := range hs.m {
		if now.Sub(o.used) > streamIdle {
			delete(hs.m, key)
			hs.drop(o)
		}
	}
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

// drop releases what a stream no longer used holds; the caller took it out of hs.m.
func (hs *hashStreams) drop(st *hashStream) {
	st.cancel()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gone = true
	hs.dropPending(st)
	st.changed.fire()
}

// dropPending releases the blocks the stream has not hashed; the caller holds st.mu.
func (hs *hashStreams) dropPending(st *hashStream) {
	for _, p := range st.pending {
		hs.release(p.data)
	}
	for _, q := range st.queue {
		hs.release(q.data)
	}
	st.pending, st.queue = nil, nil
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
	if !hs.put(st, off, pendingBlock{b: b, data: data, baseIdx: -1}) {
		hs.release(data)
		return
	}
	hs.advance(st)
}

// put files a block of the stream at off; false when the stream does not take it.
// The caller holds st.mu.
func (hs *hashStreams) put(st *hashStream, off int64, p pendingBlock) bool {
	if st.broken || st.gone || off < st.end {
		return false // a block sent again for a part already taken: the list check decides
	}
	if len(st.pending)+len(st.queue) >= maxStreamPending {
		st.broken = true
		hs.dropPending(st)
		st.changed.fire()
		return false
	}
	if old, ok := st.pending[off]; ok {
		hs.release(old.data)
	}
	st.pending[off] = p
	return true
}

// addStored records that the stream continues at off with the blocks of base's list
// from its block from on (a run of a committed version's list, StreamBlocksRequest),
// hashed from the store. It returns the offset after them, or false when the stream
// does not take them (broken, a part already taken, or over maxStreamPending).
func (hs *hashStreams) addStored(k streamKey, off int64, base proto.ContentRef, from int, blocks []proto.Block) (int64, bool) {
	st := hs.get(k, true)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken || st.gone || off < st.end || len(st.pending)+len(st.queue)+len(blocks) > maxStreamPending {
		return 0, false
	}
	if !st.stored {
		st.stored, st.base = true, base
	}
	for i, b := range blocks {
		idx := from + i
		if base != st.base {
			idx = -1
		}
		hs.put(st, off, pendingBlock{b: b, baseIdx: idx})
		off += b.Size
	}
	hs.advance(st)
	return off, true
}

// advance queues the pending blocks that are next in order and starts hashing them.
// The caller holds st.mu.
func (hs *hashStreams) advance(st *hashStream) {
	n := len(st.queue)
	for !st.broken {
		p, ok := st.pending[st.end]
		if !ok {
			break
		}
		delete(st.pending, st.end)
		if p.baseIdx != len(st.list)+len(st.queue) {
			st.diverged = true
		}
		st.endKey = st.endKey.Next(p.b)
		q := queuedBlock{pendingBlock: p, key: st.endKey}
		if hs.cps != nil {
			q.state = hs.cps.lookup(q.key)
		}
		if st.missed += p.b.Size; q.state != nil {
			st.missed = 0
		}
		st.queue = append(st.queue, q)
		st.bases = append(st.bases, int32(p.baseIdx))
		st.end += p.b.Size
	}
	if len(st.queue) > n {
		st.changed.fire() // the upload's readers see the blocks (uploads.go)
	}
	hs.startPump(st)
}

// startPump starts hashing the stream's queued blocks unless it is under way. The caller
// holds st.mu.
func (hs *hashStreams) startPump(st *hashStream) {
	if !st.pumping && !st.broken && len(st.queue) > 0 {
		st.pumping = true
		go hs.pump(st)
	}
}

// checkpointLag is how much of a stream of stored blocks is left unhashed until more
// follows: a checkpoint (checkpoint.go) for a prefix up to that far ahead would make
// hashing it useless. Checkpoints lie at most checkpointEvery plus one block apart.
func checkpointLag() int64 { return checkpointEvery + maxHeldBlock }

// pump hashes the stream's queued blocks. It first jumps to the furthest queued prefix
// the server holds a checkpoint of. A stream that names stored blocks (an edit of a
// large file) keeps checkpointLag bytes queued until the stream is taken, as a
// checkpoint further on may spare them; not once its blocks part from the base's list
// (the edit is behind them: no later prefix of that version can match), nor once twice
// that many have passed without a checkpoint.
func (hs *hashStreams) pump(st *hashStream) {
	st.mu.Lock()
	defer st.mu.Unlock()
	defer st.idle.Broadcast()
	defer func() { st.pumping = false }()
	for !st.broken {
		hs.resume(st)
		n := len(st.queue)
		if st.stored && !st.final && !st.diverged && st.missed < 2*checkpointLag() {
			for lag := int64(0); n > 0 && lag < checkpointLag(); n-- {
				lag += st.queue[n-1].b.Size
			}
		}
		if n == 0 {
			return
		}
		todo := st.queue[:n:n]
		st.queue = slices.Clone(st.queue[n:])
		for _, q := range todo {
			st.list = append(st.list, q.b)
		}
		st.mu.Unlock()
		err := hs.hashQueued(st, todo)
		st.mu.Lock()
		if err != nil {
			st.broken = true
			hs.dropPending(st)
			st.changed.fire()
		}
	}
}

// resume moves the stream's hash to the furthest queued block whose prefix has a
// checkpoint, skipping the blocks up to it. The caller holds st.mu and set pumping.
func (hs *hashStreams) resume(st *hashStream) {
	for i := len(st.queue) - 1; i >= 0; i-- {
		q := st.queue[i]
		if q.state == nil {
			continue
		}
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(q.state); err != nil {
			return
		}
		st.h = h
		st.track.key, st.track.since = q.key, 0
		for _, s := range st.queue[:i+1] {
			st.list = append(st.list, s.b)
			hs.release(s.data)
		}
		st.queue = slices.Clone(st.queue[i+1:])
		return
	}
}

// hashQueued hashes blocks in order: the bytes a PUT left, or the stored block.
func (hs *hashStreams) hashQueued(st *hashStream, todo []queuedBlock) error {
	defer func() {
		for _, q := range todo {
			hs.release(q.data)
		}
	}()
	blocks := make([]proto.Block, len(todo))
	for i, q := range todo {
		blocks[i] = q.b
	}
	held := func(i int) []byte {
		if d := todo[i].data; d != nil {
			return *d
		}
		return nil
	}
	return hashInOrder(st.ctx, hs.blocks, st.h, blocks, held, func(i int) {
		st.track.add(todo[i].b, st.h)
	})
}

// finish hashes everything the stream holds in order, holding nothing back for a
// checkpoint from now on, and waits until that is done. The caller holds st.mu.
func (hs *hashStreams) finish(st *hashStream) {
	st.final = true
	hs.startPump(st)
	for st.pumping {
		st.idle.Wait()
	}
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
	defer st.cancel() // its hashing is over once finish returns
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gone = true // a late add changes nothing
	hs.finish(st)
	hs.dropPending(st) // blocks past a gap: never hashed now
	st.changed.fire()
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

// streamRequest checks the stream name of a request to /v1/streams/{id}/… and opens its
// JSON body; on false it has answered.
func (s *Server) streamRequest(w http.ResponseWriter, r *http.Request) (id string, body io.Reader, done func(), ok bool) {
	id = r.PathValue("id")
	if !validStreamID(id) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("stream %q: want a name of at most %d letters, digits, - or _", truncateForError(id), maxStreamID))
		return "", nil, nil, false
	}
	body, done, ok = jsonBody(w, r, s.cfg.MaxJSONBody)
	return id, body, done, ok
}

// handleStreamBlocks continues an upload stream with a run of a retained version's
// blocks (StreamBlocksRequest): the stream hashes them from the store while the client
// still reads its file.
func (s *Server) handleStreamBlocks(w http.ResponseWriter, r *http.Request) {
	id, body, done, ok := s.streamRequest(w, r)
	if !ok {
		return
	}
	req, err := decodeStreamBlocks(body)
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	k := streamKey{agentFrom(r.Context()), id}
	list, ok := s.streams.cachedList(req.Base)
	if !ok {
		v, err := s.store.Version(r.Context(), req.Base.Path, req.Base.Seq)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, fmt.Sprintf("no retained version %d of %s", req.Base.Seq, req.Base.Path))
			return
		case err != nil:
			s.storeFailed(w, r, "read version", err)
			return
		case v.Deleted || v.Type != proto.TypeFile:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("version %d of %s is not a file", req.Base.Seq, req.Base.Path))
			return
		}
		list = v.Blocks
		s.streams.keepList(req.Base, list)
	}
	if req.From > len(list) || req.Count > len(list)-req.From {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("blocks %d to %d do not fit the %d blocks of version %d of %s",
			req.From, req.From+req.Count-1, len(list), req.Base.Seq, req.Base.Path))
		return
	}
	end, ok := s.streams.addStored(k, req.Off, req.Base, req.From, list[req.From:req.From+req.Count])
	if !ok {
		writeError(w, http.StatusConflict, fmt.Sprintf("stream %s takes no blocks at offset %d: it is past it, broken, or holds %d blocks already; commit without it",
			id, req.Off, maxStreamPending))
		return
	}
	writeJSON(w, http.StatusOK, proto.StreamBlocksResponse{Off: req.Off, End: end})
}

// cachedList returns the block list of the version ref if one of the last lists
// resolved for streams is its: an edit names its stretches of one version in several
// requests.
func (hs *hashStreams) cachedList(ref proto.ContentRef) ([]proto.Block, bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, l := range hs.lists {
		if l.ref == ref {
			return l.blocks, true
		}
	}
	return nil, false
}

// keepList keeps the block list of the version ref for cachedList, dropping the oldest
// beyond maxListsKept.
func (hs *hashStreams) keepList(ref proto.ContentRef, blocks []proto.Block) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.lists = append(hs.lists, versionList{ref, blocks})
	if len(hs.lists) > maxListsKept {
		hs.lists = slices.Delete(hs.lists, 0, len(hs.lists)-maxListsKept)
	}
}
