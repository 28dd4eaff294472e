package syncserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// itemError is a commit item refused for its own content; the batch goes on.
type itemError struct{ msg string }

func (e *itemError) Error() string { return e.msg }

func itemErrorf(format string, args ...any) error {
	return &itemError{msg: fmt.Sprintf(format, args...)}
}

// pending is one change on its way to Store.Apply, with where its result goes.
type pending struct {
	idx    int
	change store.Change
	inline []byte
	// trusted marks content the server chunked and hashed itself (/upload): its blocks
	// are only checked to be present.
	trusted bool
	// stream names the upload stream the client sent the blocks with (hashstream.go).
	stream string
}

// commit checks and applies changes for agent. results has one slot per item of the
// request; the slots of items refused before commit already hold their error, the others
// are filled here. Items are verified before the store sees them: every block must be
// stored, and a file's blocks must hash, streamed in order, to its SHA256. An error
// return means the whole batch failed (store or disk trouble) and nothing was applied.
func (s *Server) commit(ctx context.Context, agent string, items []pending, results []proto.ItemResult) error {
	// Inlined blocks are written before the GC lock is taken: they are new or freshly
	// touched, so GC's grace period keeps them until the commit below.
	t0 := time.Now()
	if err := s.storeInline(items, results); err != nil {
		return err
	}
	t1 := time.Now()

	s.gcMu.RLock()
	defer s.gcMu.RUnlock()

	if err := s.checkBlocksPresent(items, results); err != nil {
		return err
	}
	if err := s.verifyContent(ctx, agent, items, results); err != nil {
		return err
	}

	var changes []store.Change
	var idx []int
	for _, p := range items {
		if results[p.idx].Status == "" {
			changes = append(changes, p.change)
			idx = append(idx, p.idx)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	t2 := time.Now()
	if err := s.syncBlocks(changes); err != nil {
		return err
	}
	t3 := time.Now()
	res, err := s.store.Apply(ctx, agent, changes)
	if err != nil {
		return err
	}
	s.log.Debug("commit", "items", len(items), "inlineMs", ms(t1.Sub(t0)), "verifyMs", ms(t2.Sub(t1)),
		"syncMs", ms(t3.Sub(t2)), "applyMs", ms(time.Since(t3)))
	if len(res) != len(changes) {
		return fmt.Errorf("store answered %d results for %d changes", len(res), len(changes))
	}
	var maxSeq int64
	for i, r := range res {
		out := &results[idx[i]]
		e := r.Entry
		if r.Conflict {
			s.metrics.conflicts.Inc()
			out.Status = proto.StatusConflict
			out.Error = "the entry has moved on from baseSeq"
			if e.Seq != 0 {
				out.Entry = &e
			}
			continue
		}
		out.Status = proto.StatusOK
		out.Entry = &e
		maxSeq = max(maxSeq, e.Seq)
		if e.Deleted {
			s.metrics.deletes.Inc()
		} else {
			s.metrics.uploads.Inc()
		}
	}
	if maxSeq > 0 {
		s.notify.publish(maxSeq)
	}
	return nil
}

// syncBlocks makes every block the changes refer to durable before the metadata that
// refers to them is applied: a streamed block upload answers before its block is
// fsynced (see blobs.Store.Put), so this is where a commit's content becomes durable,
// with one fsync per pack touched.
func (s *Server) syncBlocks(changes []store.Change) error {
	var hashes []string
	for _, c := range changes {
		for _, b := range c.Entry.Blocks {
			hashes = append(hashes, b.Hash)
		}
	}
	if len(hashes) == 0 {
		return nil
	}
	if err := s.blocks.Sync(hashes); err != nil {
		return fmt.Errorf("sync blocks: %w", err)
	}
	return nil
}

// storeInline verifies the content of items that carry it inline and writes their
// blocks in one batch, so that the block store syncs once for all of them.
func (s *Server) storeInline(items []pending, results []proto.ItemResult) error {
	var batch []blobs.BlockData
	for _, p := range items {
		if p.inline == nil || results[p.idx].Status != "" {
			continue
		}
		blocks, err := inlineBlocks(p)
		if err != nil {
			results[p.idx] = proto.ItemResult{Path: p.change.Entry.Path, Status: proto.StatusError, Error: err.Error()}
			continue
		}
		batch = append(batch, blocks...)
	}
	if len(batch) == 0 {
		return nil
	}
	created, _, err := s.blocks.PutMany(batch)
	if err != nil {
		return fmt.Errorf("store inlined blocks: %w", err)
	}
	s.metrics.blocksStored.Add(float64(created))
	s.metrics.dedupHits.Add(float64(len(batch) - created))
	return nil
}

// inlineBlocks cuts an item's inlined content into its blocks, checking every hash.
func inlineBlocks(p pending) ([]blobs.BlockData, error) {
	e := p.change.Entry
	sum := sha256.Sum256(p.inline)
	if hex.EncodeToString(sum[:]) != e.SHA256 {
		return nil, itemErrorf("inlined data does not match sha256 %s", e.SHA256)
	}
	out := make([]blobs.BlockData, 0, len(e.Blocks))
	off := int64(0)
	for _, b := range e.Blocks {
		part := p.inline[off : off+b.Size]
		off += b.Size
		if len(e.Blocks) == 1 && b.Hash != e.SHA256 {
			return nil, itemErrorf("the only block %s is not the whole content's sha256 %s", b.Hash, e.SHA256)
		}
		// The block's SHA-256 goes to PutMany, which then does not hash it again.
		bs := &sum
		if len(e.Blocks) > 1 {
			bs = new([sha256.Size]byte)
			*bs = sha256.Sum256(part)
			if hex.EncodeToString(bs[:]) != b.Hash {
				return nil, itemErrorf("inlined data does not match block %s", b.Hash)
			}
		}
		out = append(out, blobs.BlockData{Hash: b.Hash, Data: part, Sum: bs})
	}
	return out, nil
}

// checkBlocksPresent refuses the items that name a block the server does not store.
func (s *Server) checkBlocksPresent(items []pending, results []proto.ItemResult) error {
	seen := make(map[string]struct{})
	var hashes []string
	for _, p := range items {
		if p.inline != nil || results[p.idx].Status != "" {
			continue
		}
		for _, b := range p.change.Entry.Blocks {
			if _, ok := seen[b.Hash]; !ok {
				seen[b.Hash] = struct{}{}
				hashes = append(hashes, b.Hash)
			}
		}
	}
	if len(hashes) == 0 {
		return nil
	}
	missing, err := s.blocks.Missing(hashes)
	if err != nil {
		return fmt.Errorf("look up blocks: %w", err)
	}
	if len(missing) == 0 {
		return nil
	}
	lacking := make(map[string]struct{}, len(missing))
	for _, h := range missing {
		lacking[h] = struct{}{}
	}
	for _, p := range items {
		if p.inline != nil || results[p.idx].Status != "" {
			continue
		}
		for _, b := range p.change.Entry.Blocks {
			if _, ok := lacking[b.Hash]; ok {
				results[p.idx] = proto.ItemResult{Path: p.change.Entry.Path, Status: proto.StatusError,
					Error: fmt.Sprintf("block %s is not stored on the server; upload it first", b.Hash)}
				break
			}
		}
	}
	return nil
}

// verifyContent streams the blocks of every non-inline file item and checks their
// stored sizes and their whole SHA-256 against the item's.
func (s *Server) verifyContent(ctx context.Context, agent string, items []pending, results []proto.ItemResult) error {
	var todo []int
	for i, p := range items {
		if p.inline == nil && !p.trusted && results[p.idx].Status == "" && len(p.change.Entry.Blocks) > 0 {
			todo = append(todo, i)
		}
	}
	var (
		mu    sync.Mutex
		fatal error
		next  = make(chan int)
		wg    sync.WaitGroup
	)
	workers := min(len(todo), runtime.GOMAXPROCS(0))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := items[i]
				err := s.verifyFile(ctx, agent, p)
				if err == nil {
					continue
				}
				var ie *itemError
				mu.Lock()
				if errors.As(err, &ie) {
					results[p.idx] = proto.ItemResult{Path: p.change.Entry.Path, Status: proto.StatusError, Error: ie.msg}
				} else if fatal == nil {
					fatal = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	return fatal
}

// verifyAhead is how many blocks verifyFile opens (reads, for packed blocks) ahead of
// the SHA-256, which is the one part that cannot be spread over cores.
const verifyAhead = 8

// verifyFile checks that the entry's blocks are stored with their sizes and that their
// content, in list order, has the entry's SHA-256. The part of the list that the item's
// upload stream hashed already, in order, is not read again (hashstream.go), nor a
// prefix the server hashed before (checkpoint.go).
func (s *Server) verifyFile(ctx context.Context, agent string, p pending) error {
	e := p.change.Entry
	var h hash.Hash
	var streamed, resumed int
	if p.stream != "" {
		h, streamed = s.streams.take(streamKey{agent, p.stream}, e.Blocks)
	}
	if ch, n := s.checkpoints.resume(e.Blocks); n > streamed {
		h, resumed = ch, n
	}
	if h == nil {
		h = sha256.New()
	}
	done := max(streamed, resumed)
	s.log.Debug("verify", "path", e.Path, "blocks", len(e.Blocks), "hashedWhileUploaded", streamed,
		"resumedAt", resumed)
	track := prefixTracker{cps: s.checkpoints}
	track.skip(e.Blocks[:done])
	rest := e.Blocks[done:]
	err := hashInOrder(ctx, s.blocks, h, rest, nil, func(i int) { track.add(rest[i], h) })
	var ie *itemError
	switch {
	case err == nil:
	case errors.As(err, &ie) || ctx.Err() != nil:
		return err
	default:
		return fmt.Errorf("read blocks of %q: %w", e.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return itemErrorf("the blocks' content has SHA-256 %s, not the sha256 %s the item names", got, e.SHA256)
	}
	return nil
}

// hashInOrder writes the bytes of blocks to h in list order: held(i) when held is not
// nil and returns bytes, else the stored block. Up to verifyAhead blocks are opened at
// once, not one after the other: a large block is read from the disk (blobs,
// packdirect.go), where several reads in flight keep up with the hash and one at a time
// does not. after, when not nil, runs once block i is hashed. openBlock's errors come
// back as they are.
func hashInOrder(ctx context.Context, store BlockStore, h io.Writer, blocks []proto.Block, held func(i int) []byte, after func(i int)) error {
	type opened struct {
		f   io.ReadCloser
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	ahead := make(chan chan opened, verifyAhead)
	go func() {
		defer close(ahead)
		for i, b := range blocks {
			c := make(chan opened, 1)
			select {
			case ahead <- c:
			case <-ctx.Done():
				return
			}
			if held != nil {
				if data := held(i); data != nil {
					c <- opened{f: io.NopCloser(bytes.NewReader(data))}
					continue
				}
			}
			go func() {
				f, err := openBlock(store, b)
				c <- opened{f, err}
			}()
		}
	}()
	defer func() {
		cancel()
		for c := range ahead {
			if o := <-c; o.f != nil {
				o.f.Close()
			}
		}
	}()
	i := 0
	for c := range ahead {
		o := <-c
		if o.err != nil {
			return o.err
		}
		n, err := io.Copy(h, o.f)
		o.f.Close()
		if err == nil && n != blocks[i].Size {
			err = fmt.Errorf("block %s is shorter than its size", blocks[i].Hash)
		}
		if err != nil {
			return err
		}
		if after != nil {
			after(i)
		}
		i++
	}
	return ctx.Err()
}

// openBlock opens a block of a list, checking that it is stored with the size the list
// says; the errors a client can fix are item errors.
func openBlock(blocks BlockStore, b proto.Block) (io.ReadCloser, error) {
	f, size, err := blocks.Open(b.Hash)
	if errors.Is(err, blobs.ErrNotFound) {
		return nil, itemErrorf("block %s is not stored on the server; upload it first", b.Hash)
	}
	if errors.Is(err, blobs.ErrCorrupt) {
		return nil, itemErrorf("block %s is damaged on the server; upload it again", b.Hash)
	}
	if err != nil {
		return nil, fmt.Errorf("open block %s: %w", b.Hash, err)
	}
	if size != b.Size {
		f.Close()
		return nil, itemErrorf("block %s has %d bytes, the entry says %d", b.Hash, size, b.Size)
	}
	return f, nil
}

// blockReader reads a file's blocks in order from the block store, checking that every
// block is stored with the size the entry says.
type blockReader struct {
	ctx    context.Context
	blocks BlockStore
	list   []proto.Block
	cur    io.ReadCloser
	left   int64
}

func (r *blockReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.list) == 0 {
				return 0, io.EOF
			}
			if err := r.ctx.Err(); err != nil {
				return 0, err
			}
			b := r.list[0]
			r.list = r.list[1:]
			f, err := openBlock(r.blocks, b)
			if err != nil {
				return 0, err
			}
			r.cur, r.left = f, b.Size
		}
		n, err := r.cur.Read(p)
		r.left -= int64(n)
		if err == io.EOF {
			r.cur.Close()
			r.cur = nil
			if r.left != 0 {
				return n, fmt.Errorf("block shorter than its size")
			}
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (r *blockReader) Close() error {
	if r.cur != nil {
		err := r.cur.Close()
		r.cur = nil
		return err
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
