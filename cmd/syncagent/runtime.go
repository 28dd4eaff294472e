package main

import (
	"math"
	"net/http"
	"runtime/debug"

	"github.com/syncedfolder/synced-folder/internal/memlimit"
	"github.com/syncedfolder/synced-folder/internal/pprofmux"
)

// withPprof serves Go's profiles under /debug/pprof/ beside h (the status handler). It
// is opt-in (--pprof): profiles reveal paths and contents of memory, so the status
// listener only carries them when asked to.
func withPprof(h http.Handler) http.Handler {
	mux := pprofmux.New()
	mux.Handle("/", h)
	return mux
}

// applyMemoryLimit puts --memory-limit in force and returns what undoes its automatic
// mode. A GOMEMLIMIT in the environment (which the runtime applied at start) wins
// over the default but not over an explicit --memory-limit (or SYNCAGENT_MEMORY_LIMIT).
func applyMemoryLimit(value string, explicit bool, getenv func(string) string) (stop func()) {
	stop = func() {}
	switch {
	case !explicit && getenv("GOMEMLIMIT") != "":
	case value == "off":
		if explicit {
			debug.SetMemoryLimit(math.MaxInt64)
		}
	case value == "auto":
		stop = memlimit.Auto()
	default:
		n, err := memlimit.ParseSize(value) // checked by validate
		if err == nil {
			debug.SetMemoryLimit(n)
		}
	}
	return stop
}
