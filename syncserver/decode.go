package syncserver

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	fastjson "github.com/segmentio/encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// The request decoders below are pure functions of the request body or query, so that
// fuzz targets can drive them directly. Each returns an error whose text is fit for the
// client.

// maxSymlinkTarget bounds a symlink's target, like PATH_MAX.
const maxSymlinkTarget = 4096

// decodeJSON reads exactly one JSON value from r into v.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	if err := dec.Decode(v); err != nil {
		if isTooLarge(err) {
			return errBodyTooLarge
		}
		if errors.Is(err, io.EOF) {
			return errors.New("malformed JSON: empty body")
		}
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if isTooLarge(err) {
			return errBodyTooLarge
		}
		return errors.New("malformed JSON: data after the value")
	}
	return nil
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// errBodyTooLarge is answered with 413.
var errBodyTooLarge = errors.New("request body too large")

func decodeMissing(r io.Reader, maxItems int) (proto.MissingBlocksRequest, error) {
	var req proto.MissingBlocksRequest
	// "hashes": null is an empty list (a Go client's nil slice); no "hashes" at all means
	// the body is not a missing-blocks request.
	var raw struct {
		Hashes json.RawMessage `json:"hashes"`
	}
	if err := decodeJSON(r, &raw); err != nil {
		return req, err
	}
	if raw.Hashes == nil {
		return req, errors.New(`malformed JSON: missing field "hashes"`)
	}
	if err := fastjson.Unmarshal(raw.Hashes, &req.Hashes); err != nil {
		return req, fmt.Errorf("malformed JSON: hashes: %w", err)
	}
	if len(req.Hashes) > maxItems {
		return req, fmt.Errorf("%d hashes; at most %d per request", len(req.Hashes), maxItems)
	}
	for i, h := range req.Hashes {
		if !blobs.ValidHash(h) {
			return req, fmt.Errorf("hashes[%d]: %q is not a lowercase hex SHA-256", i, truncateForError(h))
		}
	}
	return req, nil
}

// decodeStreamBlocks reads a StreamBlocksRequest and checks its fields.
func decodeStreamBlocks(r io.Reader) (proto.StreamBlocksRequest, error) {
	var req proto.StreamBlocksRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, err
	}
	if _, err := proto.CleanPath(req.Base.Path); err != nil {
		return req, fmt.Errorf("base.path: %w", err)
	}
	switch {
	case req.Off < 0:
		return req, fmt.Errorf("off %d: want ≥ 0", req.Off)
	case req.Base.Seq < 1:
		return req, fmt.Errorf("base.seq %d: want ≥ 1", req.Base.Seq)
	case req.From < 0:
		return req, fmt.Errorf("from %d: want ≥ 0", req.From)
	case req.Count < 1 || req.Count > maxStreamPending:
		return req, fmt.Errorf("count %d: want 1 to %d", req.Count, maxStreamPending)
	}
	return req, nil
}

// decodeStreamOpen reads a StreamOpenRequest and checks its fields; maxSize is the
// server's largest file.
func decodeStreamOpen(r io.Reader, maxSize int64) (proto.StreamOpenRequest, error) {
	var req proto.StreamOpenRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, err
	}
	if _, err := proto.CleanPath(req.Path); err != nil {
		return req, fmt.Errorf("path: %w", err)
	}
	switch {
	case req.Size < 0:
		return req, fmt.Errorf("size %d: want ≥ 0", req.Size)
	case req.Size > maxSize:
		return req, fmt.Errorf("size %d is over the server's limit of %d bytes", req.Size, maxSize)
	}
	return req, nil
}

func decodeStreamSum(r io.Reader) (proto.StreamSumRequest, proto.ListKey, error) {
	var req proto.StreamSumRequest
	var key proto.ListKey
	if err := decodeJSON(r, &req); err != nil {
		return req, key, err
	}
	switch {
	case req.Size < 1:
		return req, key, fmt.Errorf("size %d: want ≥ 1", req.Size)
	case req.Blocks < 1 || int64(req.Blocks) > req.Size:
		return req, key, fmt.Errorf("blocks %d: want 1 to size (%d)", req.Blocks, req.Size)
	}
	sum, ok := proto.DecodeHash(req.List)
	if !ok {
		return req, key, fmt.Errorf("list %q: want 64 lowercase hex digits", truncateForError(req.List))
	}
	return req, sum, nil
}

