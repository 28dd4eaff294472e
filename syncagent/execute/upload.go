package execute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/syncedfolder/synced-folder/internal/entropy"
	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// maxCommitData caps the inlined bytes of one commit request (the server's default
// body limit is 64 MiB; base64 adds a third). The content is read file by file while
// the request is sent, so this bounds the request, not the agent's memory.
const maxCommitData = 16 << 20

// maxMissingQuery caps the hashes of one missing-blocks query.
const maxMissingQuery = 10000

type pendingUpload struct {
	op     plan.Op
	item   proto.CommitItem // without Data: an inlined file is read while its commit is sent
	sum    plan.Hash        // a file's hash, which item spells in hex
	inline bool
	// stat is an inlined file's stat key in the index when planned: the file opened to
	// be read must still have it (inlineItem).
	stat   trees.IndexEntry
	blocks []proto.Block // blocks to make sure the server has (nil when inlined)
	// full is the file's whole block list (nil when inlined); with short, the item
	// references stored content instead (copyFrom or blocksDelta) and full goes again
	// should the server refuse the reference.
	full  []proto.Block
	short bool
	// stream is the upload stream the file's blocks go with (see Preupload).
	stream string
	// bases is the block list of the version the upload replaces on the server, when
	// the agent holds it: a new block goes as a patch of the one it replaces.
	bases patchBases
}

// inlineSize is the content an upload inlines into its commit.
func (p *pendingUpload) inlineSize() int {
	if p.inline {
		return int(p.item.Size)
	}
	return 0
}

func seqOf(n *plan.Node) int64 {
	if n == nil {
		return 0
	}
	return n.Seq
}

// upload commits local versions: blocks the server lacks go first, small files inline.
// It works through ops in slices of one commit each, so that the inlined content of a
// large tree is never all in memory at once, with up to commitsInFlight commits sent at
// once: a slice is prepared (its disk checked, its large files' blocks sent) while the
// commits of the previous ones are at the server.
func (x *Executor) upload(ctx context.Context, ops []plan.Op, out *Outcome) error {
	ops = dirsFirst(ops)
	dirs := dircache.New(x.Root) // the dirs of the files read to be inlined
	defer dirs.Close()
	for _, short := range []bool{true, false} {
		pipe := &commitPipe{x: x, ctx: ctx, out: out, dirs: dirs}
		for start, n := 0, firstBatch; start < len(ops) && pipe.err == nil; start, n = start+n, maxBatch {
			slice := ops[start:min(start+n, len(ops))]
			batches, err := x.prepareSlice(ctx, slice, short, out)
			if err != nil {
				pipe.fail(err)
				break
			}
			for _, b := range batches {
				pipe.send(b)
			}
		}
		retry, err := pipe.finish()
		if err != nil {
			return err
		}
		// The server refused a reference (an old server, or a version it no longer
		// holds): those files' whole block lists go in a second round.
		if ops = retry; len(ops) == 0 {
			break
		}
	}
	return nil
}

// dirsFirst returns ops with the dir creations first, each group in its order (the plan
// puts parents first): a commit that creates a dir is applied before any commit that
// creates something in it is sent (see commitPipe), so the dirs go in the first ones.
func dirsFirst(ops []plan.Op) []plan.Op {
	isDir := func(op plan.Op) bool { return op.Local != nil && op.Local.Type == proto.TypeDir }
	if !slices.ContainsFunc(ops, func(op plan.Op) bool { return !isDir(op) }) {
		return ops
	}
	out := make([]plan.Op, 0, len(ops))
	for _, op := range ops {
		if isDir(op) {
			out = append(out, op)
		}
	}
	for _, op := range ops {
		if !isDir(op) {
			out = append(out, op)
		}
	}
	return out
}

