package syncserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/internal/entropy"
	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// Headers of GET /v1/file answers.
const (
	HeaderSeq    = "X-Sync-Seq"
	HeaderSHA256 = "X-Sync-Sha256"
)

func (s *Server) routes() {
	open := func(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }
	auth := func(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, s.authed(h)) }

	open("GET "+proto.RouteHealthz, s.handleHealthz)
	open("GET "+proto.RouteReadyz, s.handleReadyz)
	open("GET "+proto.RouteMetrics, s.handleMetrics())

	auth("GET "+proto.RouteChanges, s.handleChanges)
	auth("POST "+proto.RouteBlocksMissing, s.handleMissing)
	auth("POST "+proto.RouteBlocksGet, s.handleGetBlocks)
	auth("PUT "+proto.RouteBlocks+"{hash}", s.handlePutBlock)
	auth("GET "+proto.RouteBlocks+"{hash}", s.handleGetBlock)
	auth("GET "+proto.RouteBlocks+"{hash}"+proto.SumsSuffix, s.handleBlockSums)
	auth("POST "+proto.RouteStreams+"{id}"+proto.StreamBlocksSuffix, s.handleStreamBlocks)
	auth("POST "+proto.RouteStreams+"{id}"+proto.StreamSumSuffix, s.handleStreamSum)
	auth("POST "+proto.RouteStreams+"{id}"+proto.StreamOpenSuffix, s.handleStreamOpen)
	auth("GET "+proto.RouteUploads, s.handleUploads)
	auth("GET "+proto.RouteUploadBlocks+"{no}", s.handleUploadBlocks)
	auth("POST "+proto.RouteCommit, s.handleCommit)
	auth("POST "+proto.RouteDelete, s.handleDelete)
	auth("GET "+proto.RouteEntry, s.handleEntry)
	auth("GET "+proto.RouteFile, s.handleFile)
	auth("GET "+proto.RouteVersions, s.handleVersions)
	auth("POST "+proto.RouteRestore, s.handleRestore)
	auth("GET "+proto.RouteConflicts, s.handleConflicts)
	auth("GET "+proto.RouteAudit, s.handleAudit)
	auth("GET "+proto.RouteStats, s.handleStats)

	auth("GET "+proto.RouteLegacyIndex, s.handleLegacyIndex)
	auth("GET "+proto.RouteLegacyDownload, s.handleLegacyDownload)
	auth("POST "+proto.RouteLegacyUpload, s.handleLegacyUpload)
	auth("POST "+proto.RouteLegacyDelete, s.handleLegacyDelete)
	auth("GET "+proto.RouteLegacyLogs, s.handleLegacyLogs)

	// Unknown routes answer JSON too, not the mux's plain text (404 or 405, server.go).
	open("/", s.handleNoRoute)
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ping(r.Context()); err != nil {
		s.log.Warn("readyz", "err", err)
		writeError(w, http.StatusServiceUnavailable, "store not ready: "+err.Error())
		return
	}
	select {
	case <-s.stop:
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	default:
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// badRequest answers a decoder error: 413 for an oversized body, 400 otherwise.
func badRequest(w http.ResponseWriter, err error) {
	if errors.Is(err, errBodyTooLarge) || isTooLarge(err) {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request) {
	q, err := parseChanges(r.URL.Query(), s.cfg.MaxWait)
	if err != nil {
		badRequest(w, err)
		return
	}
	var deadline <-chan time.Time
	if q.wait > 0 {
		t := time.NewTimer(q.wait)
		defer t.Stop()
		deadline = t.C
	}
	waiting := false
	defer func() {
		if waiting {
			s.metrics.waits.Dec()
			s.waits.Add(-1)
		}
	}()
	for {
		woken := s.notify.wait() // before the read, so no commit slips between
		entries, err := s.store.Changes(r.Context(), q.since, q.limit)
		if err != nil {
			s.storeFailed(w, r, "read changes", err)
			return
		}
		if len(entries) > 0 || deadline == nil {
			for i := range entries {
				entries[i] = proto.OmitBlocks(entries[i], q.maxBlocks)
			}
			s.answerChanges(w, r, q, entries)
			return
		}
		if !waiting {
			waiting = true
			s.metrics.waits.Inc()
			s.waits.Add(1)
		}
		select {
		case <-woken:
		case <-deadline:
			deadline = nil // one last read, then answer
		case <-s.stop:
			s.answerChanges(w, r, q, nil)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) answerChanges(w http.ResponseWriter, r *http.Request, q changesQuery, entries []proto.Entry) {
	resp := proto.ChangesResponse{FolderID: s.store.FolderID(), Entries: entries, LastSeq: q.since}
	if resp.Entries == nil {
		resp.Entries = []proto.Entry{}
	}
	if n := len(entries); n > 0 {
		resp.LastSeq = entries[n-1].Seq
		resp.More = n == q.limit
	}
	writeJSONFor(w, r, http.StatusOK, resp)
}

// hashesRequest reads a request body that names blocks ({"hashes": [...]}: the
// missing-blocks query and the batched block GET); on bad input it has answered and
// reports false.
func (s *Server) hashesRequest(w http.ResponseWriter, r *http.Request) (proto.MissingBlocksRequest, bool) {
	body, done, ok := jsonBody(w, r, s.cfg.MaxJSONBody)
	if !ok {
		return proto.MissingBlocksRequest{}, false
	}
	req, err := decodeMissing(body, s.cfg.MaxBatchItems)
	done()
	if err != nil {
		badRequest(w, err)
		return req, false
	}
	return req, true
}

func (s *Server) handleMissing(w http.ResponseWriter, r *http.Request) {
	req, ok := s.hashesRequest(w, r)
	if !ok {
		return
	}
	missing, err := s.blocks.Missing(req.Hashes)
	if err != nil {
		s.storeFailed(w, r, "look up blocks", err)
		return
	}
	if missing == nil {
		missing = []string{}
	}
	s.metrics.dedupHits.Add(float64(len(req.Hashes) - len(missing)))
	writeJSON(w, http.StatusOK, proto.MissingBlocksResponse{Missing: missing})
}

// PutBlockResponse answers PUT /v1/blocks/{hash}: 201 when the block is new, 200 when
// the server already had it.
type PutBlockResponse struct {
	Hash    string `json:"hash"`
	Size    int64  `json:"size"`
	Created bool   `json:"created"`
}

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		panic(err) // only bad options fail
	}
	return d
}}

func (s *Server) handlePutBlock(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	if !blobs.ValidHash(hash) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("block hash %q is not a lowercase hex SHA-256", truncateForError(hash)))
		return
	}
	// An upload stream (see hashstream.go): the block's offset in the file it is part of.
	var stream string
	var streamOff int64
	if q := r.URL.Query(); q.Has("stream") {
		stream = q.Get("stream")
		off, err := strconv.ParseInt(q.Get("off"), 10, 64)
		if !validStreamID(stream) || err != nil || off < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("stream %q with off %q: want a name of at most %d letters, digits, - or _ and an offset ≥ 0",
				truncateForError(stream), truncateForError(q.Get("off")), maxStreamID))
			return
		}
		streamOff = off
	}
	if r.ContentLength > s.cfg.MaxBlockSize+1024 {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("block over the limit of %d bytes", s.cfg.MaxBlockSize))
		return
	}
	// A compressed body of incompressible data can be a little larger than the block.
	raw := &watchReader{r: http.MaxBytesReader(w, r.Body, s.cfg.MaxBlockSize+s.cfg.MaxBlockSize/64+1024)}
	var body io.Reader = raw
	var decoded *watchReader
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "zstd":
		d := zstdDecoders.Get().(*zstd.Decoder)
		if err := d.Reset(raw); err != nil {
			zstdDecoders.Put(d)
			writeError(w, http.StatusBadRequest, "bad zstd stream: "+err.Error())
			return
		}
		defer func() { _ = d.Reset(nil); zstdDecoders.Put(d) }()
		decoded = &watchReader{r: d}
		body = decoded
	default:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content encoding %q not supported (use zstd or none)", truncateForError(enc)))
		return
	}
	body, ok := s.patchedBody(w, r, body)
	if !ok {
		return
	}
	// A stream's block is kept as it is read, so that the stream hashes it without
	// reading it back from the store (hashstream.go).
	var held *[]byte
	if stream != "" {
		if held = s.streams.hold(); held != nil {
			body = io.TeeReader(body, heldWriter{held})
		}
	}
	n, created, err := s.blocks.Put(hash, body, s.cfg.MaxBlockSize)
	if err != nil {
		s.streams.release(held)
		held = nil
	}
	switch {
	case err == nil:
	case errors.Is(err, blobs.ErrHashMismatch):
		writeError(w, http.StatusBadRequest, "block content does not match its hash "+hash)
		return
	case errors.Is(err, blobs.ErrTooLarge), isTooLarge(raw.err):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("block over the limit of %d bytes", s.cfg.MaxBlockSize))
		return
	case errors.Is(err, blobs.ErrInvalidHash):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case raw.err != nil:
		// The client's body broke off; nobody may be listening, but say so.
		writeError(w, http.StatusBadRequest, "read request body: "+raw.err.Error())
		return
	case decoded != nil && decoded.err != nil:
		writeError(w, http.StatusBadRequest, "bad zstd stream: "+decoded.err.Error())
		return
	default:
		s.storeFailed(w, r, "store block", err)
		return
	}
	if stream != "" {
		s.streams.add(streamKey{agentFrom(r.Context()), stream}, streamOff, proto.Block{Hash: hash, Size: n}, held)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.metrics.blocksStored.Inc()
	} else {
		s.metrics.dedupHits.Inc()
	}
	writeJSON(w, status, PutBlockResponse{Hash: hash, Size: n, Created: created})
}

