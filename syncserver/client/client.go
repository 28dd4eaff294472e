// Package client is the Go client of the sync server's /v1 protocol, used by the sync
// agent and the operator. It never retries: callers decide (see IsTransient).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// DefaultTimeout bounds every call except the long-poll (which waits for its own wait plus
// LongPollSlack) and the streaming of File bodies (bounded by the caller's context).
const DefaultTimeout = 2 * time.Minute

// LongPollSlack is added to a Changes wait so the request outlives the server's wait.
const LongPollSlack = 30 * time.Second

// maxJSONBody caps a JSON answer; a huge changes page is cut by its limit long before.
const maxJSONBody = 512 << 20

// maxBlockBody caps a block download; blocks are a few MiB at most.
const maxBlockBody = 64 << 20

// Options configure a Client.
type Options struct {
	// BaseURL is the server's URL, such as https://syncserver.ns.svc:8443.
	BaseURL string
	// TokenFile holds a bearer token; it is read again on every request because
	// projected service-account tokens rotate. Empty means no Authorization header.
	TokenFile string
	// CAFile is a PEM bundle that verifies the server's certificate; empty uses the
	// system roots.
	CAFile string
	// Timeout bounds each call (DefaultTimeout when zero).
	Timeout time.Duration
	// UserAgent is sent on every request.
	UserAgent string
	// CompressRequests sends JSON request bodies zstd-compressed (Content-Encoding: zstd);
	// only for servers that accept it.
	CompressRequests bool
	// FeedMaxBlocks, when positive, asks the changes feed to send entries whose block
	// list is longer without it (blocksOmitted); EntryAt fetches such a list.
	FeedMaxBlocks int
	// OmitCommitBlocks asks Commit's answer for entries without their block lists
	// (blocksOmitted); the caller knows what it sent.
	OmitCommitBlocks bool
	// Transport replaces the default transport (tests, custom dialers).
	Transport http.RoundTripper
	// JSONCommits sends commits as JSON with base64 content, as before frames existed
	// (proto.ContentTypeCommit); a client falls back to it by itself when a server
	// does not read frames.
	JSONCommits bool
}

// Client calls one sync server. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	opts     Options
	http     *http.Client
	timeout  time.Duration
	encoders sync.Pool
	decoder  *zstd.Decoder
	// jsonCommits is set once a server refused a commit sent as frames.
	jsonCommits atomic.Bool
}

// New returns a client for opts.BaseURL. It reads CAFile once; TokenFile is read per request.
func New(opts Options) (*Client, error) {
	if opts.BaseURL == "" {
		return nil, fmt.Errorf("server URL is empty")
	}
	base, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("parse server URL %q: %w", opts.BaseURL, err)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: scheme must be http or https", opts.BaseURL)
	}
	if base.Host == "" {
		return nil, fmt.Errorf("server URL %q has no host", opts.BaseURL)
	}
	rt := opts.Transport
	if rt == nil {
		tr := &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
		}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %q holds no PEM certificate", opts.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		rt = tr
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxJSONBody))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &Client{base: base, opts: opts, http: &http.Client{Transport: rt}, timeout: timeout, decoder: dec}
	c.encoders.New = func() any {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		return enc
	}
	return c, nil
}

// BaseURL returns the server URL the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

func (c *Client) compress(b []byte) []byte {
	enc := c.encoders.Get().(*zstd.Encoder)
	defer c.encoders.Put(enc)
	return enc.EncodeAll(b, make([]byte, 0, len(b)/2+64))
}

// request is one call's description.
type request struct {
	method, route string
	query         url.Values
	body          []byte
	// bodyFunc, when set, streams the body instead (see streamBody).
	bodyFunc    func(w io.Writer) error
	contentType string
	encoding    string // Content-Encoding of body
	timeout     time.Duration
	acceptZstd  bool
}

