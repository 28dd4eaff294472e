package proto

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

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

// ListKey names a block list, or a prefix of one: a hash chain over its blocks' hashes
// and sizes, in order, from the zero key (the empty list). Two lists with the same key
// are the same list.
type ListKey [sha256.Size]byte

// Next returns the key of the list k names extended by b.
func (k ListKey) Next(b Block) ListKey {
	h := sha256.New()
	h.Write(k[:])
	h.Write([]byte(b.Hash))
	var sz [8]byte
	binary.LittleEndian.PutUint64(sz[:], uint64(b.Size))
	h.Write(sz[:])
	var out ListKey
	h.Sum(out[:0])
	return out
}

// ListKeyOf returns the key of blocks.
func ListKeyOf(blocks []Block) ListKey {
	var k ListKey
	for _, b := range blocks {
		k = k.Next(b)
	}
	return k
}