// watchReader remembers the first error of the reader it wraps, so that a failed Put can
// be blamed on the request body (4xx) or on the server's disk (5xx).
type watchReader struct {
	r   io.Reader
	err error
}

func (w *watchReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && err != io.EOF && w.err == nil {
		w.err = err
	}
	return n, err
}

func acceptsZstd(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "zstd") {
			return !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") ||
				strings.Contains(params, "q=0.")
		}
	}
	return false
}

func (s *Server) handleGetBlock(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	if !blobs.ValidHash(hash) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("block hash %q is not a lowercase hex SHA-256", truncateForError(hash)))
		return
	}
	f, size, err := s.blocks.Open(hash)
	if errors.Is(err, blobs.ErrNotFound) {
		writeError(w, http.StatusNotFound, "block "+hash+" not found")
		return
	}
	if err != nil {
		s.storeFailed(w, r, "open block", err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("ETag", `"`+hash+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set("Content-Type", "application/octet-stream")
	h.Add("Vary", "Accept-Encoding")
	if acceptsZstd(r) && r.Header.Get("Range") == "" && size > 512 {
		if base := r.URL.Query().Get("base"); base != "" {
			if !blobs.ValidHash(base) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("base %q is not a lowercase hex SHA-256", truncateForError(base)))
				return
			}
			if s.sendBlockDelta(w, r, f, size, base) {
				return
			}
		}
		if !compressibleBlock(f, size) {
			// Random-looking bytes (media, archives, encrypted data) would cost zstd
			// CPU on both ends for nothing: they go as they are.
			h.Set("Content-Length", strconv.FormatInt(size, 10))
			http.ServeContent(w, r, "", time.Time{}, f)
			return
		}
		h.Set("Content-Encoding", "zstd")
		enc := zstdEncoders.Get()
		enc.Reset(w)
		defer zstdEncoders.Put(enc)
		w.WriteHeader(http.StatusOK)
		if _, err := io.Copy(enc, f); err != nil {
			s.log.Info("send block", "requestId", infoFrom(r.Context()).id, "err", err)
		}
		_ = enc.Close()
		return
	}
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	http.ServeContent(w, r, "", time.Time{}, f)
}