func decodeCommit(r io.Reader, maxItems int) (proto.CommitRequest, error) {
	req, err := decodeBatch(r, maxItems, func(q proto.CommitRequest) int { return len(q.Items) })
	if err == nil {
		err = checkCommitDeletes(len(req.Items), len(req.Deletes), maxItems)
	}
	return req, err
}

// checkCommitDeletes checks that a commit's items and deletes together are at most
// maxItems.
func checkCommitDeletes(items, deletes, maxItems int) error {
	if items+deletes > maxItems {
		return fmt.Errorf("%d items and %d deletes; at most %d per batch", items, deletes, maxItems)
	}
	return nil
}

// decodeCommitFrames decodes a commit sent as frames (proto.ContentTypeCommit): the same
// request as decodeCommit's, with each item's inlined content in a frame of its own.
func decodeCommitFrames(r io.Reader, maxItems int, maxBody int64, arena *frameArena) (proto.CommitRequest, error) {
	var req proto.CommitRequest
	br := bufio.NewReaderSize(r, 64<<10)
	frame := func(what string, i int) ([]byte, error) {
		b, err := proto.ReadFrameWith(br, maxBody, arena.alloc)
		switch {
		case isTooLarge(err) || errors.Is(err, proto.ErrFrameTooLarge):
			return nil, errBodyTooLarge
		case errors.Is(err, io.EOF) && i == 0 && what == "header":
			return nil, errors.New("malformed commit frames: empty body")
		case err != nil && i >= 0:
			return nil, fmt.Errorf("malformed commit frames: items[%d]: %s: %w", i, what, err)
		case err != nil:
			return nil, fmt.Errorf("malformed commit frames: %s: %w", what, err)
		}
		return b, nil
	}
	raw, err := frame("header", -1)
	if err != nil {
		return req, err
	}
	var h proto.CommitFramesHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return req, fmt.Errorf("malformed JSON: commit frames header: %w", err)
	}
	switch {
	case h.Items <= 0:
		return req, errors.New("no items")
	case h.Items > maxItems:
		return req, fmt.Errorf("%d items; at most %d per batch", h.Items, maxItems)
	}
	if err := checkCommitDeletes(h.Items, len(h.Deletes), maxItems); err != nil {
		return req, err
	}
	req.OmitBlocks, req.CompactResults, req.Deletes = h.OmitBlocks, h.CompactResults, h.Deletes
	req.Items = make([]proto.CommitItem, h.Items)
	for i := range req.Items {
		if raw, err = frame("item", i); err != nil {
			return req, err
		}
		it := &req.Items[i]
		if err := fastjson.Unmarshal(raw, it); err != nil {
			return req, fmt.Errorf("malformed JSON: items[%d]: %w", i, err)
		}
		if it.Data != nil {
			return req, fmt.Errorf(`items[%d]: inlined content goes in the frame after the item, not in "data"`, i)
		}
		data, err := frame("content", i)
		if err != nil {
			return req, err
		}
		if len(data) > 0 {
			it.Data = data
		}
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if isTooLarge(err) {
			return req, errBodyTooLarge
		}
		return req, errors.New("malformed commit frames: data after the last item")
	}
	return req, nil
}

func decodeDelete(r io.Reader, maxItems int) (proto.DeleteRequest, error) {
	return decodeBatch(r, maxItems, func(q proto.DeleteRequest) int { return len(q.Items) })
}

// decodeBatch decodes a batch request and checks that it holds 1 to maxItems items.
func decodeBatch[T any](r io.Reader, maxItems int, count func(T) int) (T, error) {
	var req T
	if err := decodeJSON(r, &req); err != nil {
		return req, err
	}
	switch n := count(req); {
	case n == 0:
		return req, errors.New("no items")
	case n > maxItems:
		return req, fmt.Errorf("%d items; at most %d per batch", n, maxItems)
	}
	return req, nil
}

func decodeRestore(r io.Reader) (proto.RestoreRequest, error) {
	var req proto.RestoreRequest
	if err := decodeJSON(r, &req); err != nil {
		return req, err
	}
	if _, err := proto.CleanPath(req.Path); err != nil {
		return req, err
	}
	if req.Seq <= 0 {
		return req, errors.New("seq must be a positive version number")
	}
	if req.BaseSeq < 0 {
		return req, errors.New("baseSeq must not be negative")
	}
	return req, nil
}

// legacyDeleteRequest is the body of the original API's POST /delete.
type legacyDeleteRequest struct {
	Path string `json:"path"`
}

