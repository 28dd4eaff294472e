package syncserver

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Uploads in progress let a reader fetch a large file's blocks while its writer still
// uploads them, so that the file is all there soon after its commit rather than a whole
// download later. The writer opens its upload stream (hashstream.go) with the file's
// path and size (POST /v1/streams/{id}/open) and the server numbers the upload; readers
// list the uploads in progress (GET /v1/uploads) and each one's blocks as they are
// stored, contiguous from the file's start, in file order (GET /v1/uploads/{no}), both
// as long polls. Nothing of it is an entry: the file becomes one at its commit, checked
// as ever, and a reader uses blocks it fetched early only when the committed entry
// lists them. A block listed is one the server stored after checking it against its
// name, or a committed version's named by reference; the list is the stream's own
// (list then queue), which only grows while the stream lives.

// maxUploadBlocks bounds the blocks of one GET /v1/uploads/{no} answer (and is its
// default): a 1 GiB file's list, about 390 KiB of JSON.
const maxUploadBlocks = 4096

var (
	// errStreamOpened is open's answer for a stream that names its file already.
	errStreamOpened = errors.New("it names its file already")
	// errStreamEnded is open's answer for a stream that takes no more blocks.
	errStreamEnded = errors.New("it was given up or taken by its commit")
)

// wakeup wakes the requests waiting for a change: each takes the channel of wait, and
// fire closes it. Its owner's mutex guards it. No channel is made until a request
// waits, so a stream nobody reads costs none per block.
type wakeup struct{ ch chan struct{} }

// wait returns the channel the next fire closes.
func (w *wakeup) wait() <-chan struct{} {
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

// fire wakes every request waiting.
func (w *wakeup) fire() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// open names path, of size bytes, as the file stream k uploads, creating the stream if
// need be, and returns the upload's number.
func (hs *hashStreams) open(k streamKey, path string, size int64) (int64, error) {
	st := hs.get(k, true)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.no != 0:
		return 0, errStreamOpened
	case st.broken || st.gone:
		return 0, errStreamEnded
	}
	hs.lastNo++
	st.no, st.path, st.size = hs.lastNo, path, size
	hs.opened.fire()
	return st.no, nil
}

// uploads returns the uploads in progress numbered above after, in number order, the
// last number given, and a channel closed at the next open.
func (hs *hashStreams) uploads(after int64) ([]proto.Upload, int64, <-chan struct{}) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.expire(hs.now())
	out := []proto.Upload{}
	for _, st := range hs.m {
		if st.no <= after {
			continue
		}
		st.mu.Lock()
		broken := st.broken
		st.mu.Unlock()
		if !broken {
			out = append(out, proto.Upload{No: st.no, Path: st.path, Size: st.size})
		}
	}
	slices.SortFunc(out, func(a, b proto.Upload) int { return cmp.Compare(a.No, b.No) })
	return out, hs.lastNo, hs.opened.wait()
}

// upload returns the stream of upload no, or nil when no stream held has that number.
func (hs *hashStreams) upload(no int64) *hashStream {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.expire(hs.now())
	for _, st := range hs.m {
		if st.no == no {
			return st
		}
	}
	return nil
}

// uploadBlocks returns at most limit of the stream's blocks that are stored and
// contiguous from the file's start, from index from on; done when the stream takes no
// more and they reach the last it holds; and a channel closed at the stream's next
// change. When baseSeq names the version of the upload's path whose blocks the stream
// names by reference (an edit), the blocks come as runs, those stretches as references
// to that version's list (a reader that holds it need not get 3,600 hashes for a 1 GiB
// edit); blocks is then nil.
func (hs *hashStreams) uploadBlocks(st *hashStream, from, limit int, baseSeq int64) (blocks []proto.Block, runs []proto.UploadRun, done bool, changed <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	// pump moves blocks from queue to list under st.mu: list + queue is the whole
	// sequence at any moment, and an index names the same block throughout.
	n := len(st.list) + len(st.queue)
	byRef := baseSeq > 0 && st.stored && st.base == proto.ContentRef{Path: st.path, Seq: baseSeq}
	if !byRef {
		blocks = []proto.Block{}
	}
	end := min(n, from+limit)
	for i := from; i < end; i++ {
		var b proto.Block
		if i < len(st.list) {
			b = st.list[i]
		} else {
			b = st.queue[i-len(st.list)].b
		}
		if !byRef {
			blocks = append(blocks, b)
			continue
		}
		runs = addToRuns(runs, b, int(st.bases[i]))
	}
	done = (st.broken || st.gone) && max(from, end) >= n
	return blocks, runs, done, st.changed.wait()
}