// compressibleBlock samples up to 16 KiB from the middle of a block and says whether
// zstd is worth trying on it: an order-0 entropy of 7.2 bits per byte or more is data
// that is compressed or encrypted already. f is left at its start.
func compressibleBlock(f io.ReadSeeker, size int64) bool {
	var sample [16 << 10]byte
	n := 0
	if _, err := f.Seek(max(0, size/2-int64(len(sample))/2), io.SeekStart); err == nil {
		n, _ = io.ReadFull(f, sample[:])
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false
	}
	return entropy.Compressible(sample[:n])
}

// zstdEncoders compress block downloads and large JSON answers.
var zstdEncoders = encoderList(make(chan *zstd.Encoder, 4))

// encoderList keeps a few zstd encoders between uses. An encoder is costly to make: its
// history buffer, allocated at its first use, holds a window and more. A sync.Pool
// drops what it holds at every garbage collection, and a server answering many
// requests then made a new encoder, and its buffer, for most answers (96 MB of a
// benchmark's 1.2 GB of allocations, and the collections they bring).
type encoderList chan *zstd.Encoder

// Get returns a kept encoder, or a new one.
func (l encoderList) Get() *zstd.Encoder {
	select {
	case e := <-l:
		return e
	default:
	}
	// A 1 MiB window covers a whole block (the chunker's largest) and keeps the
	// history small; WithLowerEncoderMem sizes it to the window, not twice the window.
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // only bad options fail
	}
	return e
}