func decodeLegacyDelete(r io.Reader) (string, error) {
	var req legacyDeleteRequest
	if err := decodeJSON(r, &req); err != nil {
		return "", err
	}
	return proto.CleanPath(req.Path)
}

// validateItem checks one commit item on its own and returns the entry it would commit.
// A file item with inlined Data and no Blocks gets one block covering the whole content.
func validateItem(it proto.CommitItem, cfg Config) (proto.Entry, error) {
	e := proto.Entry{Path: it.Path, Type: it.Type, Size: it.Size, Mode: it.Mode, MTimeNs: it.MTimeNs,
		SHA256: it.SHA256, Blocks: it.Blocks, Target: it.Target}
	if _, err := proto.CleanPath(it.Path); err != nil {
		return e, err
	}
	if it.BaseSeq < 0 {
		return e, errors.New("baseSeq must not be negative")
	}
	if it.Mode > 0o7777 {
		return e, fmt.Errorf("mode %#o has bits beyond 0o7777", it.Mode)
	}
	switch it.Type {
	case proto.TypeFile:
		return validateFile(it, e, cfg)
	case proto.TypeDir, proto.TypeSymlink:
		if it.Size != 0 || it.SHA256 != "" || len(it.Blocks) != 0 || it.Data != nil || it.CopyFrom != nil || it.BlocksDelta != nil {
			return e, fmt.Errorf("a %s has no size, sha256, blocks, data, copyFrom or blocksDelta", it.Type)
		}
		if it.Type == proto.TypeDir {
			if it.Target != "" {
				return e, errors.New("a dir has no target")
			}
			return e, nil
		}
		switch {
		case it.Target == "":
			return e, errors.New("a symlink needs a target")
		case len(it.Target) > maxSymlinkTarget:
			return e, fmt.Errorf("symlink target longer than %d bytes", maxSymlinkTarget)
		case strings.ContainsRune(it.Target, 0):
			return e, errors.New("symlink target contains NUL")
		}
		return e, nil
	default:
		return e, fmt.Errorf("type %q is not file, dir or symlink", truncateForError(string(it.Type)))
	}
}

func validateFile(it proto.CommitItem, e proto.Entry, cfg Config) (proto.Entry, error) {
	switch {
	case it.Target != "":
		return e, errors.New("a file has no target")
	case it.Size < 0:
		return e, errors.New("size must not be negative")
	case it.Size > cfg.MaxFileSize:
		return e, fmt.Errorf("size %d is over the server's limit of %d bytes", it.Size, cfg.MaxFileSize)
	case !blobs.ValidHash(it.SHA256):
		return e, fmt.Errorf("sha256 %q is not a lowercase hex SHA-256", truncateForError(it.SHA256))
	}
	if it.CopyFrom != nil || it.BlocksDelta != nil {
		return e, validateRef(it, cfg)
	}
	if it.Data != nil {
		if int64(len(it.Data)) != it.Size {
			return e, fmt.Errorf("inlined data has %d bytes, size says %d", len(it.Data), it.Size)
		}
		if it.Size > cfg.MaxInlineSize {
			return e, fmt.Errorf("inlined data of %d bytes is over the limit of %d; upload blocks instead", it.Size, cfg.MaxInlineSize)
		}
		if len(it.Blocks) == 0 && it.Size > 0 {
			e.Blocks = []proto.Block{{Hash: it.SHA256, Size: it.Size}}
		}
	}
	return e, checkBlockList(e.Blocks, it.Size, it.SHA256, "blocks", cfg)
}

// checkBlockList checks a file's block list against its size (and the hash of an empty
// file); what names the list in errors.
func checkBlockList(blocks []proto.Block, size int64, sha, what string, cfg Config) error {
	var sum int64
	for i, b := range blocks {
		if err := checkBlock(b, cfg); err != nil {
			return fmt.Errorf("%s[%d]: %w", what, i, err)
		}
		sum += b.Size
		if sum > size {
			break
		}
	}
	if sum != size {
		return fmt.Errorf("block sizes add up to %d, size says %d", sum, size)
	}
	if size == 0 && sha != emptySHA256 {
		return errors.New("sha256 of an empty file must be the SHA-256 of no bytes")
	}
	return nil
}

