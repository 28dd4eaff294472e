package memlimit

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestLimit(t *testing.T) {
	for _, c := range []struct{ live, want int64 }{
		{0, MinLimit},
		{8 << 20, MinLimit},
		{20 << 20, MinLimit},
		{26 << 20, 40 << 20},        // MinHeadroom above it
		{31 << 20, 31<<20 + 31<<19}, // half of it above it
		{100 << 20, 150 << 20},
	} {
		if got := Limit(c.live); got != c.want {
			t.Errorf("Limit(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

func TestAutoFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	debug.SetMemoryLimit(math.MaxInt64)
	stop := Auto()
	defer stop()
	first := debug.SetMemoryLimit(-1)
	if first == math.MaxInt64 || first < MinLimit {
		t.Fatalf("limit after Auto: %d", first)
	}
	keep := make([][]byte, 0, 64)
	for range 64 {
		keep = append(keep, make([]byte, 1<<20))
	}
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) < first+48<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d did not follow a live heap grown by 64 MiB (first %d)", debug.SetMemoryLimit(-1), first)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	held := debug.SetMemoryLimit(-1)
	runtime.KeepAlive(keep) // freed by the next collection, which must not move the limit
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != held {
		t.Errorf("limit changed after stop: %d → %d", held, got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "1GiB": 1 << 30, "300MB": 300e6, "1048576": 1 << 20, " 2 KiB ": 2048, "10B": 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "lots", "1TiB", "MiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
