package execute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/syncedfolder/synced-folder/internal/entropy"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Preupload sends the blocks of a large file to the server while the scanner is still
// chunking and hashing it, so that indexing and uploading overlap instead of running
// one after the other: by the time the plan uploads the file, the server holds its
// blocks and the upload is the missing-blocks query and the commit. Blocks go in
// batches of preuploadBatch, each asked about first (blocks the server holds are not
// sent). It changes no guarantee: the server verifies every block it receives, nothing
// refers to a block before a commit does, and blocks no commit ever names are collected
// after GC's grace period. Every failure is only logged; the plan's upload sends what is
// still missing.
type Preupload struct {
	Server   Server
	Log      *slog.Logger
	Counters *Counters
	// Workers bounds the block PUTs in flight per file; 0 means 8.
	Workers int
	// Base returns the version of a path the server holds, as the state records it
	// (seq 0: none), and its block list. The file's blocks that stretches of that list
	// hold are named to the upload stream by reference as the scan reaches them
	// (Server.StreamStoredBlocks), not sent: the server hashes them from its store while
	// the scan still reads the file, so the commit of an edit finds the file hashed
	// instead of reading it all then. Nil names none.
	Base func(path string) (seq int64, blocks []proto.Block, err error)

	once sync.Once
	mem  *semaphore.Weighted // block bytes copied and not yet sent, all files together
	// noSums is set once the server said it has no stream sums (an older server): the
	// scanner then hashes whole files itself.
	noSums atomic.Bool

	// noOpen is set once the server said it does not take the names of streams' files
	// (an older server): readers then cannot fetch an upload before its commit.
	noOpen atomic.Bool

	mu      sync.Mutex
	streams map[string]string // path → upload stream of its last pre-upload
	sending map[string]int    // path → pre-uploads of it under way
	own     map[int64]bool    // upload numbers of this agent's streams (OpenStream)
}

// maxOwnUploads bounds the upload numbers Own remembers.
const maxOwnUploads = 1024

// Own reports whether the upload no, of path, is this agent's: a pre-upload of path is
// under way, or it opened that upload. An agent does not prefetch its own uploads.
func (u *Preupload) Own(no int64, path string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sending[path] > 0 || u.own[no]
}