func checkBlock(b proto.Block, cfg Config) error {
	switch {
	case !blobs.ValidHash(b.Hash):
		return fmt.Errorf("hash %q is not a lowercase hex SHA-256", truncateForError(b.Hash))
	case b.Size <= 0:
		return errors.New("size must be positive")
	case b.Size > cfg.MaxBlockSize:
		return fmt.Errorf("size %d is over the block limit of %d", b.Size, cfg.MaxBlockSize)
	}
	return nil
}

// validateRef checks the parts of an item with copyFrom or blocksDelta that need no
// store; the reference itself is resolved by resolveRef.
func validateRef(it proto.CommitItem, cfg Config) error {
	if it.Data != nil || len(it.Blocks) != 0 {
		return errors.New("an item with copyFrom or blocksDelta has no blocks or data")
	}
	if it.CopyFrom != nil {
		if it.BlocksDelta != nil {
			return errors.New("an item has copyFrom or blocksDelta, not both")
		}
		if _, err := proto.CleanPath(it.CopyFrom.Path); err != nil {
			return fmt.Errorf("copyFrom: %w", err)
		}
		if it.CopyFrom.Seq <= 0 {
			return errors.New("copyFrom: seq must be a positive version number")
		}
		return nil
	}
	d := it.BlocksDelta
	switch {
	case d.BaseSeq <= 0:
		return errors.New("blocksDelta: baseSeq must be a positive version number")
	case d.Head < 0 || d.Tail < 0:
		return errors.New("blocksDelta: head and tail must not be negative")
	}
	var sum int64
	for i, b := range d.Blocks {
		if err := checkBlock(b, cfg); err != nil {
			return fmt.Errorf("blocksDelta.blocks[%d]: %w", i, err)
		}
		if sum += b.Size; sum > it.Size {
			return fmt.Errorf("blocksDelta: blocks add up to more than size %d", it.Size)
		}
	}
	return nil
}

// emptySHA256 is the SHA-256 of no bytes.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// changesQuery is a parsed GET /v1/changes query.
type changesQuery struct {
	since int64
	wait  time.Duration
	limit int
	// maxBlocks is the longest block list sent; -1: no limit.
	maxBlocks int
}

const (
	defaultChangesLimit = 1000
	maxChangesLimit     = 10000
)

func parseChanges(q url.Values, maxWait time.Duration) (changesQuery, error) {
	c := changesQuery{limit: defaultChangesLimit, maxBlocks: -1}
	var err error
	if v := q.Get("maxBlocks"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, fmt.Errorf("maxBlocks %q is not a non-negative integer", truncateForError(v))
		}
		c.maxBlocks = n
	}
	if v := q.Get("since"); v != "" {
		if c.since, err = strconv.ParseInt(v, 10, 64); err != nil || c.since < 0 {
			return c, fmt.Errorf("since %q is not a non-negative integer", truncateForError(v))
		}
	}
	if c.wait, err = waitQuery(q, maxWait); err != nil {
		return c, err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > maxChangesLimit {
			return c, fmt.Errorf("limit %q is not an integer from 1 to %d", truncateForError(v), maxChangesLimit)
		}
		c.limit = n
	}
	return c, nil
}

// waitQuery reads a long poll's ?wait=, capped at maxWait; 0 when absent.
func waitQuery(q url.Values, maxWait time.Duration) (time.Duration, error) {
	v := q.Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := parseWait(v)
	if err != nil {
		return 0, err
	}
	return min(d, maxWait), nil
}

// parseUploads reads a GET /v1/uploads query: ?after=NO (0 when absent) and ?wait=.
func parseUploads(q url.Values, maxWait time.Duration) (after int64, wait time.Duration, err error) {
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return 0, 0, fmt.Errorf("after %q is not a non-negative integer", truncateForError(v))
		}
	}
	wait, err = waitQuery(q, maxWait)
	return after, wait, err
}

// uploadBlocksQuery is a parsed GET /v1/uploads/{no} request.
type uploadBlocksQuery struct {
	no          int64
	from, limit int
	base        int64 // the version of the path the client holds, 0: none named
	wait        time.Duration
}

