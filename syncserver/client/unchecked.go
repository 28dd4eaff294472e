package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// GetBlockUnchecked downloads one block like GetBlock but does not hash it: for a
// caller that checks what it assembles from the blocks by a hash of its own (a file's
// SHA-256) and fetches again with GetBlock should that check fail. It saves one
// SHA-256 pass over every downloaded byte.
func (c *Client) GetBlockUnchecked(ctx context.Context, hash string) ([]byte, error) {
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
	return data, nil
}
