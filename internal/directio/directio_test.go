package directio

import (
	"testing"
	"unsafe"
)

func TestBufferIsAligned(t *testing.T) {
	for _, n := range []int{Align, 3 * Align, 1 << 20} {
		for range 8 {
			b := Buffer(n)
			if len(b) != n || cap(b) != n {
				t.Fatalf("Buffer(%d): len %d cap %d", n, len(b), cap(b))
			}
			if a := uintptr(unsafe.Pointer(unsafe.SliceData(b))) % Align; a != 0 {
				t.Fatalf("Buffer(%d) starts %d bytes past an alignment boundary", n, a)
			}
		}
	}
}

func TestUp(t *testing.T) {
	for in, want := range map[int64]int64{0: 0, 1: Align, Align - 1: Align, Align: Align, Align + 1: 2 * Align} {
		if got := Up(in); got != want {
			t.Errorf("Up(%d) = %d, want %d", in, got, want)
		}
	}
}
