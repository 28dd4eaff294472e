package execute

import (
	"errors"
	"fmt"
	"sync"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// remoteDeletes are the server entries a run deletes (DeleteRemote) of files, by path. An upload
// that copies one of them (a rename: copyFrom the deleted path's version) carries its
// delete in the same commit (proto.CommitRequest.Deletes), so that a reader gets the new
// path and the old one's delete in one pull, and renames its file instead of copying it
// (landRenamed). The DeleteRemote ops then skip what a commit did.
type remoteDeletes struct {
	mu      sync.Mutex
	pending map[string]plan.Op // not sent yet
	done    map[string]bool    // recorded from a commit's answer
}

// newRemoteDeletes returns the deletes among ops, nil when there are none.
func newRemoteDeletes(ops []plan.Op) *remoteDeletes {
	var pending map[string]plan.Op
	for _, op := range ops {
		if op.Kind == plan.DeleteRemote && op.Remote != nil && op.Remote.Type == proto.TypeFile {
			if pending == nil {
				pending = map[string]plan.Op{}
			}
			pending[op.Path] = op
		}
	}
	if pending == nil {
		return nil
	}
	return &remoteDeletes{pending: pending, done: map[string]bool{}}
}

// take removes and returns the delete of ref's path when it deletes ref's version. r
// may be nil.
func (r *remoteDeletes) take(ref *proto.ContentRef) (plan.Op, bool) {
	if r == nil || ref == nil {
		return plan.Op{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	op, ok := r.pending[ref.Path]
	if !ok || op.Remote.Seq != ref.Seq {
		return plan.Op{}, false
	}
	delete(r.pending, ref.Path)
	return op, true
}

// markDone notes that a commit's answer decided the delete of p.
func (r *remoteDeletes) markDone(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done[p] = true
}

// isDone reports whether a commit's answer decided the delete of p. r may be nil.
func (r *remoteDeletes) isDone(p string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[p]
}

// commitDeletes takes the deletes that the uploads of batch copy from, for their commit.
// A delete taken but not answered (the commit failed, or the server does not take
// deletes in a commit) is sent by its own op, which skips only those a commit's answer
// decided (isDone); so is one whose path is no longer absent on disk (its op skips it).
func (x *Executor) commitDeletes(batch []*pendingUpload) ([]proto.DeleteItem, []plan.Op) {
	var items []proto.DeleteItem
	var ops []plan.Op
	for _, p := range batch {
		op, ok := x.deletes.take(p.item.CopyFrom)
		if !ok {
			continue
		}
		if x.checkDisk(op.Path, nil) != nil {
			continue
		}
		items = append(items, proto.DeleteItem{Path: op.Path, BaseSeq: op.Remote.Seq})
		ops = append(ops, op)
	}
	return items, ops
}

// recordRemoteDelete records the server's answer r to the delete of op.
func (x *Executor) recordRemoteDelete(tx *state.Tx, op plan.Op, r proto.ItemResult, out *Outcome) error {
	switch r.Status {
	case proto.StatusOK:
		x.Trees.Synced.Delete(op.Path)
		if err := tx.DeleteSynced(op.Path); err != nil {
			return err
		}
		if err := x.setRemote(tx, r.Entry, op.Path); err != nil {
			return err
		}
		out.Done++
		x.Counters.FilesDone.Add(1)
	case proto.StatusConflict:
		if err := x.setRemote(tx, r.Entry, op.Path); err != nil {
			return err
		}
		x.skip(op, fmt.Errorf("server entry moved on"), out)
	default:
		x.fail(op, errors.New(r.Error), out)
	}
	return nil
}