// Put keeps e for a later Get when the list has room.
func (l encoderList) Put(e *zstd.Encoder) {
	select {
	case l <- e:
	default:
	}
}

func (s *Server) handleCommit(w http.ResponseWriter, r *http.Request) {
	body, done, ok := jsonBody(w, r, s.cfg.MaxCommitBody)
	if !ok {
		return
	}
	var req proto.CommitRequest
	var err error
	if mediaType(r) == proto.ContentTypeCommit {
		// The items' content stays in the arena until the commit is answered: the
		// blocks are written to the store (copied) before then.
		arena := &frameArena{}
		defer arena.release()
		req, err = decodeCommitFrames(body, s.cfg.MaxBatchItems, s.cfg.MaxCommitBody, arena)
	} else {
		req, err = decodeCommit(body, s.cfg.MaxBatchItems)
	}
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	results := make([]proto.ItemResult, len(req.Items)+len(req.Deletes))
	items := make([]pending, 0, len(results))
	for i, it := range req.Items {
		results[i].Path = it.Path
		e, err := validateItem(it, s.cfg)
		if err != nil {
			results[i].Status, results[i].Error = proto.StatusError, err.Error()
			continue
		}
		trusted := false
		if it.Type == proto.TypeFile && (it.CopyFrom != nil || it.BlocksDelta != nil) {
			trusted, err = s.resolveRef(r.Context(), it, &e)
			if msg, ok := itemMessage(err); ok {
				results[i].Status, results[i].Error = proto.StatusError, msg
				continue
			}
			if err != nil {
				s.storeFailed(w, r, "read referenced version", err)
				return
			}
		}
		if it.Stream != "" && !validStreamID(it.Stream) {
			results[i].Status = proto.StatusError
			results[i].Error = fmt.Sprintf("stream %q: want at most %d letters, digits, - or _", truncateForError(it.Stream), maxStreamID)
			continue
		}
		items = append(items, pending{idx: i, inline: it.Data, trusted: trusted, stream: it.Stream,
			change: store.Change{Entry: e, BaseSeq: it.BaseSeq, Action: actionFor(e.Type)}})
	}
	var written map[string]bool // the items' paths, which the deletes may not name
	if len(req.Deletes) > 0 {
		written = make(map[string]bool, len(req.Items))
		for _, it := range req.Items {
			written[it.Path] = true
		}
	}
	for k, it := range req.Deletes {
		if written[it.Path] {
			i := len(req.Items) + k
			results[i].Path, results[i].Status, results[i].Error = it.Path, proto.StatusError, "the commit also writes this path"
			continue
		}
		p, ok, err := s.pendingDelete(r.Context(), it, len(req.Items)+k, results)
		if err != nil {
			s.storeFailed(w, r, "read entry", err)
			return
		}
		if ok {
			items = append(items, p)
		}
	}
	if err := s.commit(r.Context(), agentFrom(r.Context()), items, results); err != nil {
		s.storeFailed(w, r, "commit", err)
		return
	}
	resp := proto.CommitResponse{Results: results}
	if req.CompactResults {
		compactResults(req.Items, &resp)
	}
	if req.OmitBlocks {
		for i := range results {
			if e := results[i].Entry; e != nil {
				o := proto.OmitBlocks(*e, 0)
				results[i].Entry = &o
			}
		}
	}
	writeJSONFor(w, r, http.StatusOK, resp)
}

