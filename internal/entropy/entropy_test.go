package entropy

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

func TestCompressible(t *testing.T) {
	random := make([]byte, 16<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 400)
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"random bytes", random, false},
		{"text", text, true},
		{"one repeated byte", bytes.Repeat([]byte{7}, 4096), true},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := Compressible(tt.b); got != tt.want {
			t.Errorf("%s: Compressible = %v (%.2f bits per byte), want %v", tt.name, got, BitsPerByte(tt.b), tt.want)
		}
	}
	if e := BitsPerByte(bytes.Repeat([]byte{0, 1}, 100)); e != 1 {
		t.Errorf("two equally frequent bytes: %v bits per byte, want 1", e)
	}
}

// reference is the textbook order-0 entropy, −Σ p·log2(p).
func reference(b []byte) float64 {
	var hist [256]int
	for _, c := range b {
		hist[c]++
	}
	var e float64
	for _, c := range hist {
		if c > 0 {
			p := float64(c) / float64(len(b))
			e -= p * math.Log2(p)
		}
	}
	return e
}

// TestBitsPerByteMatchesTheDefinition checks the table-driven sum against the textbook
// formula on random, skewed and repetitive samples, short and past the table's counts.
func TestBitsPerByteMatchesTheDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 3, 5, 100, 4096, 16 << 10, 16<<10 + 7, 100_000} {
		random, skewed := make([]byte, n), make([]byte, n)
		for i := range n {
			random[i] = byte(r.Uint32())
			skewed[i] = byte(r.IntN(1 + i%9)) // few values, very unequal counts
		}
		for name, b := range map[string][]byte{"random": random, "skewed": skewed, "one byte": bytes.Repeat([]byte{9}, n)} {
			if got, want := BitsPerByte(b), reference(b); math.Abs(got-want) > 1e-9 {
				t.Errorf("%s, %d bytes: %v bits per byte, want %v", name, n, got, want)
			}
		}
	}
}

func BenchmarkBitsPerByte16KiB(b *testing.B) {
	sample := randomSample16KiB()
	b.SetBytes(int64(len(sample)))
	for b.Loop() {
		BitsPerByte(sample)
	}
}

func BenchmarkReference16KiB(b *testing.B) {
	sample := randomSample16KiB()
	b.SetBytes(int64(len(sample)))
	for b.Loop() {
		reference(sample)
	}
}

// randomSample16KiB is 16 KiB of seeded random bytes.
func randomSample16KiB() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	sample := make([]byte, 16<<10)
	for i := range sample {
		sample[i] = byte(r.Uint32())
	}
	return sample
}
