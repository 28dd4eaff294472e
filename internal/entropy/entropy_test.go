package entropy

import (
	"bytes"
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