// compactResults answers each ok item whose new entry is the item's as sent
// (proto.CommitItem.Entry) with its seq alone, by and at the answer's agent and time
// (those of the first ok entry). Encoding the entries the client sent, and the client's
// decoding of them, was a tenth of a writer's CPU and of the server's in a first sync of
// small files. Whatever the item does not say (content copied from another version) or
// the server changed keeps its entry.
func compactResults(items []proto.CommitItem, resp *proto.CommitResponse) {
	for i := range items {
		r := &resp.Results[i]
		if r.Status != proto.StatusOK || r.Entry == nil {
			continue
		}
		if resp.ModifiedAt.IsZero() {
			resp.ModifiedBy, resp.ModifiedAt = r.Entry.ModifiedBy, r.Entry.ModifiedAt
		}
		if r.Entry.Seq > 0 && proto.SameEntry(items[i].Entry(r.Entry.Seq, resp.ModifiedBy, resp.ModifiedAt), *r.Entry) {
			r.Seq, r.Entry = r.Entry.Seq, nil
		}
	}
}

func actionFor(t proto.EntryType) string {
	switch t {
	case proto.TypeDir:
		return proto.ActionMkdir
	case proto.TypeSymlink:
		return proto.ActionSymlink
	default:
		return proto.ActionUpload
	}
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	body, done, ok := jsonBody(w, r, s.cfg.MaxJSONBody)
	if !ok {
		return
	}
	req, err := decodeDelete(body, s.cfg.MaxBatchItems)
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	results := make([]proto.ItemResult, len(req.Items))
	items := make([]pending, 0, len(req.Items))
	for i, it := range req.Items {
		p, ok, err := s.pendingDelete(r.Context(), it, i, results)
		if err != nil {
			s.storeFailed(w, r, "read entry", err)
			return
		}
		if ok {
			items = append(items, p)
		}
	}
	if err := s.commit(r.Context(), agentFrom(r.Context()), items, results); err != nil {
		s.storeFailed(w, r, "delete", err)
		return
	}
	writeJSON(w, http.StatusOK, proto.CommitResponse{Results: results})
}

// pathError returns why p is not a path an item may name, or "": a bad path is the
// item's result, not the request's error.
func pathError(p string) string {
	if _, err := proto.CleanPath(p); err != nil {
		return err.Error()
	}
	return ""
}

