package syncserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// resolveRef fills in the block list of a commit item that references stored content
// (copyFrom or blocksDelta). trusted is true when the list is a committed version's own,
// so its content was verified when that version was committed. An *itemError refuses the
// item; any other error is the store's.
func (s *Server) resolveRef(ctx context.Context, it proto.CommitItem, e *proto.Entry) (trusted bool, err error) {
	if ref := it.CopyFrom; ref != nil {
		v, err := s.retainedFile(ctx, ref.Path, ref.Seq)
		if err != nil {
			return false, fmt.Errorf("copy from %q: %w", ref.Path, err)
		}
		if v.Size != it.Size || v.SHA256 != it.SHA256 {
			return false, itemErrorf("copyFrom: version %d of %s has size %d and sha256 %s, not the item's", ref.Seq, ref.Path, v.Size, v.SHA256)
		}
		e.Blocks = v.Blocks
		return true, nil
	}
	d := it.BlocksDelta
	base, err := s.retainedFile(ctx, it.Path, d.BaseSeq)
	if err != nil {
		return false, fmt.Errorf("blocks delta of %q: %w", it.Path, err)
	}
	list, err := d.Apply(base.Blocks)
	if err != nil {
		return false, itemErrorf("blocksDelta: %v", err)
	}
	if err := checkBlockList(list, it.Size, it.SHA256, "blocks", s.cfg); err != nil {
		return false, itemErrorf("blocksDelta: %v", err)
	}
	e.Blocks = list
	return false, nil
}

// retainedFile returns the retained, live file version seq of p; an *itemError when
// there is none.
func (s *Server) retainedFile(ctx context.Context, p string, seq int64) (proto.Entry, error) {
	v, err := s.store.Version(ctx, p, seq)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return v, itemErrorf("no retained version %d of %s", seq, p)
	case err != nil:
		return v, err
	case v.Deleted:
		return v, itemErrorf("version %d of %s is a deletion", seq, p)
	case v.Type != proto.TypeFile:
		return v, itemErrorf("version %d of %s is a %s, not a file", seq, p, v.Type)
	}
	return v, nil
}

// itemMessage is the text of an item refusal: the *itemError's own message without the
// wrapping, so that clients read what is wrong with the item.
func itemMessage(err error) (string, bool) {
	var ie *itemError
	if errors.As(err, &ie) {
		return err.Error(), true
	}
	return "", false
}

// HeaderBaseBlock names, on a GET /v1/blocks/{hash}?base=B answer, the block B whose
// bytes are the zstd dictionary of the body.
const HeaderBaseBlock = "X-Sync-Base-Block"

// maxDeltaBase is the largest base block used as a dictionary; a larger one (or a base
// the server lacks) gets the plain answer.
const maxDeltaBase = 4 << 20

// sendBlockDelta answers a block download zstd-compressed with the stored block base as
// a raw dictionary: a block that differs from base by a small edit costs a few dozen
// bytes. It returns false, having written nothing, when base is not usable.
func (s *Server) sendBlockDelta(w http.ResponseWriter, r *http.Request, f io.Reader, size int64, base string) bool {
	if size > maxDeltaBase {
		return false
	}
	dict, err := s.readBase(base, maxDeltaBase)
	if err != nil || len(dict) == 0 {
		return false
	}
	data, err := io.ReadAll(io.LimitReader(f, size+1))
	if err == nil && int64(len(data)) != size {
		err = fmt.Errorf("block has %d bytes, not %d", len(data), size)
	}
	if err != nil {
		s.storeFailed(w, r, "read block", err) // f is spent: answer here
		return true
	}
	window := 1 << 20 // the dictionary and the block must fit in the window
	for window < len(dict)+len(data) {
		window <<= 1
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderDictRaw(0, dict), zstd.WithWindowSize(window))
	if err != nil {
		return false
	}
	out := enc.EncodeAll(data, nil)
	_ = enc.Close()
	h := w.Header()
	h.Set("Content-Encoding", "zstd")
	h.Set(HeaderBaseBlock, base)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	return true
}
