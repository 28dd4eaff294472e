package syncserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Block patches (proto/patch.go): a client uploads a block as the bytes between the
// start and the end it shares with a block the server holds.

// maxPatchBase is the largest base block a patch or its sums may use: the base is read
// whole into memory.
const maxPatchBase = maxDeltaBase

// readBase reads the block hash whole, when it is stored and at most limit bytes.
// errBaseTooLarge marks a block too large to serve as a patch's base: the client's
// request, not the store, is at fault.
var errBaseTooLarge = errors.New("more than a patch's base may hold")

func (s *Server) readBase(hash string, limit int64) ([]byte, error) {
	f, size, err := s.blocks.Open(hash)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > limit {
		return nil, fmt.Errorf("block %s has %d bytes: %w (%d)", hash, size, errBaseTooLarge, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, size+1))
	if err == nil && int64(len(data)) != size {
		err = fmt.Errorf("block %s has %d bytes, not %d", hash, len(data), size)
	}
	return data, err
}

// handleBlockSums answers GET /v1/blocks/{hash}/sums with the block's chunk sums.
func (s *Server) handleBlockSums(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	if !blobs.ValidHash(hash) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("block hash %q is not a lowercase hex SHA-256", truncateForError(hash)))
		return
	}
	data, err := s.readBase(hash, maxPatchBase)
	switch {
	case errors.Is(err, blobs.ErrNotFound):
		writeError(w, http.StatusNotFound, "block "+hash+" not found")
	case errors.Is(err, errBaseTooLarge):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		s.storeFailed(w, r, "read block", err)
	default:
		writeJSON(w, http.StatusOK, proto.SumsOf(data))
	}
}

// patchedBody returns the block a patch upload rebuilds (base[:head] + body +
// base[len(base)-tail:]) when the request names a base, else body itself; ok is false
// when the error is answered.
func (s *Server) patchedBody(w http.ResponseWriter, r *http.Request, body io.Reader) (io.Reader, bool) {
	q := r.URL.Query()
	if !q.Has("base") {
		return body, true
	}
	base := q.Get("base")
	head, herr := strconv.ParseInt(q.Get("head"), 10, 64)
	tail, terr := strconv.ParseInt(q.Get("tail"), 10, 64)
	if !blobs.ValidHash(base) || herr != nil || terr != nil || head < 0 || tail < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("patch base %q, head %q, tail %q: want a lowercase hex SHA-256 and two byte counts ≥ 0",
			truncateForError(base), truncateForError(q.Get("head")), truncateForError(q.Get("tail"))))
		return nil, false
	}
	data, err := s.readBase(base, maxPatchBase)
	switch {
	case errors.Is(err, blobs.ErrNotFound):
		writeError(w, http.StatusNotFound, "patch base block "+base+" not found")
		return nil, false
	case errors.Is(err, errBaseTooLarge):
		writeError(w, http.StatusBadRequest, "patch base "+err.Error())
		return nil, false
	case err != nil:
		s.storeFailed(w, r, "read patch base", err)
		return nil, false
	case head > int64(len(data)) || tail > int64(len(data))-head:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("patch head %d and tail %d: more than the %d bytes of base %s", head, tail, len(data), base))
		return nil, false
	}
	return io.MultiReader(bytes.NewReader(data[:head]), body, bytes.NewReader(data[int64(len(data))-tail:])), true
}