// pendingDelete checks the delete it, whose result is results[i], and returns the change
// to apply; ok is false when the result is already decided (an error, a conflict, or a
// delete retried at the seq it deleted). err is a store failure.
func (s *Server) pendingDelete(ctx context.Context, it proto.DeleteItem, i int, results []proto.ItemResult) (p pending, ok bool, err error) {
	results[i].Path = it.Path
	if msg := pathError(it.Path); msg != "" {
		results[i].Status, results[i].Error = proto.StatusError, msg
		return p, false, nil
	}
	if it.BaseSeq <= 0 {
		results[i].Status, results[i].Error = proto.StatusError, "baseSeq must be the seq of the live entry to delete"
		return p, false, nil
	}
	cur, err := s.store.Get(ctx, it.Path)
	switch {
	case errors.Is(err, store.ErrNotFound):
		results[i].Status, results[i].Error = proto.StatusError, "no entry at this path"
		return p, false, nil
	case err != nil:
		return p, false, err
	case cur.Deleted && cur.Seq == it.BaseSeq:
		// Already deleted at the seq the client knows: a retried delete succeeds.
		results[i].Status, results[i].Entry = proto.StatusOK, &cur
		return p, false, nil
	case cur.Seq != it.BaseSeq:
		s.metrics.conflicts.Inc()
		results[i].Status, results[i].Error, results[i].Entry = proto.StatusConflict, "the entry has moved on from baseSeq", &cur
		return p, false, nil
	}
	return pending{idx: i, change: store.Change{
		Entry:   proto.Entry{Path: it.Path, Type: cur.Type, Mode: cur.Mode, MTimeNs: time.Now().UnixNano(), Deleted: true},
		BaseSeq: it.BaseSeq, Action: proto.ActionDelete}}, true, nil
}

func (s *Server) handleEntry(w http.ResponseWriter, r *http.Request) {
	p, seq, baseSeq, err := parseEntryQuery(r.URL.Query())
	if err != nil {
		badRequest(w, err)
		return
	}
	var e proto.Entry
	if seq > 0 {
		e, err = s.store.Version(r.Context(), p, seq)
	} else {
		e, err = s.store.Get(r.Context(), p)
	}
	if errors.Is(err, store.ErrNotFound) {
		if seq > 0 {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no retained version %d of %s", seq, p))
			return
		}
		writeError(w, http.StatusNotFound, "no entry at "+p)
		return
	}
	if err != nil {
		s.storeFailed(w, r, "read entry", err)
		return
	}
	if baseSeq > 0 && e.Type == proto.TypeFile && !e.Deleted && len(e.Blocks) > 0 {
		base, err := s.retainedFile(r.Context(), p, baseSeq)
		if _, refused := itemMessage(err); err != nil && !refused {
			s.storeFailed(w, r, "read base version", err)
			return
		}
		if err == nil { // else the base is gone: answer the whole list
			d := proto.DiffBlocks(baseSeq, base.Blocks, e.Blocks)
			e.Blocks, e.BlocksDelta = nil, &d
		}
	}
	writeJSONFor(w, r, http.StatusOK, e)
}

func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	p, seq, err := parsePathSeq(r.URL.Query())
	if err != nil {
		badRequest(w, err)
		return
	}
	var e proto.Entry
	if seq > 0 {
		e, err = s.store.Version(r.Context(), p, seq)
	} else {
		e, err = s.store.Get(r.Context(), p)
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such file or version: "+p)
		return
	}
	if err != nil {
		s.storeFailed(w, r, "read entry", err)
		return
	}
	if e.Deleted {
		writeErrorEntry(w, http.StatusNotFound, p+" is deleted", &e)
		return
	}
	if e.Type != proto.TypeFile {
		writeErrorEntry(w, http.StatusBadRequest, fmt.Sprintf("%s is a %s, not a file", p, e.Type), &e)
		return
	}
	s.sendFile(w, r, e)
}

