package execute

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"

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

// blockPutter is what a blockSender needs of the sync server.
type blockPutter interface {
	PutStreamBlock(ctx context.Context, hash string, data []byte, compress bool, stream string, off int64) error
	BlockSums(ctx context.Context, hash string) (*proto.BlockSums, error)
	PutStreamBlockPatch(ctx context.Context, hash string, data []byte, base string, head, tail int64, stream string, off int64) error
}

// patchMisses is how many more of a file's blocks may fail to go as patches than went,
// before its other blocks go whole without asking.
const patchMisses = 4

// blockSender uploads the blocks of one file, each at its offset of the file's upload
// stream: as a patch of the block it replaces (bases) when the server holds that block
// and the patch leaves out at least a quarter of the new one, else whole. A patch that
// fails (an older server, a base collected since) falls back to the whole block. Its
// methods may be called from several goroutines.
type blockSender struct {
	srv    blockPutter
	log    *slog.Logger
	stream string
	bases  patchBases
	// compress is set before the first put.
	compress bool
	// tried and paid count the patches asked about and those sent. Once patchMisses
	// more failed than paid (a file rewritten through: every block new), the others go
	// whole without asking: each ask costs a request, and the server a read of the base.
	tried, paid atomic.Int32
}

// put uploads the block b, whose bytes are data, at offset off of the file.
func (s *blockSender) put(ctx context.Context, b proto.Block, data []byte, off int64) error {
	if base := s.bases.at(off, b.Size); base.Hash != "" && base.Hash != b.Hash &&
		s.tried.Load()-s.paid.Load() < patchMisses {
		s.tried.Add(1)
		err := s.putPatch(ctx, b, data, base, off)
		if err == nil {
			s.paid.Add(1)
			return nil
		}
		if ctx.Err() == nil && !errors.Is(err, errPatchTooLarge) {
			s.log.Debug("patch upload of a block failed; sending it whole", "block", b.Hash, "base", base.Hash, "err", err)
		}
	}
	return s.srv.PutStreamBlock(ctx, b.Hash, data, s.compress, s.stream, off)
}

// errPatchTooLarge is a patch that would leave out less than a quarter of its block.
var errPatchTooLarge = errors.New("the patch would send most of the block")

// putPatch uploads b as a patch of base.
func (s *blockSender) putPatch(ctx context.Context, b proto.Block, data []byte, base proto.Block, off int64) error {
	sums, err := s.srv.BlockSums(ctx, base.Hash)
	if err != nil {
		return err
	}
	head, tail := proto.PatchOf(*sums, data)
	if 4*(head+tail) < b.Size {
		return errPatchTooLarge
	}
	return s.srv.PutStreamBlockPatch(ctx, b.Hash, data, base.Hash, head, tail, s.stream, off)
}
