package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Changes long-polls the changes feed: entries with Seq > since, waiting up to wait for
// the first one (0: answer at once); limit 0 leaves the page size to the server.
func (c *Client) Changes(ctx context.Context, since int64, wait time.Duration, limit int) (*proto.ChangesResponse, error) {
	q := url.Values{"since": {strconv.FormatInt(since, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if c.opts.FeedMaxBlocks > 0 {
		q.Set("maxBlocks", strconv.Itoa(c.opts.FeedMaxBlocks))
	}
	var out proto.ChangesResponse
	err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteChanges, query: q, timeout: c.timeout + wait + LongPollSlack}, nil, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// MissingBlocks returns the hashes among hashes that the server does not store.
func (c *Client) MissingBlocks(ctx context.Context, hashes []string) ([]string, error) {
	var out proto.MissingBlocksResponse
	err := c.call(ctx, request{method: http.MethodPost, route: proto.RouteBlocksMissing}, proto.MissingBlocksRequest{Hashes: hashes}, &out)
	if err != nil {
		return nil, err
	}
	return out.Missing, nil
}

// StreamStoredBlocks continues upload stream at off with count blocks of the retained
// version base's list, from its block from on: blocks the server holds, which it hashes
// into the stream from its store (proto.StreamBlocksRequest). It returns the offset
// after them. An error (an older server has no such route) only means that the commit
// naming the stream hashes those blocks itself.
func (c *Client) StreamStoredBlocks(ctx context.Context, stream string, off int64, base proto.ContentRef, from, count int) (int64, error) {
	var out proto.StreamBlocksResponse
	req := proto.StreamBlocksRequest{Off: off, Base: base, From: from, Count: count}
	err := c.call(ctx, request{method: http.MethodPost, route: proto.RouteStreams + url.PathEscape(stream) + proto.StreamBlocksSuffix}, req, &out)
	if err != nil {
		return 0, err
	}
	return out.End, nil
}

// StreamSum asks the server for the SHA-256 of the content of blocks, the whole list of
// a file whose blocks were all sent (PutStreamBlock, PutStreamBlockPatch) or named
// (StreamStoredBlocks) to stream: the server hashed them as they came. It fails with a
// 409 (*Error) when the stream does not hold exactly that list (a block never sent, a
// stream expired), and with an error wrapping ErrNotSupported on a server without sums.
func (c *Client) StreamSum(ctx context.Context, stream string, blocks []proto.Block) (string, error) {
	var size int64
	for _, b := range blocks {
		size += b.Size
	}
	key := proto.ListKeyOf(blocks)
	req := proto.StreamSumRequest{Size: size, Blocks: len(blocks), List: hex.EncodeToString(key[:])}
	var out proto.StreamSumResponse
	r := request{method: http.MethodPost, route: proto.RouteStreams + url.PathEscape(stream) + proto.StreamSumSuffix}
	if err := c.call(ctx, r, req, &out); err != nil {
		if s := status(err); s == http.StatusNotFound || s == http.StatusMethodNotAllowed {
			return "", fmt.Errorf("%s %s: %w (%w)", r.method, r.route, ErrNotSupported, err)
		}
		return "", err
	}
	if !proto.ValidHash(out.SHA256) {
		return "", fmt.Errorf("stream sum: the server answered %q, not a SHA-256", out.SHA256)
	}
	return out.SHA256, nil
}

// PutBlock uploads one block; hash must be the SHA-256 of data (the server checks).
// With compress, the body is sent zstd-compressed when that makes it smaller.
func (c *Client) PutBlock(ctx context.Context, hash string, data []byte, compress bool) error {
	return c.PutStreamBlock(ctx, hash, data, compress, "", 0)
}

// PutStreamBlock uploads one block like PutBlock, as the block at offset off of the file
// uploaded as stream (a short name of letters, digits, '-' or '_' the caller picks per
// upload; "" is none): the server then hashes the stream's blocks in file order while
// they arrive, and a commit item that names the stream is verified without reading
// them again. A server that does not know streams ignores the query.
func (c *Client) PutStreamBlock(ctx context.Context, hash string, data []byte, compress bool, stream string, off int64) error {
	r := request{method: http.MethodPut, route: proto.RouteBlocks + url.PathEscape(hash), body: data,
		contentType: "application/octet-stream", timeout: c.timeout}
	if stream != "" {
		r.query = url.Values{"stream": {stream}, "off": {strconv.FormatInt(off, 10)}}
	}
	if compress {
		if z := c.compress(data); len(z) < len(data)-len(data)/16 {
			r.body, r.encoding = z, "zstd"
		}
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	return drainClose(resp)
}

// drainClose reads the rest of an answer's body, so that its connection can be reused,
// and closes it.
func drainClose(resp *http.Response) error {
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// GetBlock downloads one block and checks that its bytes hash to hash.
func (c *Client) GetBlock(ctx context.Context, hash string) ([]byte, error) {
	r := request{method: http.MethodGet, route: proto.RouteBlocks + url.PathEscape(hash), timeout: c.timeout, acceptZstd: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := c.readBody(resp, maxBlockBody)
	if err != nil {
		return nil, &Error{Method: r.method, Route: r.route, Err: fmt.Errorf("read block: %w", err)}
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != hash {
		return nil, fmt.Errorf("block %s: server sent bytes hashing to %s", hash, got)
	}
	return data, nil
}

// GetBlockDelta downloads one block, asking the server to compress it against base (the
// bytes of the block baseHash, which the caller holds) as a zstd dictionary: a block that
// differs from base by a small edit costs a few dozen bytes. A server that does not
// hold base, or does not know the query, answers the plain block; either way the bytes
// are checked against hash.
func (c *Client) GetBlockDelta(ctx context.Context, hash, baseHash string, base []byte) ([]byte, error) {
	r := request{method: http.MethodGet, route: proto.RouteBlocks + url.PathEscape(hash), timeout: c.timeout,
		acceptZstd: true, query: url.Values{"base": {baseHash}}}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var data []byte
	if resp.Header.Get(HeaderBaseBlock) == baseHash && strings.EqualFold(resp.Header.Get("Content-Encoding"), "zstd") {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBlockBody+1))
		if err != nil {
			return nil, &Error{Method: r.method, Route: r.route, Err: fmt.Errorf("read block: %w", err)}
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderDictRaw(0, base),
			zstd.WithDecoderMaxMemory(maxBlockBody))
		if err != nil {
			return nil, fmt.Errorf("block %s: zstd decoder: %w", hash, err)
		}
		data, err = dec.DecodeAll(raw, nil)
		dec.Close()
		if err != nil {
			return nil, fmt.Errorf("block %s: decode delta against %s: %w", hash, baseHash, err)
		}
	} else if data, err = c.readBody(resp, maxBlockBody); err != nil {
		return nil, &Error{Method: r.method, Route: r.route, Err: fmt.Errorf("read block: %w", err)}
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != hash {
		return nil, fmt.Errorf("block %s: server sent bytes hashing to %s", hash, got)
	}
	return data, nil
}

// HeaderBaseBlock is the answer header of GetBlockDelta naming the dictionary block.
const HeaderBaseBlock = "X-Sync-Base-Block"

// Commit sends a batch of new versions; each item succeeds or conflicts on its own. The
// request body is encoded item by item as it is sent (see CommitFunc).
func (c *Client) Commit(ctx context.Context, items []proto.CommitItem) ([]proto.ItemResult, error) {
	return c.CommitFunc(ctx, len(items), func(i int) (proto.CommitItem, error) { return items[i], nil })
}

// Delete sends a batch of deletes; each item succeeds or conflicts on its own.
func (c *Client) Delete(ctx context.Context, items []proto.DeleteItem) ([]proto.ItemResult, error) {
	var out proto.CommitResponse
	if err := c.call(ctx, request{method: http.MethodPost, route: proto.RouteDelete}, proto.DeleteRequest{Items: items}, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != len(items) {
		return nil, fmt.Errorf("delete: server answered %d results for %d items", len(out.Results), len(items))
	}
	return out.Results, nil
}

// Entry returns the current entry of path, tombstones included (IsNotFound when none).
func (c *Client) Entry(ctx context.Context, path string) (*proto.Entry, error) {
	var out proto.Entry
	if err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteEntry, query: url.Values{"path": {path}}}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EntryAt returns the version seq of path (0: the current entry). With baseSeq > 0 the
// server may answer the block list as a delta against that version of path
// (Entry.BlocksDelta); it sends the whole list when it no longer holds the base.
func (c *Client) EntryAt(ctx context.Context, path string, seq, baseSeq int64) (*proto.Entry, error) {
	q := url.Values{"path": {path}}
	if seq > 0 {
		q.Set("seq", strconv.FormatInt(seq, 10))
	}
	if baseSeq > 0 {
		q.Set("baseSeq", strconv.FormatInt(baseSeq, 10))
	}
	var out proto.Entry
	if err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteEntry, query: q}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// File streams the content of path: the current version when seq is 0, else the
// retained version seq. The caller closes the reader; ctx bounds the whole transfer.
func (c *Client) File(ctx context.Context, path string, seq int64) (io.ReadCloser, error) {
	q := url.Values{"path": {path}}
	if seq > 0 {
		q.Set("seq", strconv.FormatInt(seq, 10))
	}
	resp, err := c.do(ctx, request{method: http.MethodGet, route: proto.RouteFile, query: q})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Versions lists the retained versions of path, newest first.
func (c *Client) Versions(ctx context.Context, path string) (*proto.VersionsResponse, error) {
	var out proto.VersionsResponse
	if err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteVersions, query: url.Values{"path": {path}}}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Restore makes a retained version current again, as a new change checked against
// req.BaseSeq.
func (c *Client) Restore(ctx context.Context, req proto.RestoreRequest) (proto.ItemResult, error) {
	var out proto.CommitResponse
	if err := c.call(ctx, request{method: http.MethodPost, route: proto.RouteRestore}, req, &out); err != nil {
		return proto.ItemResult{}, err
	}
	if len(out.Results) != 1 {
		return proto.ItemResult{}, fmt.Errorf("restore: server answered %d results for 1 item", len(out.Results))
	}
	return out.Results[0], nil
}

// Conflicts lists the folder's live conflict copies.
func (c *Client) Conflicts(ctx context.Context) ([]proto.Entry, error) {
	var out proto.ConflictsResponse
	if err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteConflicts}, nil, &out); err != nil {
		return nil, err
	}
	return out.Conflicts, nil
}

// AuditQuery filters Audit; zero fields do not filter.
type AuditQuery struct {
	Path   string
	Agent  string
	Before int64
	Limit  int
}

// Audit returns audit records matching q, newest first.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]proto.AuditRecord, error) {
	v := url.Values{}
	if q.Path != "" {
		v.Set("path", q.Path)
	}
	if q.Agent != "" {
		v.Set("agent", q.Agent)
	}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out proto.AuditResponse
	if err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteAudit, query: v}, nil, &out); err != nil {
		return nil, err
	}
	return out.Records, nil
}

// Stats returns the folder's live figures.
func (c *Client) Stats(ctx context.Context) (*proto.Stats, error) {
	var out proto.Stats
	if err := c.call(ctx, request{method: http.MethodGet, route: proto.RouteStats}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Healthz returns nil when the server answers its liveness probe with 2xx.
func (c *Client) Healthz(ctx context.Context) error {
	return c.call(ctx, request{method: http.MethodGet, route: proto.RouteHealthz}, nil, nil)
}

// Readyz returns nil when the server is ready to serve (its store answers).
func (c *Client) Readyz(ctx context.Context) error {
	return c.call(ctx, request{method: http.MethodGet, route: proto.RouteReadyz}, nil, nil)
}
