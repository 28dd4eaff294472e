package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// streamBufSize is the write buffer between a streamed body's encoder and the pipe
// the transport reads it from.
const streamBufSize = 32 << 10

// bodyWriters pools the buffered writers of streamed request bodies.
var bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, streamBufSize) }}

// BodyError is the error a streamed request body's producer returned (see CommitFunc):
// the request was abandoned before its body was complete, so the server applied none
// of it.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return "request body: " + e.Err.Error() }

// Unwrap returns the producer's error.
func (e *BodyError) Unwrap() error { return e.Err }

// streamBody starts writing a request body with write in its own goroutine and returns
// the reader the transport sends from, and finish, which the caller runs once the
// transport is done with the body (after Do returned): it stops the writer if it is
// still going and returns write's own error, if any (nil when the body was complete or
// the transport merely stopped reading it).
func (c *Client) streamBody(write func(w io.Writer) error) (io.ReadCloser, func() error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		bw := bodyWriters.Get().(*bufio.Writer)
		bw.Reset(pw)
		err := c.writeEncoded(bw, write)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		bodyWriters.Put(bw)
		// A failed write makes the transport's read fail, so the server never sees a
		// complete body; a closed pipe (the transport stopped reading) is not ours.
		var own error
		if err != nil && !errors.Is(err, io.ErrClosedPipe) {
			own = err
		}
		_ = pw.CloseWithError(cmpErr(err, io.EOF))
		done <- own
	}()
	return pr, func() error {
		_ = pr.CloseWithError(io.ErrClosedPipe)
		return <-done
	}
}

