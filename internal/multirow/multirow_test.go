package multirow

import "testing"

func TestNextCutsAnyLengthIntoSizes(t *testing.T) {
	for n := 1; n <= 1000; n++ {
		left, chunks := n, 0
		for left > 0 {
			size := Sizes[Next(left)]
			if size > left {
				t.Fatalf("n=%d: a chunk of %d for %d rows left", n, size, left)
			}
			left -= size
			chunks++
		}
		if chunks > n/Sizes[0]+12 {
			t.Fatalf("n=%d: %d chunks", n, chunks)
		}
	}
}

func TestValues(t *testing.T) {
	if got, want := Values(3, 2), "(?, ?, ?), (?, ?, ?)"; got != want {
		t.Fatalf("Values(3, 2) = %q, want %q", got, want)
	}
	if got := Values(1, 1); got != "(?)" {
		t.Fatalf("Values(1, 1) = %q", got)
	}
}
