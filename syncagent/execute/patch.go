package execute

import (
	"context"
	"log/slog"
	"slices"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// An edited file's new blocks are uploaded, where they can be, as patches of the blocks
// they replace (proto/patch.go): the bytes between the start and the end a new block
// shares with the block of the previous version that held the bytes at its offset.

// patchMin is the smallest block sent as a patch: the patch costs a request for the
// base's sums first.
const patchMin = 16 << 10

// patchBases finds, in a previous version's block list, the block a new block replaces.
type patchBases struct {
	list []proto.Block
	ends []int64 // ends[i]: where list[i] ends in that version
}

func newPatchBases(list []proto.Block) patchBases {
	p := patchBases{list: list, ends: make([]int64, len(list))}
	var end int64
	for i, b := range list {
		end += b.Size
		p.ends[i] = end
	}
	return p
}

// at returns the block that held the previous version's byte at off, for a new block of
// size bytes there; a zero Block when there is none or the new block is too small to
// be worth a patch.
func (p patchBases) at(off, size int64) proto.Block {
	if size < patchMin {
		return proto.Block{}
	}
	if i, _ := slices.BinarySearch(p.ends, off+1); i < len(p.list) {
		return p.list[i]
	}
	return proto.Block{}
}

// blockPutter is what putBlock needs of the sync server.
type blockPutter interface {
	PutStreamBlock(ctx context.Context, hash string, data []byte, compress bool, stream string, off int64) error
	BlockSums(ctx context.Context, hash string) (*proto.BlockSums, error)
	PutStreamBlockPatch(ctx context.Context, hash string, data []byte, base string, head, tail int64, stream string, off int64) error
}

// putBlock uploads the block b, whose bytes are data, at offset off of the upload
// stream: as a patch of base when the server holds base and the patch leaves out at
// least a quarter of the block, else whole. A patch that fails (an older server, a base
// collected since) falls back to the whole block.
func putBlock(ctx context.Context, srv blockPutter, log *slog.Logger, b proto.Block, data []byte, base proto.Block, compress bool, stream string, off int64) error {
	if base.Hash != "" && base.Hash != b.Hash {
		sums, err := srv.BlockSums(ctx, base.Hash)
		if err == nil {
			head, tail := proto.PatchOf(*sums, data)
			if 4*(head+tail) < b.Size {
				return srv.PutStreamBlock(ctx, b.Hash, data, compress, stream, off)
			}
			if err = srv.PutStreamBlockPatch(ctx, b.Hash, data, base.Hash, head, tail, stream, off); err == nil {
				return nil
			}
		}
		if ctx.Err() == nil {
			log.Debug("patch upload of a block failed; sending it whole", "block", b.Hash, "base", base.Hash, "err", err)
		}
	}
	return srv.PutStreamBlock(ctx, b.Hash, data, compress, stream, off)
}
