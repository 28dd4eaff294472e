// Package execute carries out a plan's operations on the disk (through an os.Root) and
// on the server, and records each effect in the agent's state once it happened. Before
// touching a path it checks that the disk still holds what the plan saw (op.Local); when
// it does not, the op is skipped and the outcome asks for a new plan, so that a user's
// edit made meanwhile is never clobbered.
package execute

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Server is what the executor needs of the sync server (a *client.Client).
type Server interface {
	MissingBlocks(ctx context.Context, hashes []string) ([]string, error)
	PutBlock(ctx context.Context, hash string, data []byte, compress bool) error
	// PutStreamBlock uploads a block as the one at offset off of upload stream, which
	// the server hashes in file order so that the commit naming the stream need not.
	PutStreamBlock(ctx context.Context, hash string, data []byte, compress bool, stream string, off int64) error
	// StreamStoredBlocks continues upload stream at off with count blocks of the list of
	// the version base, from its block from on, which the server holds.
	StreamStoredBlocks(ctx context.Context, stream string, off int64, base proto.ContentRef, from, count int) (int64, error)
	// StreamSum asks for the SHA-256 of the content of blocks, which were all sent or
	// named to upload stream; an error wrapping client.ErrNotSupported means the server
	// does not have the call.
	StreamSum(ctx context.Context, stream string, blocks []proto.Block) (string, error)
	// BlockSums and PutStreamBlockPatch upload a block as a patch of a block the
	// server holds (proto/patch.go).
	BlockSums(ctx context.Context, hash string) (*proto.BlockSums, error)
	PutStreamBlockPatch(ctx context.Context, hash string, data []byte, base string, head, tail int64, stream string, off int64) error
	GetBlock(ctx context.Context, hash string) ([]byte, error)
	// GetBlockDelta fetches a block compressed against a block the agent holds.
	GetBlockDelta(ctx context.Context, hash, baseHash string, base []byte) ([]byte, error)
	// CommitDeletesFunc commits n items made one at a time by item while the request is
	// sent (Data valid until the next call), and deletes in the same transaction; an
	// error of item aborts the request, which then changes nothing, and comes back
	// wrapped. deleted is nil when the server took none of deletes.
	CommitDeletesFunc(ctx context.Context, n int, item func(i int) (proto.CommitItem, error), deletes []proto.DeleteItem) (res, deleted []proto.ItemResult, err error)
	Delete(ctx context.Context, items []proto.DeleteItem) ([]proto.ItemResult, error)
	// GetBlocksInto fetches many blocks in one request (nil for one the server lacks),
	// reading them into buf while it has room; an error wrapping client.ErrNotSupported
	// means the server does not have the call.
	GetBlocksInto(ctx context.Context, hashes []string, buf []byte) ([][]byte, error)
	// EntryAt fetches a version's entry, for a block list the changes feed left out.
	EntryAt(ctx context.Context, path string, seq, baseSeq int64) (*proto.Entry, error)
	// OpenStream names the file an upload stream sends, so that readers may fetch its
	// blocks before the commit; an error wrapping client.ErrNotSupported means the
	// server does not have the call.
	OpenStream(ctx context.Context, stream, path string, size int64) (int64, error)
	// UploadBlocks returns the blocks upload no has stored so far, in file order, from
	// its block from on, waiting up to wait for more; an error for which
	// client.IsNotFound reports true means the upload ended. base, when above 0, is the
	// version of the path whose list the caller holds (runs may refer to it).
	UploadBlocks(ctx context.Context, no int64, from int, base int64, wait time.Duration) (*proto.UploadBlocksResponse, error)
}

// Counters are the executor's running totals, read by the agent for status, metrics and
// progress. All fields are updated atomically.
type Counters struct {
	FilesDone atomic.Int64
	BytesDone atomic.Int64
	BytesUp   atomic.Int64
	BytesDown atomic.Int64
	// BytesReused counts download bytes taken from local files instead of the server.
	BytesReused atomic.Int64
	Conflicts   atomic.Int64
	// PatchedInPlace counts downloads written into the file they replace (patchInPlace).
	PatchedInPlace atomic.Int64
}

