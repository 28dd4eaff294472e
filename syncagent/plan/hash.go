package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Hash is a SHA-256 content hash. The zero Hash is no hash (a dir's, a link's). The
// agent holds hashes as bytes, not as the wire's 64 hex digits: a hex string is a
// 64-byte object of its own (6.4 MB for a folder of 100,000 files, per copy), and
// nodes without them have fewer pointers for the collector to follow.
type Hash [sha256.Size]byte

// HashOf returns the hash of data.
func HashOf(data []byte) Hash { return sha256.Sum256(data) }

// IsZero reports whether h is no hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns h as the wire spells it: 64 lowercase hex digits, or "" for no hash.
func (h Hash) String() string {
	if h.IsZero() {
		return ""
	}
	return hex.EncodeToString(h[:])
}

// MarshalText returns String's form.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads ParseHash's form.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

var errBadHash = errors.New("want 64 lowercase hex digits")

// ParseHash reads a hash as the wire spells it; "" is no hash. Upper case is refused:
// the server keys content by the lowercase spelling, so another one is not the same
// content's name.
func ParseHash(s string) (Hash, error) {
	if s == "" {
		return Hash{}, nil
	}
	h, ok := proto.DecodeHash(s)
	if !ok {
		return Hash{}, fmt.Errorf("hash %q: %w", s, errBadHash)
	}
	return Hash(h), nil
}