// prepareSlice prepares one slice of upload ops: it checks the disk, sends the blocks
// the server lacks, and returns the commit batches. With short, files may reference
// content the server holds (see shortcut).
func (x *Executor) prepareSlice(ctx context.Context, ops []plan.Op, short bool, out *Outcome) ([][]*pendingUpload, error) {
	var pend []*pendingUpload
	var sources map[plan.Hash]contentSource
	for _, op := range ops {
		p, err := x.prepareUpload(op)
		switch {
		case errors.Is(err, errChanged):
			x.skip(op, err, out)
		case err != nil:
			x.fail(op, err, out)
		default:
			if short && p.full != nil {
				if sources == nil {
					sources = x.contentSources()
				}
				x.shortcut(p, sources)
			}
			pend = append(pend, p)
		}
	}
	// Ask which blocks the server lacks, for all files of the batch at once.
	var hashes []string
	seen := map[string]bool{}
	for _, p := range pend {
		for _, b := range p.blocks {
			if !seen[b.Hash] {
				seen[b.Hash] = true
				hashes = append(hashes, b.Hash)
			}
		}
	}
	missing := map[string]bool{}
	for start := 0; start < len(hashes); start += maxMissingQuery {
		m, err := x.Server.MissingBlocks(ctx, hashes[start:min(start+maxMissingQuery, len(hashes))])
		if err != nil {
			return nil, err
		}
		for _, h := range m {
			missing[h] = true
		}
	}
	var ready []*pendingUpload
	var mu sync.Mutex // guards missing: a block shared by two files is sent once
	for _, p := range pend {
		err := x.sendBlocks(ctx, p, missing, &mu)
		switch {
		case err == nil:
			ready = append(ready, p)
		case errors.Is(err, errChanged):
			x.skip(p.op, err, out)
		case transient(err):
			return nil, err
		default:
			x.fail(p.op, err, out)
		}
	}
	// Commit in batches bounded by items and inlined bytes.
	var batches [][]*pendingUpload
	for start := 0; start < len(ready); {
		end, data := start, 0
		for end < len(ready) && end-start < maxBatch && (end == start || data+ready[end].inlineSize() <= maxCommitData) {
			data += ready[end].inlineSize()
			end++
		}
		batches = append(batches, ready[start:end])
		start = end
	}
	return batches, nil
}

// firstBatch caps the first commit of an upload: the other agents start downloading as
// soon as it is applied, while the next, full-size, commits are sent.
const firstBatch = 200

// commitsInFlight is how many commit requests of one upload are sent at once. With two,
// the next batch's request (its files read, hashed and sent; the server decoding and
// hashing it) overlaps the server's writing, syncing and applying of the previous one,
// and this agent's recording of its results. Each commit stays atomic and durable on its
// own; their batches hold distinct paths, so their order does not matter.
const commitsInFlight = 2

// commitPipe sends the commits of an upload, up to commitsInFlight at a time, and
// records their results in the order they were sent, on the caller's goroutine (the
// only one that touches the trees and the state). A commit that creates a dir is the
// only one in flight until it is recorded, so that the server never applies a file
// before the dir it is in (the changes feed stays in parents-first order). After an
// error no further commit is started; those already sent are waited for and recorded,
// and finish returns the first error.
type commitPipe struct {
	x        *Executor
	ctx      context.Context
	out      *Outcome
	dirs     *dircache.Cache
	inflight []chan sentCommit
	barrier  bool // the commit in flight creates a dir
	retry    []plan.Op
	err      error
}

// send starts the commit of batch, first recording the oldest commit in flight when
// commitsInFlight are (or all of them, around a commit that creates a dir). It does
// nothing after an error.
func (c *commitPipe) send(batch []*pendingUpload) {
	dirs := slices.ContainsFunc(batch, func(p *pendingUpload) bool { return p.item.Type == proto.TypeDir })
	for len(c.inflight) > 0 && (len(c.inflight) == commitsInFlight || c.barrier || dirs) {
		c.recordOldest()
	}
	if c.err != nil {
		return
	}
	ch := make(chan sentCommit, 1)
	go func() { ch <- c.x.sendCommit(c.ctx, c.dirs, batch) }()
	c.inflight = append(c.inflight, ch)
	c.barrier = dirs
}

// fail stops the pipe with err (kept if it is the first).
func (c *commitPipe) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *commitPipe) recordOldest() {
	sc := <-c.inflight[0]
	c.inflight = c.inflight[1:]
	c.out.Add(sc.out)
	if sc.err != nil {
		c.fail(sc.err)
		return
	}
	r, err := c.x.recordSent(c.ctx, sc, c.out)
	c.retry = append(c.retry, r...)
	if err != nil {
		c.fail(err)
	}
}

// finish waits for and records the commits in flight, and returns the ops whose
// reference to stored content the server refused, or the first error.
func (c *commitPipe) finish() ([]plan.Op, error) {
	for len(c.inflight) > 0 {
		c.recordOldest()
	}
	if c.err != nil {
		return nil, c.err
	}
	return c.retry, nil
}

