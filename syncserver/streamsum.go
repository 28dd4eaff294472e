package syncserver

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A writer that sent every block of a large file to an upload stream may leave the
// file's SHA-256 to the server (POST /v1/streams/{id}/sum): the stream hashes the
// blocks in file order as they arrive, on the server's core, while the writer still
// reads the file on its own. The answer is the SHA-256 of the stored bytes of the
// stream's blocks, given only when they are exactly the list the writer names (its
// ListKey, count and size), so it is the hash of the content of that list; the commit
// that names the stream then finds it hashed. What vouches that the list is the
// writer's file is the writer's: each block sent is checked against its name, and each
// block named by reference is one the writer checked against its own bytes.

// errNoStream is sum's answer for a stream the server does not hold.
var errNoStream = errors.New("no such stream")

// sum waits until the stream hashed every block it holds in order, then returns its
// SHA-256 if those blocks are exactly size bytes in n blocks whose list key is list.
// The stream stays for its commit, hashing from now on whatever comes without holding
// any back for a checkpoint.
func (hs *hashStreams) sum(k streamKey, size int64, n int, list proto.ListKey) (string, error) {
	st := hs.get(k, false)
	if st == nil {
		return "", errNoStream
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	hs.finish(st)
	switch {
	case st.broken:
		return "", errors.New("it was given up (a block could not be read, or it held too many blocks out of order)")
	case st.end < size:
		return "", fmt.Errorf("it holds the content up to offset %d only, not the %d bytes named: the block at %d was not sent to it", st.end, size, st.end)
	case st.end > size || len(st.list) != n || st.endKey != list:
		return "", fmt.Errorf("its %d blocks (%d bytes) are not the list named (%d blocks, %d bytes)", len(st.list), st.end, n, size)
	}
	return hex.EncodeToString(st.h.Sum(nil)), nil
}

// handleStreamSum answers the SHA-256 of an upload stream's content (StreamSumRequest).
func (s *Server) handleStreamSum(w http.ResponseWriter, r *http.Request) {
	id, body, done, ok := s.streamRequest(w, r)
	if !ok {
		return
	}
	req, list, err := decodeStreamSum(body)
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	sum, err := s.streams.sum(streamKey{agentFrom(r.Context()), id}, req.Size, req.Blocks, list)
	switch {
	case errors.Is(err, errNoStream):
		// 409, not 404: a client takes a 404 for a server without sums.
		writeError(w, http.StatusConflict, fmt.Sprintf("stream %s is not held (never used, expired, or taken by its commit); hash the file yourself", id))
	case err != nil:
		writeError(w, http.StatusConflict, fmt.Sprintf("stream %s: %v; hash the file yourself", id, err))
	default:
		writeJSON(w, http.StatusOK, proto.StreamSumResponse{SHA256: sum})
	}
}