// do sends r and returns the answer when its status is 2xx; otherwise an *Error.
// The caller closes the body; cancel runs when the body is closed.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + r.route
	if r.query != nil {
		u.RawQuery = r.query.Encode()
	}
	cancel := context.CancelFunc(func() {})
	if r.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	if r.bodyFunc != nil && c.opts.CompressRequests {
		r.encoding = "zstd"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s %s: %w", r.method, r.route, err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.encoding != "" {
		req.Header.Set("Content-Encoding", r.encoding)
	}
	if r.acceptZstd {
		// Setting Accept-Encoding turns off the transport's transparent gzip, so
		// decodeBody handles both.
		req.Header.Set("Accept-Encoding", "zstd, gzip")
	}
	if c.opts.UserAgent != "" {
		req.Header.Set("User-Agent", c.opts.UserAgent)
	}
	if c.opts.TokenFile != "" {
		tok, err := os.ReadFile(c.opts.TokenFile)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s %s: read token file: %w", r.method, r.route, err)
		}
		t := strings.TrimSpace(string(tok))
		if t == "" {
			cancel()
			return nil, fmt.Errorf("%s %s: token file %q is empty", r.method, r.route, c.opts.TokenFile)
		}
		req.Header.Set("Authorization", "Bearer "+t)
	}
	finish := func() error { return nil }
	if r.bodyFunc != nil {
		// A body of unknown length (ContentLength 0 with a Body) goes out chunked.
		req.Body, finish = c.streamBody(r.bodyFunc)
	}
	resp, err := c.http.Do(req)
	// Do returns once the transport is done with the body or the server answered; an
	// error of a streamed body's own producer explains a failed request better than
	// what it did to the transport.
	berr := finish()
	if err != nil {
		cancel()
		if berr != nil {
			return nil, berr
		}
		return nil, &Error{Method: r.method, Route: r.route, Err: err}
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, c.statusError(r, resp)
	}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (c *Client) statusError(r request, resp *http.Response) error {
	e := &Error{Method: r.method, Route: r.route, Status: resp.StatusCode}
	raw, err := c.readBody(resp, 1<<20)
	if err == nil {
		var pe proto.Error
		if json.Unmarshal(raw, &pe) == nil && pe.Error != "" {
			e.Message = pe.Error
			e.Entry = pe.Entry
		} else {
			e.Message = strings.TrimSpace(string(raw))
			if len(e.Message) > 512 {
				e.Message = e.Message[:512] + "…"
			}
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// readBody reads a whole answer, undoing its Content-Encoding, up to limit bytes.
func (c *Client) readBody(resp *http.Response, limit int64) ([]byte, error) {
	var raw []byte
	var err error
	if n := resp.ContentLength; n >= 0 && n <= limit {
		// Known length (a block): one buffer of that size, not ReadAll's doublings.
		raw = make([]byte, n)
		_, err = io.ReadFull(resp.Body, raw)
	} else {
		raw, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	}
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("answer longer than %d bytes", limit)
	}
	switch strings.ToLower(resp.Header.Get("Content-Encoding")) {
	case "", "identity":
		return raw, nil
	case "zstd":
		out, err := c.decoder.DecodeAll(raw, nil)
		if err != nil {
			return nil, fmt.Errorf("decode zstd answer: %w", err)
		}
		return out, nil
	case "gzip":
		return gunzip(raw, limit)
	default:
		return nil, fmt.Errorf("unknown Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
}

// call sends a JSON request (in may be nil) and decodes a JSON answer into out (may be nil).
func (c *Client) call(ctx context.Context, r request, in, out any) error {
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", r.method, r.route, err)
		}
		r.contentType = "application/json"
		if c.opts.CompressRequests && len(b) > 1024 {
			b = c.compress(b)
			r.encoding = "zstd"
		}
		r.body = b
	}
	if r.timeout == 0 {
		r.timeout = c.timeout
	}
	r.acceptZstd = true
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := c.readBody(resp, maxJSONBody)
	if err != nil {
		return &Error{Method: r.method, Route: r.route, Err: fmt.Errorf("read answer: %w", err)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.method, r.route, err)
	}
	return nil
}
