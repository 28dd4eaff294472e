package syncserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// HeaderRequestID carries the request id; a client's own value is kept when it is sane.
const HeaderRequestID = "X-Request-Id"

// requestInfo is filled in while a request is served and read by the access log.
type requestInfo struct {
	id    string
	agent string
}

type ctxKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// agentFrom returns the authenticated agent of the request.
func agentFrom(ctx context.Context) string { return infoFrom(ctx).agent }

// observe wraps the mux: request id, access log, request metrics and byte counters.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{id: r.Header.Get(HeaderRequestID)}
		if !saneRequestID(ri.id) {
			ri.id = newRequestID()
		}
		w.Header().Set(HeaderRequestID, ri.id)
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		cr := &countingReader{ReadCloser: r.Body}
		r.Body = cr
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}

		next.ServeHTTP(rec, r)

		endpoint := "unmatched"
		if r.Pattern != "" {
			endpoint = r.Pattern
			if i := strings.IndexByte(endpoint, ' '); i >= 0 {
				endpoint = endpoint[i+1:]
			}
		}
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(r.Method, endpoint).Inc()
		s.metrics.duration.WithLabelValues(r.Method, endpoint).Observe(d.Seconds())
		s.metrics.bytesReceived.Add(float64(cr.n))
		s.metrics.bytesSent.Add(float64(rec.n))
		s.log.LogAttrs(r.Context(), levelFor(rec.status), "request",
			slogStr("requestId", ri.id), slogStr("method", r.Method), slogStr("path", r.URL.Path),
			slogStr("endpoint", endpoint), slogInt("status", rec.status), slogInt64("bytesIn", cr.n),
			slogInt64("bytesOut", rec.n), slogFloat("durationMs", float64(d.Microseconds())/1000), slogStr("agent", ri.agent),
			slogStr("remote", r.RemoteAddr))
	})
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// authed wraps a handler of a protected route: it resolves the bearer token to the agent
// identity, or answers 401 (no valid token), 403 (identity not allowed) or 503 (the check
// itself failed).
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		if s.auth == nil {
			ri.agent = s.cfg.AnonymousAgent
			h(w, r)
			return
		}
		token, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="syncserver"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer TOKEN)")
			return
		}
		agent, err := s.auth.Authenticate(r.Context(), token)
		switch {
		case err == nil:
		case errors.Is(err, ErrUnauthenticated):
			// The reason goes to the log only: telling a caller why its token failed would
			// help someone probing with stolen or forged tokens.
			s.log.Info("token refused", "requestId", ri.id, "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="syncserver", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
			return
		case errors.Is(err, ErrForbidden):
			// The caller proved who it is, so it may learn that this identity is not allowed.
			ri.agent = agent
			s.log.Info("identity not allowed", "requestId", ri.id, "agent", agent, "reason", err.Error())
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s may not use this folder: not on its access list", agent))
			return
		default:
			s.log.Error("authenticate", "requestId", ri.id, "err", err)
			writeError(w, http.StatusServiceUnavailable, "authentication unavailable, retry later")
			return
		}
		ri.agent = agent
		h(w, r)
	}
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(h[len(prefix):])
	return t, t != ""
}

type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// recorder remembers the status and counts the bytes of a response. It forwards Flush
// and exposes the wrapped writer to http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status      int
	n           int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// errorEntry answers a single-item call's 409 with the current entry.
func writeErrorEntry(w http.ResponseWriter, status int, msg string, e *proto.Entry) {
	writeJSON(w, status, proto.Error{Error: msg, Entry: e})
}
