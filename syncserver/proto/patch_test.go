package proto

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"pgregory.net/rapid"
)

// rebuild is what a server makes of a patch: base[:head] + literal + base[len-tail:].
func rebuild(base []byte, head, tail int64, literal []byte) []byte {
	out := append([]byte{}, base[:head]...)
	out = append(out, literal...)
	return append(out, base[int64(len(base))-tail:]...)
}

func TestPatchOfAnEdit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := make([]byte, 256<<10+123)
	for i := range base {
		base[i] = byte(rng.Uint32())
	}
	changed := append([]byte{}, base...)
	changed[len(changed)/2] ^= 1
	inserted := append([]byte{7}, base...)
	for _, c := range []struct {
		name    string
		data    []byte
		literal int // the most bytes between head and tail
	}{
		{"same", base, 0},
		{"one byte changed", changed, 2 * SumChunk},
		{"one byte inserted at the start", inserted, SumChunk + 1},
		{"other bytes", bytes.Repeat([]byte{1}, 10000), 10000},
		{"shorter than a chunk", base[:100], 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			sums := SumsOf(base)
			if err := sums.Validate(); err != nil {
				t.Fatal(err)
			}
			head, tail := PatchOf(sums, c.data)
			literal := c.data[head : int64(len(c.data))-tail]
			if len(literal) > c.literal {
				t.Errorf("head %d, tail %d: %d bytes between; want at most %d", head, tail, len(literal), c.literal)
			}
			if got := rebuild(base, head, tail, literal); !bytes.Equal(got, c.data) {
				t.Error("the patch does not rebuild the block")
			}
		})
	}
}

// Any block patched against any base rebuilds to itself.
func TestPatchRebuildsTheBlock(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := rapid.SliceOfN(rapid.Byte(), 0, 5*SumChunk).Draw(t, "base")
		data := append([]byte{}, base...)
		for range rapid.IntRange(0, 3).Draw(t, "edits") {
			at := rapid.IntRange(0, len(data)).Draw(t, "at")
			switch rapid.IntRange(0, 2).Draw(t, "kind") {
			case 0:
				data = append(data[:at:at], append(rapid.SliceOfN(rapid.Byte(), 1, SumChunk).Draw(t, "insert"), data[at:]...)...)
			case 1:
				data = append(data[:at:at], data[min(len(data), at+rapid.IntRange(1, SumChunk).Draw(t, "cut")):]...)
			default:
				if at < len(data) {
					data[at] ^= 0xff
				}
			}
		}
		head, tail := PatchOf(SumsOf(base), data)
		if head < 0 || tail < 0 || head+tail > int64(len(data)) || head+tail > int64(len(base)) {
			t.Fatalf("head %d, tail %d for %d bytes against %d", head, tail, len(data), len(base))
		}
		if got := rebuild(base, head, tail, data[head:int64(len(data))-tail]); !bytes.Equal(got, data) {
			t.Fatal("the patch does not rebuild the block")
		}
	})
}

func TestBlockSumsValidate(t *testing.T) {
	good := SumsOf(make([]byte, 3*SumChunk+5))
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []BlockSums{
		{Size: -1},
		{Size: 3 * SumChunk, Head: good.Head, Tail: good.Tail[:8]},
		{Size: 2 * SumChunk, Head: good.Head, Tail: good.Tail},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
