package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Error is a failed call: either the server answered with a non-2xx Status (Message is
// its explanation) or the request did not complete (Err is the transport error).
type Error struct {
	Method, Route string
	// Status is the HTTP status; 0 when no answer arrived.
	Status int
	// Message is the server's error text.
	Message string
	// Entry is the server's current entry on a 409 of a single-item call.
	Entry *proto.Entry
	// RetryAfter is the server's Retry-After hint, if any.
	RetryAfter time.Duration
	// Err is the transport error when Status is 0.
	Err error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s %s: %v", e.Method, e.Route, e.Err)
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Route, e.Status, http.StatusText(e.Status), e.Message)
}

// Unwrap returns the transport error.
func (e *Error) Unwrap() error { return e.Err }

func status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return -1
}

// IsConflict reports whether err is a 409: the entry moved on since the caller's base.
func IsConflict(err error) bool { return status(err) == http.StatusConflict }

// IsNotFound reports whether err is a 404.
func IsNotFound(err error) bool { return status(err) == http.StatusNotFound }

// IsUnauthorized reports whether err is a 401 or 403: the token is missing, wrong or
// not allowed on this folder.
func IsUnauthorized(err error) bool {
	s := status(err)
	return s == http.StatusUnauthorized || s == http.StatusForbidden
}

// IsBadRequest reports whether err is a 4xx other than 401, 403, 404, 408, 409 and 429: the
// request itself is wrong and sending it again will not help.
func IsBadRequest(err error) bool {
	s := status(err)
	switch s {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return false
	}
	return s >= 400 && s < 500
}

// IsUnavailable reports whether the server could not serve the call right now: no answer
// at all (connection refused, reset, timeout) or a 502, 503 or 504.
func IsUnavailable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if e.Status == 0 {
		return !errors.Is(e.Err, context.Canceled)
	}
	return e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable ||
		e.Status == http.StatusGatewayTimeout
}

// IsTransient reports whether sending the same request later may succeed: unavailability,
// any 5xx, 408 and 429.
func IsTransient(err error) bool {
	if IsUnavailable(err) {
		return true
	}
	s := status(err)
	return s >= 500 || s == http.StatusTooManyRequests || s == http.StatusRequestTimeout
}

func gunzip(raw []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("decode gzip answer: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("decode gzip answer: %w", err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("answer longer than %d bytes", limit)
	}
	return out, nil
}