// prepareUpload turns an Upload op into a commit item, checking the disk first.
func (x *Executor) prepareUpload(op plan.Op) (*pendingUpload, error) {
	if op.Local == nil {
		return nil, fmt.Errorf("upload of %q without a local node", op.Path)
	}
	l := op.Local
	idx, hasIdx := x.Trees.Index.Get(op.Path)
	if l.Type == proto.TypeFile && hasIdx && idx.Size <= x.InlineMax {
		// An inlined file is checked when it is opened to be read (inlineItem): its
		// stat key then, against the index's now, which must still be the plan's.
		if idx.Type != proto.TypeFile || idx.SHA256 != l.SHA256 {
			return nil, fmt.Errorf("%q: %w (content)", op.Path, errChanged)
		}
	} else if err := x.checkDisk(op.Path, op.Local); err != nil {
		return nil, err
	}
	item := proto.CommitItem{Path: op.Path, BaseSeq: seqOf(op.Remote), Type: l.Type, Mode: l.Mode, MTimeNs: l.MTimeNs}
	p := &pendingUpload{op: op}
	switch l.Type {
	case proto.TypeSymlink:
		item.Target = l.Target
	case proto.TypeFile:
		p.sum = idx.SHA256
		item.Size, item.SHA256, item.MTimeNs = idx.Size, idx.SHA256.String(), idx.MTimeNs
		if idx.Size <= x.InlineMax {
			// The content is read (and checked against the index) while the commit is
			// sent: see inlineItem.
			p.inline, p.stat = true, idx
			if idx.Size > 0 {
				item.Blocks = []proto.Block{{Hash: item.SHA256, Size: idx.Size}}
			}
		} else {
			blocks, err := x.State.LocalBlocks(op.Path)
			if err != nil {
				return nil, err
			}
			var sum int64
			for _, b := range blocks {
				sum += b.Size
			}
			if sum != idx.Size {
				return nil, fmt.Errorf("%q: %w (index blocks cover %d of %d bytes)", op.Path, errChanged, sum, idx.Size)
			}
			item.Blocks, p.blocks, p.full = blocks, blocks, blocks
			// The server hashes the blocks in file order as they arrive (those the
			// scanner pre-uploaded, and those sent below), so that the commit does
			// not read the file back.
			if x.Preupload != nil {
				p.stream = x.Preupload.Take(op.Path)
			}
			if p.stream == "" {
				p.stream = newStreamID()
			}
			item.Stream = p.stream
		}
	}
	p.item = item
	return p, nil
}

// sendBlocks uploads the blocks of p the server lacks, reading them from the file and
// checking each against its hash (a mismatch means the file changed: errChanged).
func (x *Executor) sendBlocks(ctx context.Context, p *pendingUpload, missing map[string]bool, mu *sync.Mutex) error {
	type job struct {
		b   proto.Block
		off int64
	}
	var jobs []job
	var off int64
	// Offsets come from the whole list: p.blocks may be a delta's few blocks.
	all := p.full
	if all == nil {
		all = p.blocks
	}
	mu.Lock()
	for _, b := range all {
		if missing[b.Hash] {
			delete(missing, b.Hash)
			jobs = append(jobs, job{b, off})
		}
		off += b.Size
	}
	mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	f, err := x.Root.Open(p.op.Path)
	if err != nil {
		return fmt.Errorf("%q: %w (open: %w)", p.op.Path, errChanged, err)
	}
	defer f.Close()
	send := &blockSender{srv: x.Server, log: x.Log, stream: p.stream, bases: p.bases, compress: compressible(f, p.item.Size)}
	var (
		wg       sync.WaitGroup
		firstErr error
		errMu    sync.Mutex
	)
	setErr := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	next := make(chan job)
	for range x.Workers {
		wg.Go(func() {
			whole := chunk.GetBuf(chunk.MaxSize)
			defer func() { chunk.PutBuf(whole) }()
			for j := range next {
				if int64(cap(whole)) < j.b.Size {
					whole = make([]byte, j.b.Size)
				}
				buf := whole[:j.b.Size]
				if _, err := f.ReadAt(buf, j.off); err != nil && !errors.Is(err, io.EOF) {
					setErr(fmt.Errorf("%q: %w (read: %w)", p.op.Path, errChanged, err))
					continue
				}
				// The bytes are not hashed here: the server hashes every block it receives
				// and refuses one that does not match its name (400), stores nothing then,
				// and only then is the block hashed here, to tell a file that changed since
				// it was indexed from another refusal. One SHA-256 pass less per upload.
				if err := send.put(ctx, j.b, buf, j.off); err != nil {
					if refused(err) && chunk.SumHex(buf) != j.b.Hash {
						setErr(fmt.Errorf("%q: %w (block at %d)", p.op.Path, errChanged, j.off))
					} else {
						setErr(fmt.Errorf("put block of %q: %w", p.op.Path, err))
					}
					continue
				}
				x.Counters.BytesUp.Add(j.b.Size)
				x.Counters.BytesDone.Add(j.b.Size)
			}
		})
	}
	for _, j := range jobs {
		errMu.Lock()
		stop := firstErr != nil
		errMu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		// Blocks not sent must be asked for again by another file of the batch.
		mu.Lock()
		for _, j := range jobs {
			missing[j.b.Hash] = true
		}
		mu.Unlock()
		return firstErr
	}
	return ctx.Err()
}