// parseUploadBlocks reads a GET /v1/uploads/{no} request: the upload's number no, and
// ?from=K (0 when absent), ?limit=N (maxUploadBlocks when absent), ?base=SEQ and ?wait=.
func parseUploadBlocks(no string, q url.Values, maxWait time.Duration) (uploadBlocksQuery, error) {
	u := uploadBlocksQuery{limit: maxUploadBlocks}
	var err error
	if u.no, err = strconv.ParseInt(no, 10, 64); err != nil || u.no < 1 {
		return u, fmt.Errorf("upload %q is not a positive integer", truncateForError(no))
	}
	if v := q.Get("from"); v != "" {
		if u.from, err = strconv.Atoi(v); err != nil || u.from < 0 {
			return u, fmt.Errorf("from %q is not a non-negative integer", truncateForError(v))
		}
	}
	if v := q.Get("limit"); v != "" {
		if u.limit, err = strconv.Atoi(v); err != nil || u.limit < 1 || u.limit > maxUploadBlocks {
			return u, fmt.Errorf("limit %q is not an integer from 1 to %d", truncateForError(v), maxUploadBlocks)
		}
	}
	if v := q.Get("base"); v != "" {
		if u.base, err = strconv.ParseInt(v, 10, 64); err != nil || u.base < 1 {
			return u, fmt.Errorf("base %q is not a positive integer", truncateForError(v))
		}
	}
	u.wait, err = waitQuery(q, maxWait)
	return u, err
}

// parseWait accepts a Go duration ("30s") or a number of seconds ("30").
func parseWait(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d, nil
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 && n < 1e6 {
		return time.Duration(n * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("wait %q is not a duration such as 30s", truncateForError(v))
}

func parseAudit(q url.Values) (store.AuditQuery, error) {
	var a store.AuditQuery
	if p := q.Get("path"); p != "" {
		if _, err := proto.CleanPath(p); err != nil {
			return a, err
		}
		a.Path = p
	}
	a.Agent = q.Get("agent")
	if len(a.Agent) > 256 {
		return a, errors.New("agent longer than 256 bytes")
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return a, fmt.Errorf("before %q is not a positive integer", truncateForError(v))
		}
		a.Before = n
	}
	a.Limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			return a, fmt.Errorf("limit %q is not an integer from 1 to 10000", truncateForError(v))
		}
		a.Limit = n
	}
	return a, nil
}

// parsePathSeq reads ?path=P and an optional &seq=N (0 when absent).
func parsePathSeq(q url.Values) (string, int64, error) {
	p, err := proto.CleanPath(q.Get("path"))
	if err != nil {
		return "", 0, err
	}
	var seq int64
	if v := q.Get("seq"); v != "" {
		seq, err = strconv.ParseInt(v, 10, 64)
		if err != nil || seq <= 0 {
			return "", 0, fmt.Errorf("seq %q is not a positive integer", truncateForError(v))
		}
	}
	return p, seq, nil
}

func truncateForError(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// parseEntryQuery reads GET /v1/entry's ?path=P, optional &seq=N (a retained version)
// and optional &baseSeq=M (answer the block list as a delta against version M).
func parseEntryQuery(q url.Values) (p string, seq, baseSeq int64, err error) {
	p, seq, err = parsePathSeq(q)
	if err != nil {
		return "", 0, 0, err
	}
	if v := q.Get("baseSeq"); v != "" {
		baseSeq, err = strconv.ParseInt(v, 10, 64)
		if err != nil || baseSeq <= 0 {
			return "", 0, 0, fmt.Errorf("baseSeq %q is not a positive integer", truncateForError(v))
		}
	}
	return p, seq, baseSeq, nil
}

// frameArena holds the frames of one commit request in pooled chunks, so that the
// content of every small file committed is not a fresh allocation each (the first sync
// of 10,000 small files allocated its 85 MB that way on the server, and collected it).
// What decodeCommitFrames returns is valid until release.
type frameArena struct {
	chunks []*[]byte
	free   []byte // the unused end of the last chunk
}

// frameChunk is the size of an arena's chunks; a larger frame is allocated on its own.
const frameChunk = 4 << 20

var frameChunks = sync.Pool{New: func() any { b := make([]byte, frameChunk); return &b }}

// alloc returns n bytes of the arena, or nil for a frame larger than a chunk.
func (a *frameArena) alloc(n int) []byte {
	if n > frameChunk {
		return nil
	}
	if n > len(a.free) {
		c := frameChunks.Get().(*[]byte)
		a.chunks = append(a.chunks, c)
		a.free = *c
	}
	b := a.free[:n:n]
	a.free = a.free[n:]
	return b
}

// release gives the chunks back: nothing decoded into them may be used afterwards.
func (a *frameArena) release() {
	for _, c := range a.chunks {
		frameChunks.Put(c)
	}
	a.chunks, a.free = nil, nil
}