// open names path, of size bytes, as the file that stream uploads, so that readers
// may fetch its blocks before the commit. Only logged when it fails.
func (u *Preupload) open(ctx context.Context, stream, path string, size int64) {
	no, err := u.Server.OpenStream(ctx, stream, path, size)
	if err != nil {
		if errors.Is(err, client.ErrNotSupported) {
			u.noOpen.Store(true)
		}
		u.Log.Debug("pre-upload: the stream's file not named to readers", "path", path, "err", err)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.own == nil || len(u.own) >= maxOwnUploads {
		u.own = map[int64]bool{}
	}
	u.own[no] = true
}

// sendingPath counts a pre-upload of path under way (delta 1) or over (delta -1).
func (u *Preupload) sendingPath(path string, delta int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sending == nil {
		u.sending = map[string]int{}
	}
	if u.sending[path] += delta; u.sending[path] <= 0 {
		delete(u.sending, path)
	}
}

// Take returns the upload stream the last pre-upload of path used, once; "" when none.
func (u *Preupload) Take(path string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	id := u.streams[path]
	delete(u.streams, path)
	return id
}

// newStreamID names an upload stream.
func newStreamID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// preuploadMemory bounds the bytes the pre-upload of all files holds at once; the
// chunker waits (and so indexing slows to the upload's pace) when it is spent.
const preuploadMemory = 32 << 20

// preuploadBatch is how many blocks one missing-blocks query asks about.
const preuploadBatch = 16

type preBlock struct {
	b    proto.Block
	off  int64 // in the file
	data []byte
	free func()     // gives data back
	run  *storedRun // instead of a block: stored blocks to name to the stream
}

// File starts the pre-upload of one file of size bytes and returns the function the
// chunker calls with each block (it holds the block's bytes until they are sent, or
// copies them where they cannot be held; it never fails), the function that waits until
// every block handed over is sent or given up (once, however often it is called), and the
// one that asks the server for the SHA-256 of the blocks sent (nil for a server known not
// to answer it). For a file under PreuploadMin it returns nothing: nothing is sent.
// indexed is the block list the index holds for path, or nil: those blocks are not asked
// about, as the server holds them (an edit sends only its new blocks; the plan's upload
// checks the rest, naming them as the kept part of a delta against the version the server
// holds), and a new block goes as a patch of the indexed one it replaces.
func (u *Preupload) File(ctx context.Context, path string, size int64, indexed []proto.Block) scan.Upload {
	if size < PreuploadMin {
		return scan.Upload{}
	}
	u.once.Do(func() { u.mem = semaphore.NewWeighted(preuploadMemory) })
	workers := u.Workers
	if workers <= 0 {
		workers = 8
	}
	var known map[string]bool
	stream := newStreamID()
	u.sendingPath(path, 1)
	if !u.noOpen.Load() {
		go u.open(ctx, stream, path, size)
	}
	send := &blockSender{srv: u.Server, log: u.Log, stream: stream}
	if len(indexed) > 0 {
		known = make(map[string]bool, len(indexed))
		for _, b := range indexed {
			known[b.Hash] = true
		}
		send.bases = newPatchBases(indexed)
	}
	ctx, cancel := context.WithCancel(ctx)
	in := make(chan preBlock, 256) // bounded by mem, not by the channel
	jobs := make(chan preBlock)
	var wg sync.WaitGroup
	var sampled bool
	release := func(p preBlock) {
		if p.run == nil {
			p.free()
			u.mem.Release(weight(p.b))
		}
	}
	var runs *storedRuns
	if u.Base != nil {
		if seq, list, err := u.Base(path); err == nil && seq > 0 && len(list) > 0 {
			runs = &storedRuns{base: proto.ContentRef{Path: path, Seq: seq}, list: list}
		}
	}
	var runsFailed atomic.Bool
	// gap is set once a block is neither sent to the stream nor named to it (the server
	// holds it already, the file repeats it, a request failed): the server's hash of the
	// stream then stops before it, and its sum is not asked for.
	var gap atomic.Bool
	for range workers {
		wg.Go(func() {
			for p := range jobs {
				if p.run != nil {
					if ctx.Err() == nil && !runsFailed.Load() {
						r := p.run
						if _, err := u.Server.StreamStoredBlocks(ctx, stream, r.off, runs.base, r.from, r.count); err != nil {
							// An older server, a version collected meanwhile: the commit
							// hashes those blocks itself.
							u.Log.Debug("pre-upload: naming stored blocks to the stream failed", "path", path, "err", err)
							runsFailed.Store(true)
							gap.Store(true)
						}
					} else {
						gap.Store(true)
					}
					continue
				}
				if ctx.Err() == nil {
					if err := send.put(ctx, p.b, p.data, p.off); err != nil {
						// A file that changed while being read, a full disk, a lost
						// connection: the plan's upload deals with it.
						u.Log.Debug("pre-upload of a block failed", "path", path, "block", p.b.Hash, "err", err)
						gap.Store(true)
						cancel()
					} else {
						u.Counters.BytesUp.Add(p.b.Size)
					}
				}
				release(p)
			}
		})
	}
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		defer close(jobs)
		sent := map[string]bool{}
		var batch []preBlock
		flush := func() {
			hashes := make([]string, 0, len(batch))
			for _, p := range batch {
				hashes = append(hashes, p.b.Hash)
			}
			var missing []string
			if ctx.Err() == nil {
				var err error
				if missing, err = u.Server.MissingBlocks(ctx, hashes); err != nil {
					u.Log.Debug("pre-upload: missing-blocks query failed", "path", path, "err", err)
					cancel()
				}
			}
			want := make(map[string]bool, len(missing))
			for _, h := range missing {
				want[h] = true
			}
			for _, p := range batch {
				if want[p.b.Hash] && !sent[p.b.Hash] && ctx.Err() == nil {
					sent[p.b.Hash] = true
					jobs <- p
				} else {
					gap.Store(true)
					release(p)
				}
			}
			batch = batch[:0]
		}
		for p := range in {
			if p.run != nil {
				// The blocks asked about come before the stretch: the server's hash of
				// the stream waits for them.
				if len(batch) > 0 {
					flush()
				}
				if ctx.Err() == nil {
					jobs <- p
				} else {
					gap.Store(true)
				}
				continue
			}
			batch = append(batch, p)
			// A full batch, or the chunker has nothing more ready: ask now.
			if len(batch) >= preuploadBatch || len(in) == 0 && len(batch) >= preuploadBatch/2 {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
	}()
	var off int64
	each := func(b proto.Block, d chunk.Data) error {
		data := d.Bytes()
		at := off
		off += b.Size
		if ctx.Err() != nil {
			gap.Store(true)
			return nil //nolint:nilerr // cancelled: the pre-upload gives up quietly
		}
		if runs != nil {
			done, held := runs.add(b, at)
			if done != nil {
				in <- preBlock{run: done}
			}
			if held {
				return nil // stored: named to the stream with its stretch
			}
		}
		if known[b.Hash] {
			gap.Store(true)
			return nil //nolint:nilerr // nothing to send: cancelled, or the stored version has the block
		}
		if err := u.mem.Acquire(ctx, weight(b)); err != nil {
			gap.Store(true)
			return nil //nolint:nilerr // only a cancelled ctx: the pre-upload gives up quietly, the scan's own ctx check stops it
		}
		if !sampled {
			sampled, send.compress = true, entropy.Compressible(data[:min(len(data), 16<<10)])
		}
		free, held := d.Hold()
		if !held {
			buf := chunk.GetBuf(len(data))
			copy(buf, data)
			data, free = buf, func() { chunk.PutBuf(buf) }
		}
		in <- preBlock{b: b, off: at, data: data, free: free}
		return nil
	}
	wait := sync.OnceFunc(func() {
		if runs != nil {
			if last := runs.flush(); last != nil && ctx.Err() == nil {
				in <- preBlock{run: last}
			}
		}
		close(in)
		<-dispatched
		wg.Wait()
		cancel()
		u.sendingPath(path, -1)
		u.mu.Lock()
		if u.streams == nil {
			u.streams = map[string]string{}
		}
		u.streams[path] = stream
		u.mu.Unlock()
	})
	up := scan.Upload{Each: each, Wait: wait}
	if !u.noSums.Load() {
		up.Sum = func(ctx context.Context, blocks []proto.Block) (string, bool) {
			if gap.Load() {
				return "", false
			}
			sum, err := u.Server.StreamSum(ctx, stream, blocks)
			if err != nil {
				if errors.Is(err, client.ErrNotSupported) {
					u.noSums.Store(true)
				}
				u.Log.Debug("pre-upload: the server did not sum the stream", "path", path, "err", err)
				return "", false
			}
			return sum, true
		}
	}
	return up
}

// PreuploadMin is the file size from which File pre-uploads; below it the index is
// quick and the plan's upload is enough.
const PreuploadMin = 8 * chunk.MaxSize

// storedRunBytes is how many bytes of stored blocks go to the stream in one request: a
// 1 GiB edit costs 16 small requests, and the server starts hashing each stretch while
// the scan reads the next.
const storedRunBytes = 64 << 20

// storedRun is a stretch of the base version's list: count blocks from its block from
// on, at offset off of the file.
type storedRun struct {
	from, count int
	off, size   int64
}

// storedRuns cuts a file's blocks, in order, into stretches of its base version's list.
type storedRuns struct {
	base  proto.ContentRef
	list  []proto.Block
	first map[proto.Block]int // each block of list → its first index; built when needed
	cur   storedRun           // count 0: none
}

// add takes the file's block b at offset off. held says b is a block of the base list,
// part of the current stretch; done is a finished stretch to send, or nil.
func (r *storedRuns) add(b proto.Block, off int64) (done *storedRun, held bool) {
	c := &r.cur
	if c.count > 0 && c.off+c.size == off && c.from+c.count < len(r.list) && r.list[c.from+c.count] == b {
		c.count++
		c.size += b.Size
		if c.size >= storedRunBytes {
			return r.flush(), true
		}
		return nil, true
	}
	done = r.flush()
	if r.first == nil {
		r.first = make(map[proto.Block]int, len(r.list))
		for i, lb := range r.list {
			if _, ok := r.first[lb]; !ok {
				r.first[lb] = i
			}
		}
	}
	i, ok := r.first[b]
	if !ok {
		return done, false
	}
	*c = storedRun{from: i, count: 1, off: off, size: b.Size}
	return done, true
}

// flush returns the current stretch, if any, and starts none.
func (r *storedRuns) flush() *storedRun {
	if r.cur.count == 0 {
		return nil
	}
	done := r.cur
	r.cur = storedRun{}
	return &done
}