// refused reports an answer of the server that refuses the request itself (4xx), as a
// block whose bytes do not hash to its name is.
func refused(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500
}

// compressible samples a file: random-looking bytes (already compressed media and
// archives) are sent as they are, since zstd would only spend CPU on them.
func compressible(f interface {
	ReadAt([]byte, int64) (int, error)
}, size int64) bool {
	sample := make([]byte, 16<<10)
	n, _ := f.ReadAt(sample, size/2)
	if n < 1024 {
		n, _ = f.ReadAt(sample, 0)
	}
	return entropy.Compressible(sample[:n])
}

// itemError is the failure of one item of a commit while its request was being sent.
type itemError struct {
	i   int
	err error
}

func (e *itemError) Error() string { return e.err.Error() }

func (e *itemError) Unwrap() error { return e.err }

// inlineItem returns p's commit item with its content read into *buf, which it reuses:
// the data is valid until the next call. A file whose stat key or size is no longer the
// one the index recorded changed since planning (errChanged); its hash is the server's to
// check.
func (x *Executor) inlineItem(p *pendingUpload, dirs *dircache.Cache, buf *[]byte) (proto.CommitItem, error) {
	if !p.inline {
		return p.item, nil
	}
	// O_NONBLOCK: a fifo put at the path since the scan must not block the open.
	f, err := dirs.OpenFile(p.op.Path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if absent(err) {
			return p.item, fmt.Errorf("%q: %w (gone)", p.op.Path, errChanged)
		}
		return p.item, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	// The open file's stat key, not the path's: what is read is that file.
	fi, err := f.Stat()
	if err != nil {
		return p.item, fmt.Errorf("stat: %w", err)
	}
	if !scan.HasStat(fi, p.stat) {
		return p.item, fmt.Errorf("%q: %w (content)", p.op.Path, errChanged)
	}
	// One byte more than expected tells a file that grew.
	if want := int(p.item.Size) + 1; cap(*buf) < want {
		*buf = make([]byte, max(want, int(x.InlineMax)+1))
	}
	data := (*buf)[:cap(*buf)][:p.item.Size+1]
	n, err := io.ReadFull(f, data)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return p.item, fmt.Errorf("read: %w", err)
	}
	data = data[:n]
	// A file that changed in place since it was hashed, its size kept, is not caught
	// here: the server hashes what it receives and refuses the item, and recordCommit
	// then finds the change. Hashing every inlined file again here cost the writer a
	// SHA-256 pass over all it sent.
	if int64(n) != p.item.Size {
		return p.item, fmt.Errorf("%q: %w (size)", p.op.Path, errChanged)
	}
	item := p.item
	item.Data = data
	return item, nil
}

// sentCommit is a commit request's answer: the items sent (those that changed while
// it was sent are left out, and counted in out) and their results.
type sentCommit struct {
	batch []*pendingUpload
	res   []proto.ItemResult
	// deletes are the deletes the commit carried (commitDeletes), and deleted their
	// results.
	deletes []plan.Op
	deleted []proto.ItemResult
	out     Outcome // skipped and failed items; merged by the caller
	err     error   // a transport error: nothing of batch was recorded
}

// sendCommit sends one commit request. Inlined content is read file by file while the
// request is sent; a file that changed meanwhile aborts the request (the server applies
// none of it) and the others are sent again without it. It touches no state of x but
// the server and the files, so that commits can be in flight together (commitAll).
func (x *Executor) sendCommit(ctx context.Context, dirs *dircache.Cache, batch []*pendingUpload) sentCommit {
	var buf []byte
	var sc sentCommit
	deletes, deleteOps := x.commitDeletes(batch)
	for {
		res, deleted, err := x.Server.CommitDeletesFunc(ctx, len(batch), func(i int) (proto.CommitItem, error) {
			it, err := x.inlineItem(batch[i], dirs, &buf)
			if err != nil {
				return it, &itemError{i: i, err: err}
			}
			return it, nil
		}, deletes)
		var ie *itemError
		if errors.As(err, &ie) {
			if errors.Is(ie.err, errChanged) {
				x.skip(batch[ie.i].op, ie.err, &sc.out)
			} else {
				x.fail(batch[ie.i].op, ie.err, &sc.out)
			}
			batch = slices.Delete(slices.Clone(batch), ie.i, ie.i+1)
			if len(batch) == 0 {
				return sc
			}
			continue
		}
		if err != nil {
			if transient(err) {
				sc.err = err
				return sc
			}
			for _, p := range batch {
				x.fail(p.op, err, &sc.out)
			}
			return sc
		}
		if deleted != nil { // else a server that does not take them: their ops send them
			sc.deletes, sc.deleted = deleteOps, deleted
		}
		sc.batch, sc.res = batch, res
		return sc
	}
}

