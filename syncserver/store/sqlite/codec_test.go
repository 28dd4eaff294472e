package sqlite

import (
	"bytes"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestBlocksRoundTrip(t *testing.T) {
	in := []proto.Block{
		{Hash: "00" + string(bytes.Repeat([]byte("ab"), 31)), Size: 0},
		{Hash: string(bytes.Repeat([]byte("f0"), 32)), Size: 1<<40 + 3},
	}
	enc, err := encodeBlocks(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeBlocks(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("round trip gave %+v; want %+v", out, in)
	}
	for _, bad := range []proto.Block{{Hash: "ABCD", Size: 1}, {Hash: string(bytes.Repeat([]byte("AB"), 32)), Size: 1}, {Hash: string(bytes.Repeat([]byte("ab"), 32)), Size: -1}} {
		if _, err := encodeBlocks([]proto.Block{bad}); err == nil {
			t.Errorf("encodeBlocks accepted %+v", bad)
		}
	}
}

// FuzzDecodeBlocks feeds the decoder what a damaged database file could hold: it must
// return an error or blocks that encode back to the same bytes, never panic.
func FuzzDecodeBlocks(f *testing.F) {
	good, _ := encodeBlocks([]proto.Block{{Hash: string(bytes.Repeat([]byte("12"), 32)), Size: 4096}})
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:20])
	f.Add(append(good, 0xff))
	f.Fuzz(func(t *testing.T, data []byte) {
		blocks, err := decodeBlocks(data)
		if err != nil {
			return
		}
		again, err := encodeBlocks(blocks)
		if err != nil {
			t.Fatalf("decoded blocks do not encode: %v", err)
		}
		back, err := decodeBlocks(again)
		if err != nil || len(back) != len(blocks) {
			t.Fatalf("re-encoded blocks do not decode: %v", err)
		}
		for i := range back {
			if back[i] != blocks[i] {
				t.Fatalf("block %d changed: %+v then %+v", i, blocks[i], back[i])
			}
		}
	})
}