// Executor runs plans for one folder. It is not safe for concurrent use: the agent's
// loop owns it and the trees it mutates.
type Executor struct {
	Root   *os.Root
	Server Server
	State  *state.DB
	// Trees are the agent's trees and index cache; the executor updates them as it goes,
	// so that the next plan starts from what is true now.
	Trees *trees.Trees
	// OwnSeqs, when set, gets the Seqs this agent's own commits and deletes produced,
	// per path; the agent drops a path's record once its changes feed has passed them.
	OwnSeqs  map[string]OwnSeq
	Log      *slog.Logger
	Counters *Counters
	// InlineMax is the size up to which a file's content rides inside its commit.
	InlineMax int64
	// Workers bounds parallel downloads and block uploads.
	Workers int
	// Preupload, when set, is where the scanner sent large files' blocks ahead; the
	// upload of such a file goes on with (and commits naming) the same upload stream.
	Preupload *Preupload
	// DirectIO writes the downloads of large files around the page cache (O_DIRECT)
	// where the file system allows it (newFileWriter).
	DirectIO bool
	// JournalDir, when set, is where a large file edited in a few places keeps the
	// journal of its patch in place (see patchInPlace): the agent's state dir. Unset,
	// every download is rebuilt and renamed into place.
	JournalDir string
	// patchesLeft says a patch's journal stayed after its write failed; see
	// RecoverPatches.
	patchesLeft atomic.Bool

	setupOnce sync.Once
	inflight  *semaphore.Weighted // block bytes downloads hold; see fetchBlocks
	pre       prefetches          // copies of uploads in progress; see Prefetch
	noBatch   atomic.Bool         // the server has no batched block downloads
	stage     stageState          // the staging dir of the download under way; see StageDir
	dirs      *dircache.Cache     // the dirs the download under way lands files in
	renames   *renameSources      // the files the run under way deletes, by content (landRenamed)
	deletes   *remoteDeletes      // the server entries the run under way deletes (commitDeletes)

	// recording is the record of the last download slice, when recordLater left one
	// running; see WaitRecorded.
	recording *pendingRecord
	// leaveRunning is the most landed files whose record is left running
	// (leaveRunningMax when 0).
	leaveRunning int
}

// OwnSeq is what the agent's own commits and deletes told it of one path's remote
// entry, kept until its changes feed passes it. One record for both Seqs: a first upload
// of 100,000 files holds one per file until the feed catches up.
type OwnSeq struct {
	// Floor is the highest Seq they produced: feed entries older than it are stale.
	Floor int64
	// Recorded is the Seq of the entry an answer recorded in full (block list
	// included), 0 if none: the feed need not write that entry again when it comes
	// back.
	Recorded int64
}

// Outcome summarizes one Run.
type Outcome struct {
	// Done counts ops that took effect.
	Done int
	// Replan is true when some op was skipped because the disk or the server moved on
	// since planning; the agent should scan, pull and plan again.
	Replan bool
	// Failed counts ops that failed for a reason a new attempt may not fix (logged).
	Failed int
	// Reports are the Report ops' messages.
	Reports []plan.Op
	// Rescan lists files whose commit the server refused for their content: their index
	// is in doubt, and the agent hashes them again (every block by its SHA-256) before it
	// plans again.
	Rescan []string
}

// Add adds the outcome of a later run (of the next ops of the same plan) to o.
func (o *Outcome) Add(later Outcome) {
	o.Done += later.Done
	o.Replan = o.Replan || later.Replan
	o.Failed += later.Failed
	o.Reports = append(o.Reports, later.Reports...)
	o.Rescan = append(o.Rescan, later.Rescan...)
}

// errChanged marks a path whose disk state no longer matches the plan.
var errChanged = errors.New("changed since planning")

