// Package entropy tells random-looking bytes (compressed media, archives, encrypted data)
// from bytes worth compressing, so that the agent and the server spend no zstd work on
// content that will not shrink.
package entropy

import "math"

// compressibleBelow is the order-0 entropy, in bits per byte, under which a sample is
// worth compressing; already compressed data measures about 7.9–8.
const compressibleBelow = 7.2

// BitsPerByte is the order-0 entropy of b in bits per byte (0 for empty b).
func BitsPerByte(b []byte) float64 {
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

// Compressible reports whether a sample of some content looks worth compressing; an empty
// sample does not.
func Compressible(sample []byte) bool {
	return len(sample) > 0 && BitsPerByte(sample) < compressibleBelow
}