// writeEncoded runs write on w, through a zstd encoder when requests are compressed.
func (c *Client) writeEncoded(w io.Writer, write func(w io.Writer) error) error {
	if !c.opts.CompressRequests {
		return write(w)
	}
	enc := c.encoders.Get().(*zstd.Encoder)
	defer c.encoders.Put(enc)
	enc.Reset(w)
	if err := write(enc); err != nil {
		_ = enc.Close() // ends the frame on a writer that is abandoned anyway
		return err
	}
	return enc.Close()
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// CommitFunc is Commit for n items made one at a time by item while the request body is
// being sent, so that the inlined content of a batch is never all in memory: item(i)
// returns the i-th item, whose Data need only stay valid until the next call. When
// item fails, the request is abandoned before its body is complete (the server applies
// nothing of it) and CommitFunc returns a *BodyError wrapping that error.
//
// The body goes as frames (proto.ContentTypeCommit: inlined content as raw bytes); a
// server that reads only JSON refuses that as malformed JSON, and the client then sends
// this and every later commit as JSON.
func (c *Client) CommitFunc(ctx context.Context, n int, item func(i int) (proto.CommitItem, error)) ([]proto.ItemResult, error) {
	res, _, err := c.CommitDeletesFunc(ctx, n, item, nil)
	return res, err
}

// CommitDeletesFunc is CommitFunc that also deletes paths in the same transaction
// (proto.CommitRequest.Deletes), and returns their results apart. deleted is nil when
// deletes was not empty and the server deleted nothing, not knowing the field: the
// caller then sends them with Delete.
func (c *Client) CommitDeletesFunc(ctx context.Context, n int, item func(i int) (proto.CommitItem, error), deletes []proto.DeleteItem) (res, deleted []proto.ItemResult, err error) {
	var out []proto.ItemResult
	if !c.opts.JSONCommits && !c.jsonCommits.Load() {
		out, err = c.commitFrames(ctx, n, item, deletes)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.HasPrefix(e.Message, "malformed JSON") {
			return splitCommitResults(out, err, n, len(deletes))
		}
		c.jsonCommits.Store(true)
	}
	out, err = c.commitJSON(ctx, n, item, deletes)
	return splitCommitResults(out, err, n, len(deletes))
}

// splitCommitResults splits a commit's answer into its items' results and its deletes'.
func splitCommitResults(out []proto.ItemResult, err error, items, deletes int) (res, deleted []proto.ItemResult, _ error) {
	switch {
	case err != nil:
		return nil, nil, err
	case len(out) == items+deletes:
		return out[:items], out[items:], nil
	case deletes > 0 && len(out) == items:
		return out, nil, nil // a server without commit deletes
	}
	return nil, nil, fmt.Errorf("commit: server answered %d results for %d items and %d deletes", len(out), items, deletes)
}

// commitJSON sends a commit as one JSON body.
func (c *Client) commitJSON(ctx context.Context, n int, item func(i int) (proto.CommitItem, error), deletes []proto.DeleteItem) ([]proto.ItemResult, error) {
	sent := make([]proto.CommitItem, n)
	write := func(w io.Writer) error {
		open := []byte(`{"compactResults":true,`)
		if c.opts.OmitCommitBlocks {
			open = append(open, `"omitBlocks":true,`...)
		}
		if len(deletes) > 0 {
			d, err := json.Marshal(deletes)
			if err != nil {
				return err
			}
			open = append(append(append(open, `"deletes":`...), d...), ',')
		}
		if _, err := w.Write(append(open, `"items":[`...)); err != nil {
			return err
		}
		enc := json.NewEncoder(w)
		for i := range n {
			it, err := item(i)
			if err != nil {
				return &BodyError{Err: err}
			}
			if i > 0 {
				if _, err := io.WriteString(w, ","); err != nil {
					return err
				}
			}
			if err := enc.Encode(&it); err != nil {
				return fmt.Errorf("encode item %d: %w", i, err)
			}
			sent[i] = it.WithoutData()
		}
		_, err := io.WriteString(w, "]}")
		return err
	}
	var out proto.CommitResponse
	r := request{method: http.MethodPost, route: proto.RouteCommit, bodyFunc: write, contentType: "application/json"}
	if err := c.call(ctx, r, nil, &out); err != nil {
		return nil, err
	}
	return c.expandResults(&out, sent)
}

// expandResults gives each compact result of a commit (proto.ItemResult.Seq) the entry
// it stands for, made from the item sent (without its data), and returns the results.
// The body was written before the answer came (Client.call waits for it).
func (c *Client) expandResults(out *proto.CommitResponse, sent []proto.CommitItem) ([]proto.ItemResult, error) {
	for i := range out.Results {
		r := &out.Results[i]
		if r.Entry != nil || r.Seq == 0 {
			continue
		}
		if r.Status != proto.StatusOK || r.Seq < 0 || i >= len(sent) || r.Path != sent[i].Path {
			return nil, fmt.Errorf("commit: server answered result %d (%q, %s) with seq %d and no entry", i, r.Path, r.Status, r.Seq)
		}
		e := sent[i].Entry(r.Seq, out.ModifiedBy, out.ModifiedAt)
		if c.opts.OmitCommitBlocks {
			e = proto.OmitBlocks(e, 0)
		}
		r.Entry, r.Seq = &e, 0
	}
	return out.Results, nil
}

// commitFrames sends a commit as frames (proto.ContentTypeCommit).
func (c *Client) commitFrames(ctx context.Context, n int, item func(i int) (proto.CommitItem, error), deletes []proto.DeleteItem) ([]proto.ItemResult, error) {
	sent := make([]proto.CommitItem, n)
	write := func(w io.Writer) error {
		h, err := json.Marshal(proto.CommitFramesHeader{Items: n, OmitBlocks: c.opts.OmitCommitBlocks, CompactResults: true, Deletes: deletes})
		if err != nil {
			return err
		}
		if err := proto.WriteFrame(w, h); err != nil {
			return err
		}
		var buf []byte
		for i := range n {
			it, err := item(i)
			if err != nil {
				return &BodyError{Err: err}
			}
			data := it.Data
			sent[i] = it.WithoutData()
			it.Data = nil
			if buf, err = appendJSON(buf[:0], &it); err != nil {
				return fmt.Errorf("encode item %d: %w", i, err)
			}
			if err := proto.WriteFrame(w, buf); err != nil {
				return err
			}
			if err := proto.WriteFrame(w, data); err != nil {
				return err
			}
		}
		return nil
	}
	var out proto.CommitResponse
	r := request{method: http.MethodPost, route: proto.RouteCommit, bodyFunc: write, contentType: proto.ContentTypeCommit}
	if err := c.call(ctx, r, nil, &out); err != nil {
		return nil, err
	}
	return c.expandResults(&out, sent)
}

// appendJSON appends v's JSON encoding to buf.
func appendJSON(buf []byte, v any) ([]byte, error) {
	b := bytes.NewBuffer(buf)
	if err := json.NewEncoder(b).Encode(v); err != nil {
		return buf, err
	}
	return b.Bytes(), nil
}
