// Package pprofmux serves Go's runtime profiles (net/http/pprof) on a mux of its own,
// for the binaries' opt-in debugging listeners: net/http/pprof registers on
// http.DefaultServeMux when imported, which no server here uses.
package pprofmux

import (
	"net/http"
	"net/http/pprof"
)

// New returns a mux serving the profiles under /debug/pprof/. Callers may add their
// own routes to it.
func New() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}