// Run executes ops in order. Consecutive ops of one kind run as a batch (one commit,
// parallel downloads). A transport error stops the run and is returned: the agent backs
// off and plans again. Everything already done is recorded.
func (x *Executor) Run(ctx context.Context, ops []plan.Op) (Outcome, error) {
	var out Outcome
	x.setup()
	// A patch left unfinished is finished before any op touches its file: a later
	// download of the same path would otherwise have it finished over its own result.
	if err := x.RecoverPatches(); err != nil {
		return out, err
	}
	x.renames, x.deletes = newRenameSources(ops), newRemoteDeletes(ops)
	defer func() { x.renames, x.deletes = nil, nil }()
	x.releaseRecord()
	for i := 0; i < len(ops); {
		j := i + 1
		for j < len(ops) && ops[j].Kind == ops[i].Kind && batched(ops[i].Kind) {
			j++
		}
		batch := ops[i:j]
		i = j
		if k := batch[0].Kind; k != plan.Download && k != plan.Report {
			// Every other op writes the state: after the downloads' record, in order.
			if err := x.WaitRecorded(); err != nil {
				return out, err
			}
		}
		var err error
		switch batch[0].Kind {
		case plan.Upload:
			err = x.upload(ctx, batch, &out)
		case plan.DeleteRemote:
			err = x.deleteRemote(ctx, batch, &out)
		case plan.Download:
			err = x.download(ctx, batch, &out)
		case plan.DeleteLocal:
			err = x.deleteLocal(ctx, batch[0], &out)
		case plan.MoveToConflict:
			err = x.moveToConflict(ctx, batch[0], &out)
		case plan.RecordSynced, plan.ForgetSynced:
			err = x.record(ctx, batch, &out)
		case plan.Report:
			out.Reports = append(out.Reports, batch[0])
		default:
			err = fmt.Errorf("unknown op kind %q", batch[0].Kind)
		}
		if err != nil {
			return out, err
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

func batched(k plan.OpKind) bool {
	switch k {
	case plan.Upload, plan.DeleteRemote, plan.Download, plan.RecordSynced, plan.ForgetSynced:
		return true
	}
	return false
}

// transient reports whether err should stop the run for a retry later.
func transient(err error) bool {
	return client.IsTransient(err) || client.IsUnauthorized(err) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// absent reports whether a stat error means nothing is at the path. ENOTDIR counts: when
// a parent became a file, the path under it is gone.
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// checkDisk returns nil when the disk at p still holds want (nil: nothing).
func (x *Executor) checkDisk(p string, want *plan.Node) error {
	return x.checkDiskAt(x.Root, p, p, want)
}

// checkDiskAt is checkDisk of the path p, found as name in dir (a root at p's parent, or
// x.Root with name p).
func (x *Executor) checkDiskAt(dir *os.Root, name, p string, want *plan.Node) error {
	fi, err := dir.Lstat(name)
	if absent(err) {
		if want == nil {
			return nil
		}
		return fmt.Errorf("%q: %w (gone)", p, errChanged)
	}
	if err != nil {
		return fmt.Errorf("stat %q: %w", p, err)
	}
	if want == nil {
		return fmt.Errorf("%q: %w (appeared)", p, errChanged)
	}
	st, ok := scan.Stat(fi)
	if !ok || st.Type != want.Type {
		return fmt.Errorf("%q: %w (type)", p, errChanged)
	}
	switch st.Type {
	case proto.TypeDir:
		return nil // a dir's mode may differ; only its kind matters for the ops that follow
	case proto.TypeSymlink:
		target, err := dir.Readlink(name)
		if err != nil || target != want.Target {
			return fmt.Errorf("%q: %w (link target)", p, errChanged)
		}
		return nil
	}
	if !x.indexedAs(p, st, want) {
		return fmt.Errorf("%q: %w (content)", p, errChanged)
	}
	return nil
}

// indexedAs reports whether st, the stat key of the file at p on disk, is the one the
// index holds for p, and the index's content is want's: the file is the version a plan
// was made against.
func (x *Executor) indexedAs(p string, st trees.IndexEntry, want *plan.Node) bool {
	idx, ok := x.Trees.Index.Get(p)
	return ok && scan.SameStat(idx, st) && idx.SHA256 == want.SHA256
}

// holdsIndexed reports whether name in r is p's file as indexed, and as planned (want):
// indexedAs of its stat key. The replacements that move p aside before they remove it
// (removeChecked, exchangeChecked) check with it that what they moved is what they
// checked.
func (x *Executor) holdsIndexed(r *os.Root, name, p string, want *plan.Node) bool {
	fi, err := r.Lstat(name)
	if err != nil {
		return false
	}
	st, ok := scan.Stat(fi)
	return ok && x.indexedAs(p, st, want)
}

// skip logs an op skipped because the world moved on and asks for a new plan.
func (x *Executor) skip(op plan.Op, err error, out *Outcome) {
	x.Log.Info("operation skipped; will plan again", "op", string(op.Kind), "path", op.Path, "reason", err.Error())
	out.Replan = true
}

// fail logs an op that failed for a reason of its own.
func (x *Executor) fail(op plan.Op, err error, out *Outcome) {
	x.Log.Warn("operation failed", "op", string(op.Kind), "path", op.Path, "err", err.Error())
	out.Failed++
}

func (x *Executor) setRemote(tx *state.Tx, e *proto.Entry, p string) error {
	if e == nil || e.Deleted {
		x.Trees.Remote.Delete(p)
		if e != nil {
			x.noteOwn(p, e.Seq, true)
		}
		return tx.DeleteRemote(p)
	}
	n, err := state.NodeOf(*e)
	if err != nil {
		return err
	}
	x.Trees.Remote.Set(p, n)
	x.noteOwn(p, e.Seq, !e.BlocksOmitted)
	return tx.PutRemote(*e)
}

// noteOwn raises p's floor to seq and, when the answer was recorded in full, notes seq
// as recorded.
func (x *Executor) noteOwn(p string, seq int64, full bool) {
	if x.OwnSeqs == nil {
		return
	}
	o := x.OwnSeqs[p]
	o.Floor = max(o.Floor, seq)
	if full {
		o.Recorded = seq
	}
	x.OwnSeqs[p] = o
}

// record applies RecordSynced and ForgetSynced ops.
func (x *Executor) record(ctx context.Context, ops []plan.Op, out *Outcome) error {
	return x.State.Update(ctx, func(tx *state.Tx) error {
		for _, op := range ops {
			if op.Kind == plan.ForgetSynced || op.Remote == nil {
				x.Trees.Synced.Delete(op.Path)
				if err := tx.DeleteSynced(op.Path); err != nil {
					return err
				}
			} else {
				x.Trees.Synced.Set(op.Path, *op.Remote)
				if err := tx.PutSynced(op.Path, *op.Remote); err != nil {
					return err
				}
			}
			out.Done++
		}
		return nil
	})
}

// deleteLocal removes a path from disk when it still holds what the plan saw.
func (x *Executor) deleteLocal(ctx context.Context, op plan.Op, out *Outcome) error {
	if _, err := x.Root.Lstat(op.Path); !absent(err) {
		if err := x.checkDisk(op.Path, op.Local); err != nil {
			if errors.Is(err, errChanged) {
				x.skip(op, err, out)
			} else {
				x.fail(op, err, out)
			}
			return nil
		}
		if err := x.removeChecked(op.Path, op.Local); errors.Is(err, errChanged) {
			x.skip(op, err, out)
			return nil
		} else if err != nil && !absent(err) {
			// A dir that still holds ignored files stays; it is no longer tracked.
			x.fail(op, fmt.Errorf("remove: %w", err), out)
			return nil
		}
	}
	err := x.State.Update(ctx, func(tx *state.Tx) error {
		x.Trees.Synced.Delete(op.Path)
		x.Trees.Local.Delete(op.Path)
		x.Trees.Index.Delete(op.Path)
		if err := tx.DeleteSynced(op.Path); err != nil {
			return err
		}
		return tx.DeleteIndex(op.Path)
	})
	if err == nil {
		out.Done++
		x.Counters.FilesDone.Add(1)
	}
	return err
}

// removeChecked removes p, checked to be want (the indexed version, deleted on the
// server), only if what it removes is what was checked: a file or link is first renamed
// aside in its dir without replacing anything, compared with the index there, and only
// then unlinked. A program's save that replaced p since the check is what got moved: it
// is put back (or, if the path was taken meanwhile, kept as a conflict copy beside it),
// and errChanged says so. A dir is removed as it is (rmdir takes only an empty one);
// where renames cannot refuse to replace, p is removed after the check alone.
func (x *Executor) removeChecked(p string, want *plan.Node) error {
	if want == nil || want.Type == proto.TypeDir {
		return x.Root.Remove(p)
	}
	dir := path.Dir(p)
	d, err := x.Root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	name, aside := path.Base(p), path.Base(tempName(p))
	if err := renameAt(d, name, d, aside, true); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return x.Root.Remove(p)
		}
		return err
	}
	if x.holdsIndexed(x.Root, path.Join(dir, aside), p, want) {
		return x.Root.Remove(path.Join(dir, aside))
	}
	back := name
	if err := renameAt(d, aside, d, back, true); err != nil {
		back = path.Base(proto.ConflictPath(p, "deleted-elsewhere", time.Now()))
		if err := renameAt(d, aside, d, back, true); err != nil {
			return fmt.Errorf("%q: a save made while it was deleted is left as %q: %w", p, path.Join(dir, aside), err)
		}
	}
	return fmt.Errorf("%q: %w (saved while it was deleted; kept as %q)", p, errChanged, path.Join(dir, back))
}

// moveToConflict renames the local version aside so the remote one can take the path.
func (x *Executor) moveToConflict(ctx context.Context, op plan.Op, out *Outcome) error {
	if err := x.checkDisk(op.Path, op.Local); err != nil {
		x.skip(op, err, out)
		return nil
	}
	if _, err := x.Root.Lstat(op.NewPath); !errors.Is(err, fs.ErrNotExist) {
		x.skip(op, fmt.Errorf("conflict copy %q: %w (exists)", op.NewPath, errChanged), out)
		return nil
	}
	if err := x.Root.Rename(op.Path, op.NewPath); err != nil {
		x.fail(op, fmt.Errorf("rename to %q: %w", op.NewPath, err), out)
		return nil
	}
	x.Log.Warn("conflict: kept the local version as a conflict copy", "path", op.Path, "copy", op.NewPath)
	x.Counters.Conflicts.Add(1)
	out.Done++
	idx, hadIdx := x.Trees.Index.Get(op.Path)
	var blocks []proto.Block
	var sums chunk.Sums
	if hadIdx && idx.Type == proto.TypeFile {
		var err error
		if blocks, sums, err = x.State.LocalBlockSums(op.Path); err != nil {
			return err
		}
	}
	return x.State.Update(ctx, func(tx *state.Tx) error {
		if n, ok := x.Trees.Local.Get(op.Path); ok {
			x.Trees.Local.Set(op.NewPath, n)
			x.Trees.Local.Delete(op.Path)
		}
		x.Trees.Index.Delete(op.Path)
		if err := tx.DeleteIndex(op.Path); err != nil {
			return err
		}
		if hadIdx {
			x.Trees.Index.Set(op.NewPath, idx)
			return tx.PutIndex(op.NewPath, idx, blocks, sums)
		}
		return nil
	})
}

// deleteRemote deletes server entries, each against the Seq the plan saw.
func (x *Executor) deleteRemote(ctx context.Context, ops []plan.Op, out *Outcome) error {
	var items []proto.DeleteItem
	var sent []plan.Op
	for _, op := range ops {
		if op.Remote == nil || x.deletes.isDone(op.Path) {
			continue // done by the commit of a rename (commitDeletes)
		}
		// The path must still be absent here: a file re-created since the plan is
		// uploaded by the next one instead of deleted.
		if err := x.checkDisk(op.Path, nil); err != nil {
			x.skip(op, err, out)
			continue
		}
		items = append(items, proto.DeleteItem{Path: op.Path, BaseSeq: op.Remote.Seq})
		sent = append(sent, op)
	}
	for start := 0; start < len(items); start += maxBatch {
		end := min(start+maxBatch, len(items))
		res, err := x.Server.Delete(ctx, items[start:end])
		if err != nil {
			if transient(err) {
				return err
			}
			for _, op := range sent[start:end] {
				x.fail(op, err, out)
			}
			continue
		}
		err = x.State.Update(ctx, func(tx *state.Tx) error {
			for i, r := range res {
				if err := x.recordRemoteDelete(tx, sent[start+i], r, out); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// maxBatch caps the items of one commit or delete request.
const maxBatch = 1000
