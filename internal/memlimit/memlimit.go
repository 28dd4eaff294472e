// Package memlimit keeps a Go process's soft memory limit (runtime/debug.SetMemoryLimit)
// a little above its live heap, so that the heap of a process holding large data
// structures grows by half of them between collections instead of doubling (GOGC=100),
// while a small heap keeps a fixed total, above what GOGC=100 lets it reach, and
// collects no more often than without a limit.
package memlimit

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
)

// MinLimit is the least automatic limit. Up to a live heap of about 12 MiB, GOGC=100's
// doubling and the runtime's own memory stay under it, so a small agent (W1's 10,000
// files: 9 MiB live) collects as often as it would without a limit.
const MinLimit = 36 << 20

// MinHeadroom is the least room the automatic limit leaves above a larger live heap: it
// covers the runtime's own memory (stacks, GC metadata, free pages not yet returned;
// 8–10 MiB in an agent) and the allocations between two collections. At 24 MiB, an
// agent of 100,000 files (31 MiB live) reached 65 MiB, 7 over its W9 target; at 16 it
// collects twice as often, at the same CPU within the runs' noise, and peaked at
// 56–59 MiB, at the target's edge; at 14, 55.5–56 MiB in alternated runs, at the same
// CPU again (docs/benchmarks.md).
const MinHeadroom = 14 << 20

// Limit returns the automatic limit for a live heap of live bytes: live plus half of
// it, at least MinHeadroom above it, and at least MinLimit.
func Limit(live int64) int64 {
	return max(live+max(live/2, MinHeadroom), MinLimit)
}

const liveMetric = "/gc/heap/live:bytes"

// sentinel is a heap object whose finalizer runs once after the collection that finds
// it unreachable; it arms the next one. It is larger than 16 bytes so that it is not a
// tiny allocation, whose finalizer may never run.
type sentinel struct{ _ [32]byte }

// Auto sets the limit to Limit(live heap) after every garbage collection until stop is
// called (which leaves the last limit in force). The first limit is set at once.
func Auto() (stop func()) {
	var stopped atomic.Bool
	sample := []metrics.Sample{{Name: liveMetric}}
	update := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			debug.SetMemoryLimit(Limit(int64(sample[0].Value.Uint64())))
		}
	}
	var arm func()
	arm = func() {
		runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
			if !stopped.Load() {
				update()
				arm()
			}
		})
	}
	update()
	arm()
	return func() { stopped.Store(true) }
}

// ParseSize reads a size such as 512MiB, 1GiB, 300MB or 1048576 (bytes).
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || v*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q: %w", s, errBadSize)
	}
	return int64(v * float64(mult)), nil
}

var errBadSize = errors.New("want a positive number of bytes with an optional unit (KiB, MiB, GiB, KB, MB, GB)")
