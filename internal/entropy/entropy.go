// Package entropy tells random-looking bytes (compressed media, archives, encrypted data)
// from bytes worth compressing, so that the agent and the server spend no zstd work on
// content that will not shrink.
package entropy

import "math"

// compressibleBelow is the order-0 entropy, in bits per byte, under which a sample is
// worth compressing; already compressed data measures about 7.9–8.
const compressibleBelow = 7.2

// tableMax is the largest count whose c·log2(c) is precomputed: a sample of up to this
// many bytes costs no logarithm but its length's.
const tableMax = 16 << 10

// cLog2c[c] is c·log2(c) (0 for 0).
var cLog2c = func() []float64 {
	t := make([]float64, tableMax+1)
	for c := 2; c <= tableMax; c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

// BitsPerByte is the order-0 entropy of b in bits per byte (0 for empty b):
// −Σ p·log2(p) over the byte values' frequencies p = c/n, computed as
// log2(n) − Σ c·log2(c) / n.
func BitsPerByte(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	// Four histograms, summed after: consecutive equal bytes do not wait on each
	// other's increment.
	var h [4][256]uint32
	i := 0
	for ; i+4 <= len(b); i += 4 {
		h[0][b[i]]++
		h[1][b[i+1]]++
		h[2][b[i+2]]++
		h[3][b[i+3]]++
	}
	for ; i < len(b); i++ {
		h[0][b[i]]++
	}
	var sum float64
	for v := range 256 {
		c := int(h[0][v]) + int(h[1][v]) + int(h[2][v]) + int(h[3][v])
		if c <= tableMax {
			sum += cLog2c[c]
		} else {
			sum += float64(c) * math.Log2(float64(c))
		}
	}
	n := float64(len(b))
	return max(math.Log2(n)-sum/n, 0)
}

// Compressible reports whether a sample of some content looks worth compressing; an empty
// sample does not.
func Compressible(sample []byte) bool {
	return len(sample) > 0 && BitsPerByte(sample) < compressibleBelow
}