// sendFile streams a file version's blocks. A block that turns out missing or short
// mid-stream cuts the connection: the client sees a short body, never wrong bytes
// presented as complete.
func (s *Server) sendFile(w http.ResponseWriter, r *http.Request, e proto.Entry) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(e.Size, 10))
	h.Set("ETag", `"`+e.SHA256+`"`)
	h.Set(HeaderSeq, strconv.FormatInt(e.Seq, 10))
	h.Set(HeaderSHA256, e.SHA256)
	br := &blockReader{ctx: r.Context(), blocks: s.blocks, list: e.Blocks}
	defer br.Close()
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, br); err != nil {
		s.log.Error("send file", "requestId", infoFrom(r.Context()).id, "path", e.Path, "seq", e.Seq, "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) {
	p, err := proto.CleanPath(r.URL.Query().Get("path"))
	if err != nil {
		badRequest(w, err)
		return
	}
	vs, err := s.store.Versions(r.Context(), p)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no versions of "+p)
		return
	}
	if err != nil {
		s.storeFailed(w, r, "read versions", err)
		return
	}
	writeJSONFor(w, r, http.StatusOK, proto.VersionsResponse{Path: p, Versions: vs})
}

func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) {
	body, done, ok := jsonBody(w, r, s.cfg.MaxJSONBody)
	if !ok {
		return
	}
	req, err := decodeRestore(body)
	done()
	if err != nil {
		badRequest(w, err)
		return
	}
	v, err := s.store.Version(r.Context(), req.Path, req.Seq)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no retained version %d of %s", req.Seq, req.Path))
		return
	}
	if err != nil {
		s.storeFailed(w, r, "read version", err)
		return
	}
	if v.Deleted {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("version %d of %s is a deletion; delete the path instead", req.Seq, req.Path))
		return
	}
	e := v
	e.Seq, e.Deleted, e.ModifiedBy, e.ModifiedAt = 0, false, "", time.Time{}
	results := []proto.ItemResult{{Path: req.Path}}
	items := []pending{{idx: 0, change: store.Change{Entry: e, BaseSeq: req.BaseSeq, Action: proto.ActionRestore}}}
	if err := s.commit(r.Context(), agentFrom(r.Context()), items, results); err != nil {
		s.storeFailed(w, r, "restore", err)
		return
	}
	writeJSON(w, http.StatusOK, proto.CommitResponse{Results: results})
}

func (s *Server) handleConflicts(w http.ResponseWriter, r *http.Request) {
	out := []proto.Entry{}
	err := s.store.Live(r.Context(), func(e proto.Entry) error {
		if proto.IsConflictPath(e.Path) {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		s.storeFailed(w, r, "list conflicts", err)
		return
	}
	writeJSON(w, http.StatusOK, proto.ConflictsResponse{Conflicts: out})
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	q, err := parseAudit(r.URL.Query())
	if err != nil {
		badRequest(w, err)
		return
	}
	recs, err := s.store.Audit(r.Context(), q)
	if err != nil {
		s.storeFailed(w, r, "read audit log", err)
		return
	}
	if recs == nil {
		recs = []proto.AuditRecord{}
	}
	writeJSON(w, http.StatusOK, proto.AuditResponse{Records: recs})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.Stats(r.Context())
	if err != nil {
		s.storeFailed(w, r, "read stats", err)
		return
	}
	blocks, bytes, err := s.blocks.Stats()
	if err != nil {
		s.storeFailed(w, r, "read block stats", err)
		return
	}
	writeJSON(w, http.StatusOK, proto.Stats{
		FolderID: s.store.FolderID(), Files: st.Files, Dirs: st.Dirs, Symlinks: st.Symlinks, Bytes: st.Bytes,
		Blocks: blocks, BlockBytes: bytes, Seq: st.Seq, Conflicts: st.Conflicts,
		AgentsConnected: s.waiting(), LastChange: st.LastChange,
	})
}

// mediaType is the request's Content-Type without parameters, in lower case.
func mediaType(r *http.Request) string {
	t, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.ToLower(strings.TrimSpace(t))
}
