package syncserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	fastjson "github.com/segmentio/encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// compressJSONAbove is the size from which a JSON answer is zstd-compressed for a
// client that accepts it.
const compressJSONAbove = 4 << 10

// writeJSONFor is writeJSON that compresses a large answer with zstd when the request
// says Accept-Encoding: zstd (block lists are hex hashes, which halve).
func writeJSONFor(w http.ResponseWriter, r *http.Request, status int, v any) {
	if !acceptsZstd(r) {
		writeJSON(w, status, v)
		return
	}
	raw, err := fastjson.Marshal(v)
	if err != nil || len(raw) < compressJSONAbove {
		writeJSON(w, status, v)
		return
	}
	enc := zstdEncoders.Get()
	out := enc.EncodeAll(append(raw, '\n'), make([]byte, 0, len(raw)/2+64))
	zstdEncoders.Put(enc)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Encoding", "zstd")
	h.Add("Vary", "Accept-Encoding")
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, proto.Error{Error: msg})
}

// storeFailed answers an unexpected store error: 503 when the database is unreachable
// (the client may retry), 500 otherwise; the details go to the log, not to the client.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	ri := infoFrom(r.Context())
	switch {
	case errors.Is(err, store.ErrUnavailable):
		s.log.Warn(what, "requestId", ri.id, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, what+": store unavailable, retry later")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.log.Info(what, "requestId", ri.id, "err", err)
	default:
		s.log.Error(what, "requestId", ri.id, "err", err)
		writeError(w, http.StatusInternalServerError, what+": internal error (request id "+ri.id+")")
	}
}

func levelFor(status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelError
	case status >= 400:
		return slog.LevelWarn
	default:
		return slog.LevelInfo
	}
}

func slogStr(k, v string) slog.Attr           { return slog.String(k, v) }
func slogInt(k string, v int) slog.Attr       { return slog.Int(k, v) }
func slogInt64(k string, v int64) slog.Attr   { return slog.Int64(k, v) }
func slogFloat(k string, v float64) slog.Attr { return slog.Float64(k, v) }

// jsonBody returns the request body limited to limit bytes, decompressed when the client
// sent it zstd-compressed (the limit then applies to the decompressed bytes too). done
// must be called when the body has been read. ok is false when an answer was written.
func jsonBody(w http.ResponseWriter, r *http.Request, limit int64) (body io.Reader, done func(), ok bool) {
	raw := http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return raw, func() {}, true
	case "zstd":
		d := zstdDecoders.Get().(*zstd.Decoder)
		if err := d.Reset(raw); err != nil {
			zstdDecoders.Put(d)
			writeError(w, http.StatusBadRequest, "bad zstd stream: "+err.Error())
			return nil, nil, false
		}
		return &capReader{r: d, left: limit}, func() { _ = d.Reset(nil); zstdDecoders.Put(d) }, true
	default:
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content encoding %q not supported (use zstd or none)", truncateForError(enc)))
		return nil, nil, false
	}
}

// capReader fails like http.MaxBytesReader once more than left bytes come through.
type capReader struct {
	r    io.Reader
	left int64
	max  int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.max == 0 {
		c.max = c.left
	}
	if c.left <= 0 {
		return 0, &http.MaxBytesError{Limit: c.max}
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n + int(c.left), &http.MaxBytesError{Limit: c.max}
	}
	return n, err
}