// recordSent records the results of a sent commit and returns the ops whose reference
// to stored content the server refused.
func (x *Executor) recordSent(ctx context.Context, sc sentCommit, out *Outcome) ([]plan.Op, error) {
	if len(sc.batch) == 0 {
		return nil, nil
	}
	// Lists the server left out are filled in before the transaction: fillBlocks reads
	// the state database.
	for i, r := range sc.res {
		if r.Entry != nil && r.Entry.BlocksOmitted {
			e := x.fillBlocks(*r.Entry, sc.batch[i])
			sc.res[i].Entry = &e
		}
	}
	retry, err := x.recordCommit(ctx, sc.batch, sc.res, out)
	if err != nil || len(sc.deletes) == 0 {
		return retry, err
	}
	return retry, x.State.Update(ctx, func(tx *state.Tx) error {
		for i, op := range sc.deletes {
			x.deletes.markDone(op.Path)
			if err := x.recordRemoteDelete(tx, op, sc.deleted[i], out); err != nil {
				return err
			}
		}
		return nil
	})
}

// recordCommit records the results of a commit in the trees and the state, and returns
// the ops whose reference to stored content the server refused.
func (x *Executor) recordCommit(ctx context.Context, batch []*pendingUpload, res []proto.ItemResult, out *Outcome) ([]plan.Op, error) {
	var retry []plan.Op
	err := x.State.Update(ctx, func(tx *state.Tx) error {
		for i, r := range res {
			p := batch[i]
			switch {
			case r.Status == proto.StatusError && p.short:
				x.Log.Info("server refused a reference to stored content; sending the block list", "path", p.op.Path, "err", r.Error)
				retry = append(retry, p.op)
			case r.Status == proto.StatusOK && r.Entry != nil:
				n, err := state.NodeOf(*r.Entry)
				if err != nil {
					return err
				}
				x.Trees.Synced.Set(p.op.Path, n)
				if err := tx.PutSynced(p.op.Path, n); err != nil {
					return err
				}
				if err := x.setRemote(tx, r.Entry, p.op.Path); err != nil {
					return err
				}
				out.Done++
				x.Counters.FilesDone.Add(1)
				if p.inline {
					x.Counters.BytesUp.Add(p.item.Size)
					x.Counters.BytesDone.Add(p.item.Size)
				}
			case r.Status == proto.StatusConflict:
				if err := x.setRemote(tx, r.Entry, p.op.Path); err != nil {
					return err
				}
				x.skip(p.op, errors.New("server entry moved on (409)"), out)
			case r.Status == proto.StatusError && p.inline && x.changedSince(p):
				x.skip(p.op, fmt.Errorf("%w (content; the server refused it: %s)", errChanged, r.Error), out)
			case r.Status == proto.StatusError && !p.inline && p.item.Type == proto.TypeFile:
				// The listed blocks may not hold the file: it changed since it was hashed,
				// or a block the scan took as found again by its fast sum (chunk.FastSum)
				// was not, or a mark of the index was wrong (chunk.Rehash). Its next hash
				// checks every block by its SHA-256 and hashes every byte.
				if err := tx.ForgetSums(p.op.Path); err != nil {
					return err
				}
				out.Rescan = append(out.Rescan, p.op.Path)
				x.fail(p.op, fmt.Errorf("commit: %s", r.Error), out)
			default:
				x.fail(p.op, fmt.Errorf("commit: %s", r.Error), out)
			}
		}
		return nil
	})
	return retry, err
}

// changedSince reports whether the inlined file of p no longer holds the content it was
// hashed with (or cannot be read).
func (x *Executor) changedSince(p *pendingUpload) bool {
	data, err := x.Root.ReadFile(p.op.Path)
	return err != nil || plan.HashOf(data) != p.sum
}
