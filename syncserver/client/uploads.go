package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// OpenStream names the file that upload stream uploads: path, of size bytes
// (proto.StreamOpenRequest). Readers then see the upload (Uploads) and may fetch its
// blocks while they arrive (UploadBlocks), before the commit. It returns the upload's
// number. It fails with a 409 (*Error, IsConflict) when the stream names a file already
// or was given up or taken by its commit, and with an error wrapping ErrNotSupported on
// a server without uploads; either way the upload itself goes on as before.
func (c *Client) OpenStream(ctx context.Context, stream, path string, size int64) (int64, error) {
	var out proto.StreamOpenResponse
	r := request{method: http.MethodPost, route: proto.RouteStreams + url.PathEscape(stream) + proto.StreamOpenSuffix}
	if err := c.call(ctx, r, proto.StreamOpenRequest{Path: path, Size: size}, &out); err != nil {
		if s := status(err); s == http.StatusNotFound || s == http.StatusMethodNotAllowed {
			return 0, fmt.Errorf("%s %s: %w (%w)", r.method, r.route, ErrNotSupported, err)
		}
		return 0, err
	}
	if out.No < 1 {
		return 0, fmt.Errorf("open stream: the server answered upload number %d", out.No)
	}
	return out.No, nil
}

// Uploads long-polls the uploads in progress numbered above after, waiting up to wait
// for one to open when there is none (0: answer at once). The answer's Last is the
// after of the next call. A server without uploads gives an error wrapping
// ErrNotSupported.
func (c *Client) Uploads(ctx context.Context, after int64, wait time.Duration) (*proto.UploadsResponse, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out proto.UploadsResponse
	r := request{method: http.MethodGet, route: proto.RouteUploads, query: q, timeout: c.timeout + wait + LongPollSlack}
	if err := c.call(ctx, r, nil, &out); err != nil {
		if s := status(err); s == http.StatusNotFound || s == http.StatusMethodNotAllowed {
			return nil, fmt.Errorf("%s %s: %w (%w)", r.method, r.route, ErrNotSupported, err)
		}
		return nil, err
	}
	return &out, nil
}

// UploadBlocks long-polls the blocks upload no stored so far, contiguous from its
// file's start, in file order, from index from on, waiting up to wait for one when
// there is none yet (0: answer at once); the server sends at most 4096 per answer. The
// answer says Done once no block will follow. A 404 (IsNotFound) says the upload ended
// (taken by its commit, given up) or never was: the blocks fetched so far are worth
// keeping only if the committed entry lists them. base, when above 0, is the version of
// the upload's path the caller holds the block list of: an edit's blocks may then come
// as runs that refer to it (proto.UploadBlocksResponse.Expand).
func (c *Client) UploadBlocks(ctx context.Context, no int64, from int, base int64, wait time.Duration) (*proto.UploadBlocksResponse, error) {
	q := url.Values{"from": {strconv.Itoa(from)}}
	if base > 0 {
		q.Set("base", strconv.FormatInt(base, 10))
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out proto.UploadBlocksResponse
	r := request{method: http.MethodGet, route: proto.RouteUploadBlocks + strconv.FormatInt(no, 10), query: q,
		timeout: c.timeout + wait + LongPollSlack}
	if err := c.call(ctx, r, nil, &out); err != nil {
		return nil, err
	}
	if out.From != from {
		return nil, fmt.Errorf("upload blocks: the server answered from %d, asked %d", out.From, from)
	}
	return &out, nil
}