// addToRuns appends block b, which is the base list's block baseIdx (-1: none), to
// runs.
func addToRuns(runs []proto.UploadRun, b proto.Block, baseIdx int) []proto.UploadRun {
	last := len(runs) - 1
	switch {
	case baseIdx < 0 && last >= 0 && runs[last].Count == 0:
		runs[last].Blocks = append(runs[last].Blocks, b)
	case baseIdx < 0:
		runs = append(runs, proto.UploadRun{Blocks: []proto.Block{b}})
	case last >= 0 && runs[last].Count > 0 && runs[last].BaseFrom+runs[last].Count == baseIdx:
		runs[last].Count++
	default:
		runs = append(runs, proto.UploadRun{BaseFrom: baseIdx, Count: 1})
	}
	return runs
}

// handleStreamOpen names the file an upload stream uploads (StreamOpenRequest), so that
// readers may fetch its blocks before the commit.
func (s *Server) handleStreamOpen(w http.ResponseWriter, r *http.Request) {
	id, body, done, ok := s.streamRequest(w, r)
	if !ok {
		return
	}
	req, err := decodeStreamOpen(body, s.cfg.MaxFileSize)
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	no, err := s.streams.open(streamKey{agentFrom(r.Context()), id}, req.Path, req.Size)
	if err != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("stream %s cannot be opened: %v", id, err))
		return
	}
	writeJSON(w, http.StatusOK, proto.StreamOpenResponse{No: no})
}

// handleUploads lists the uploads in progress (UploadsResponse), waiting for one to
// open when there is none past the client's after.
func (s *Server) handleUploads(w http.ResponseWriter, r *http.Request) {
	after, wait, err := parseUploads(r.URL.Query(), s.cfg.MaxWait)
	if err != nil {
		badRequest(w, err)
		return
	}
	s.longPoll(r, wait, func(final bool) <-chan struct{} {
		list, last, opened := s.streams.uploads(after)
		if len(list) == 0 && !final {
			return opened
		}
		writeJSON(w, http.StatusOK, proto.UploadsResponse{Uploads: list, Last: last})
		return nil
	})
}

// handleUploadBlocks answers the blocks an upload in progress stored so far
// (UploadBlocksResponse), waiting for more when there is none past the client's from.
func (s *Server) handleUploadBlocks(w http.ResponseWriter, r *http.Request) {
	q, err := parseUploadBlocks(r.PathValue("no"), r.URL.Query(), s.cfg.MaxWait)
	if err != nil {
		badRequest(w, err)
		return
	}
	// The stream found is kept: a commit that takes it meanwhile takes it out of the
	// streams, and the answer is then done.
	st := s.streams.upload(q.no)
	if st == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no upload %d in progress (never opened, taken by its commit, or given up)", q.no))
		return
	}
	s.longPoll(r, q.wait, func(final bool) <-chan struct{} {
		blocks, runs, done, changed := s.streams.uploadBlocks(st, q.from, q.limit, q.base)
		if len(blocks) == 0 && len(runs) == 0 && !done && !final {
			return changed
		}
		resp := proto.UploadBlocksResponse{From: q.from, Blocks: blocks, Runs: runs, Done: done}
		if blocks == nil {
			resp.Base = q.base
		}
		writeJSONFor(w, r, http.StatusOK, resp)
		return nil
	})
}

// longPoll calls look until it answers (returns nil), waiting between two calls for
// the channel it returned, wait at most in all: once the wait is over, or the server
// stops, look is called with final set, and must answer. It gives up when the client
// goes away.
func (s *Server) longPoll(r *http.Request, wait time.Duration, look func(final bool) <-chan struct{}) {
	var deadline <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for final := wait <= 0; ; {
		wake := look(final)
		if wake == nil {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			final = true // one last look, then answer
		case <-s.stop:
			final = true
		case <-r.Context().Done():
			return
		}
	}
}
