package client

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// ErrNotSupported is returned (wrapped) by calls the server does not know: an older
// server. The caller falls back to the calls it has.
var ErrNotSupported = errors.New("not supported by this server")

// GetBlocks downloads the blocks hashes in one request (POST /v1/blocks/get) and returns
// their bytes in the same order, nil for a block the server does not hold. Every block is
// checked against its hash; a server that does not have the call gives an error wrapping
// ErrNotSupported (use GetBlock then).
func (c *Client) GetBlocks(ctx context.Context, hashes []string) ([][]byte, error) {
	return c.GetBlocksInto(ctx, hashes, nil)
}

// GetBlocksInto is GetBlocks that reads the blocks into buf, one after the other, while
// it has room (and allocates the others): the caller may reuse buf once done with the
// blocks. The first sync of 10,000 small files allocated their 85 MB one block at a
// time, and the collections that followed were a tenth of a reader's CPU.
func (c *Client) GetBlocksInto(ctx context.Context, hashes []string, buf []byte) ([][]byte, error) {
	body, err := json.Marshal(proto.GetBlocksRequest{Hashes: hashes})
	if err != nil {
		return nil, fmt.Errorf("get blocks: encode request: %w", err)
	}
	r := request{method: http.MethodPost, route: proto.RouteBlocksGet, body: body, contentType: "application/json",
		timeout: c.timeout, acceptZstd: true}
	resp, err := c.do(ctx, r)
	if err != nil {
		if s := status(err); s == http.StatusNotFound || s == http.StatusMethodNotAllowed {
			return nil, fmt.Errorf("%s %s: %w (%w)", r.method, r.route, ErrNotSupported, err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != proto.ContentTypeBlocks {
		return nil, fmt.Errorf("%s %s: %w (answer of type %q)", r.method, r.route, ErrNotSupported, ct)
	}
	br := blockReaders.Get().(*bufio.Reader)
	br.Reset(resp.Body)
	defer func() {
		br.Reset(nil)
		blockReaders.Put(br)
	}()
	out := make([][]byte, len(hashes))
	buf = buf[:0]
	for i, want := range hashes {
		rec, err := proto.ReadBlockRecord(br, buf[len(buf):], maxBlockBody)
		if err != nil {
			// A cut answer is the server or the network failing: retry later.
			return nil, &Error{Method: r.method, Route: r.route, Err: fmt.Errorf("read block %d of %d: %w", i+1, len(hashes), err)}
		}
		if wantSum, ok := proto.DecodeHash(want); !ok || rec.Sum != wantSum {
			return nil, fmt.Errorf("get blocks: record %d is block %x, asked for %s", i, rec.Sum, want)
		}
		data := rec.Data
		switch rec.Kind {
		case proto.BlockRecordMissing:
			continue
		case proto.BlockRecordZstd:
			if data, err = c.decoder.DecodeAll(rec.Data, nil); err != nil {
				return nil, fmt.Errorf("get blocks: block %s: decode zstd: %w", want, err)
			}
		}
		if sha256.Sum256(data) != rec.Sum {
			return nil, fmt.Errorf("get blocks: block %s: server sent bytes hashing to %x", want, sha256.Sum256(data))
		}
		if len(rec.Data) <= cap(buf)-len(buf) {
			buf = buf[:len(buf)+len(rec.Data)] // the record was read into buf's free room
		}
		out[i] = data[:len(data):len(data)]
	}
	return out, nil
}

// blockReaders holds the read buffers of batched block answers.
var blockReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
