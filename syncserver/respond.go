package syncserver

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
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
