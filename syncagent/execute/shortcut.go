package execute

import (
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// minDeltaBlocks is the shortest block list sent as a delta; shorter lists cost little.
const minDeltaBlocks = 8

// contentSource is a file version the server holds, by content.
type contentSource struct {
	path string
	seq  int64
	size int64
}

// contentSources indexes the remote tree's files that are larger than what is inlined,
// by SHA-256, so that an upload of the same content (a rename, a copy, a change of mode
// or mtime only) can name that version instead of listing its blocks.
func (x *Executor) contentSources() map[plan.Hash]contentSource {
	out := make(map[plan.Hash]contentSource)
	for p, n := range x.Trees.Remote.All() {
		if n.Type != proto.TypeFile || n.Seq <= 0 || n.Size <= x.InlineMax || n.SHA256.IsZero() {
			continue
		}
		if cur, ok := out[n.SHA256]; !ok || p < cur.path {
			out[n.SHA256] = contentSource{path: p, seq: n.Seq, size: n.Size}
		}
	}
	return out
}

// shortcut turns p into a reference to stored content where it can: copyFrom a remote
// version with the same content, else a delta of the block list against the version it
// replaces. The server checks either; on refusal the whole list goes again. It also
// keeps that version's list for the new blocks to go as patches (blockSender).
func (x *Executor) shortcut(p *pendingUpload, sources map[plan.Hash]contentSource) {
	it := &p.item
	if src, ok := sources[p.sum]; ok && src.size == it.Size {
		it.Blocks, it.CopyFrom = nil, &proto.ContentRef{Path: src.path, Seq: src.seq}
		p.blocks, p.short = nil, true
		return
	}
	r := p.op.Remote
	if r == nil || r.Type != proto.TypeFile || r.Seq <= 0 {
		return
	}
	base, err := x.State.RemoteBlocks(p.op.Path)
	if err != nil || !covers(base, r.Size) {
		return // the feed did not send the list; send ours whole
	}
	p.bases = newPatchBases(base)
	if len(p.full) < minDeltaBlocks {
		return
	}
	d := proto.DiffBlocks(r.Seq, base, p.full)
	if len(d.Blocks) > len(p.full)/2 {
		return
	}
	it.Blocks, it.BlocksDelta = nil, &d
	p.blocks, p.short = d.Blocks, true
}

// fillBlocks gives a committed entry whose list the server omitted the list it holds:
// the one sent (whole or as a delta), or the copied version's when the agent knows it.
func (x *Executor) fillBlocks(e proto.Entry, p *pendingUpload) proto.Entry {
	if e.SHA256 != p.item.SHA256 || e.Size != p.item.Size {
		return e // not ours (a conflict answer): keep it without a list
	}
	var list []proto.Block
	if ref := p.item.CopyFrom; ref != nil {
		if n, ok := x.Trees.Remote.Get(ref.Path); ok && n.Seq == ref.Seq {
			list, _ = x.State.RemoteBlocks(ref.Path)
		}
	} else if list = p.full; list == nil {
		list = p.item.Blocks // inlined: the one block the server made of it
	}
	if covers(list, e.Size) {
		e.Blocks, e.BlocksOmitted = list, false
	}
	return e
}

// covers reports whether blocks add up to size (and exist when size > 0).
func covers(blocks []proto.Block, size int64) bool {
	var sum int64
	for _, b := range blocks {
		sum += b.Size
	}
	return sum == size && (size == 0 || len(blocks) > 0)
}
