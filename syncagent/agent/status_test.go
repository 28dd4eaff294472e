package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"
)

// readyz returns the status code of GET /readyz.
func readyz(t *testing.T, h http.Handler) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code
}

func TestReadyzPassesOnlyAfterTheFirstFullSync(t *testing.T) {
	srv := startServer(t)
	dir := filepath.Join(t.TempDir(), "a")
	a := newAgent(t, srv, dir, "a", nil)
	write(t, filepath.Join(dir, "f.txt"), "hello")
	h := a.Handler()
	if code := readyz(t, h); code != http.StatusServiceUnavailable {
		t.Fatalf("before any sync: /readyz = %d, want 503", code)
	}
	once(t, a)
	if code := readyz(t, h); code != http.StatusOK {
		t.Fatalf("after a full pass: /readyz = %d, want 200", code)
	}
}

func TestReadyzWaitsForTheServerInRun(t *testing.T) {
	// An agent whose server is unreachable never completes a pass, so it is never ready:
	// the app of an injected pod must not start on an unsynced folder.
	dir := filepath.Join(t.TempDir(), "a")
	a := newAgent(t, &testServer{url: "http://127.0.0.1:1"}, dir, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code := readyz(t, a.Handler()); code != http.StatusServiceUnavailable {
		t.Fatalf("server unreachable: /readyz = %d, want 503", code)
	}

	srv := startServer(t)
	b := newAgent(t, srv, filepath.Join(t.TempDir(), "b"), "b", nil)
	h := b.Handler()
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx2) }()
	for readyz(t, h) != http.StatusOK {
		select {
		case err := <-done:
			t.Fatalf("Run ended before the first sync: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
