package proto

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestDecodeHash(t *testing.T) {
	for _, content := range []string{"", "a", "some content"} {
		want := sha256.Sum256([]byte(content))
		got, ok := DecodeHash(hex.EncodeToString(want[:]))
		if !ok || got != want {
			t.Errorf("%q: %x, %v; want %x", content, got, ok, want)
		}
	}
	good := hex.EncodeToString(make([]byte, 32))
	for _, bad := range []string{"", good[1:], good + "0", strings.ToUpper(strings.Repeat("ab", 32)), good[:63] + "g", good[:63] + " "} {
		if _, ok := DecodeHash(bad); ok {
			t.Errorf("%q decoded", bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeHash(good) }); n != 0 {
		t.Errorf("%v allocations per decode", n)
	}
}
