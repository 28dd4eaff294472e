package proto

import "encoding/hex"

// HashHexLen is the length of a hash as the protocol spells it.
const HashHexLen = 64

// ValidHash reports whether h is a hash as the protocol spells it: exactly 64 lowercase
// hex digits (the SHA-256 of the content). Another spelling of the same bytes is not
// the same content's name.
func ValidHash(h string) bool {
	if len(h) != HashHexLen {
		return false
	}
	for i := range len(h) {
		if c := h[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// DecodeHash returns the 32 bytes of a valid hash (see ValidHash) without allocating;
// ok is false for anything else.
func DecodeHash(h string) (sum [HashHexLen / 2]byte, ok bool) {
	if !ValidHash(h) {
		return sum, false
	}
	var src [HashHexLen]byte // on the stack: []byte(h) would allocate
	copy(src[:], h)
	_, err := hex.Decode(sum[:], src[:])
	return sum, err == nil
}
