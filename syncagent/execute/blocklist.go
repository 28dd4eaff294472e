package execute

import (
	"context"
	"errors"
	"fmt"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// downloadFile makes a file equal op.Remote: by renaming a file of the same content
// that the run deletes (landRenamed), else from blocks. The block list comes from the
// changes feed;
// when the feed left it out (a large file), the agent first tries a local file with the
// same content (a rename or a copy: no transfer at all), then asks the server for the
// list, as a delta against the version it holds when it can.
func (x *Executor) downloadFile(ctx context.Context, op plan.Op) (landed, error) {
	r := op.Remote
	if l, ok, err := x.landRenamed(op); ok {
		return l, err
	}
	blocks, err := x.State.RemoteBlocks(op.Path)
	if err != nil {
		return landed{}, err
	}
	if covers(blocks, r.Size) {
		return x.assemble(ctx, op, blocks)
	}
	if local := x.sameContent(r); local != nil {
		l, err := x.assemble(ctx, op, local)
		if !retryList(err) {
			return l, err
		}
		x.Log.Info("local copy of the same content failed; fetching the block list", "path", op.Path, "err", err.Error())
	}
	list, delta, err := x.fetchList(ctx, op, true)
	if err != nil {
		return landed{}, err
	}
	l, err := x.assemble(ctx, op, list)
	if delta && retryList(err) {
		x.Log.Info("block list delta did not fit; fetching the whole list", "path", op.Path, "err", err.Error())
		if list, _, err = x.fetchList(ctx, op, false); err != nil {
			return landed{}, err
		}
		l, err = x.assemble(ctx, op, list)
	}
	if err == nil {
		l.remote = list
	}
	return l, err
}

// retryList reports whether a failed assembly may succeed with another block list: not
// when the disk moved on or the server is unreachable.
func retryList(err error) bool {
	return err != nil && !transient(err) && !errors.Is(err, errChanged)
}

// sameContent returns the block list of a local file indexed with r's content, or nil.
// The path itself comes first (a change of mode or mtime only).
func (x *Executor) sameContent(r *plan.Node) []proto.Block {
	try := func(p string) []proto.Block {
		idx, ok := x.Trees.Index.Get(p)
		if !ok || idx.Type != proto.TypeFile || idx.SHA256 != r.SHA256 || idx.Size != r.Size {
			return nil
		}
		list, err := x.State.LocalBlocks(p)
		if err != nil || !covers(list, r.Size) {
			return nil
		}
		return list
	}
	for p := range x.Trees.Index.All() {
		if list := try(p); list != nil {
			return list
		}
	}
	return nil
}

// fetchList asks the server for the block list of op.Remote. With delta, and a local file
// that still holds the synced version, it asks for a delta against that version and
// applies it to the local file's list (delta reports that it did).
func (x *Executor) fetchList(ctx context.Context, op plan.Op, delta bool) (list []proto.Block, usedDelta bool, err error) {
	r := op.Remote
	var base []proto.Block
	var baseSeq int64
	if s, ok := x.Trees.Synced.Get(op.Path); delta && ok && s.Type == proto.TypeFile && s.Seq > 0 {
		if idx, ok := x.Trees.Index.Get(op.Path); ok && idx.SHA256 == s.SHA256 && idx.Size == s.Size {
			if b, err := x.State.LocalBlocks(op.Path); err == nil && covers(b, s.Size) {
				base, baseSeq = b, s.Seq
			}
		}
	}
	e, err := x.Server.EntryAt(ctx, op.Path, r.Seq, baseSeq)
	if err != nil {
		return nil, false, fmt.Errorf("block list of %q: %w", op.Path, err)
	}
	if e.SHA256 != r.SHA256.String() || e.Size != r.Size {
		return nil, false, fmt.Errorf("block list of %q: version %d has other content than the feed said", op.Path, r.Seq)
	}
	list = e.Blocks
	if d := e.BlocksDelta; d != nil {
		if d.BaseSeq != baseSeq {
			return nil, false, fmt.Errorf("block list of %q: delta against version %d, asked for %d", op.Path, d.BaseSeq, baseSeq)
		}
		if list, err = d.Apply(base); err != nil {
			return nil, false, fmt.Errorf("block list of %q: %w", op.Path, err)
		}
		usedDelta = true
	}
	if !covers(list, r.Size) {
		return nil, false, fmt.Errorf("block list of %q does not cover its %d bytes", op.Path, r.Size)
	}
	return list, usedDelta, nil
}
