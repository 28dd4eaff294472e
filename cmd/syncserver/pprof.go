package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/syncedfolder/synced-folder/internal/pprofmux"
)

// servePprof serves Go's profiles under /debug/pprof/ on a listener of their own at
// addr (--pprof-listen), and returns its address and what stops it. The API listener
// never carries them: profiles reveal paths and the contents of memory, so the flag
// takes only a loopback address (checkPprofListen).
func servePprof(addr string, logger *slog.Logger) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--pprof-listen: %w", err)
	}
	srv := &http.Server{Handler: pprofmux.New(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("profiles listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	logger.Info("serving Go profiles", "addr", ln.Addr().String())
	return ln.Addr(), func() { srv.Close() }, nil
}
