package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// BlockSums returns the chunk sums of the stored block hash, the base of a patch
// upload (proto/patch.go). A server without the call answers 404, as it does for a
// block it does not hold.
func (c *Client) BlockSums(ctx context.Context, hash string) (*proto.BlockSums, error) {
	var out proto.BlockSums
	r := request{method: http.MethodGet, route: proto.RouteBlocks + url.PathEscape(hash) + proto.SumsSuffix}
	if err := c.call(ctx, r, nil, &out); err != nil {
		return nil, err
	}
	if err := out.Validate(); err != nil {
		return nil, &Error{Method: r.method, Route: r.route, Err: err}
	}
	return &out, nil
}

// PutStreamBlockPatch uploads the block hash, whose bytes are data, as a patch of the
// stored block base whose first head and last tail bytes data shares (proto.PatchOf):
// only the bytes between go on the wire. stream and off are PutStreamBlock's. The
// server checks the block it rebuilds against hash; a server without patches takes the
// body for the whole block and refuses it (400), and the caller then sends it whole.
func (c *Client) PutStreamBlockPatch(ctx context.Context, hash string, data []byte, base string, head, tail int64, stream string, off int64) error {
	q := url.Values{"base": {base}, "head": {strconv.FormatInt(head, 10)}, "tail": {strconv.FormatInt(tail, 10)}}
	if stream != "" {
		q.Set("stream", stream)
		q.Set("off", strconv.FormatInt(off, 10))
	}
	r := request{method: http.MethodPut, route: proto.RouteBlocks + url.PathEscape(hash), query: q,
		body: data[head : int64(len(data))-tail], contentType: "application/octet-stream", timeout: c.timeout}
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	return drainClose(resp)
}
