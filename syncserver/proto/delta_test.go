package proto

import (
	"fmt"
	"testing"
)

func blocksOf(s string) []Block {
	out := make([]Block, len(s))
	for i, c := range s {
		out[i] = Block{Hash: fmt.Sprintf("%064x", c), Size: int64(c)}
	}
	return out
}

func TestDiffBlocksApply(t *testing.T) {
	for _, c := range []struct {
		base, list string
		head, tail int
		mid        int
	}{
		{"abcdef", "abXdef", 2, 3, 1},
		{"abcdef", "Xabcdef", 0, 6, 1},
		{"abcdef", "abcdef", 6, 0, 0},
		{"abcdef", "", 0, 0, 0},
		{"", "abc", 0, 0, 3},
		{"aaaa", "aaaaa", 4, 0, 1},
		{"abcdef", "abef", 2, 2, 0},
	} {
		base, list := blocksOf(c.base), blocksOf(c.list)
		d := DiffBlocks(7, base, list)
		if d.BaseSeq != 7 || d.Head != c.head || d.Tail != c.tail || len(d.Blocks) != c.mid {
			t.Errorf("DiffBlocks(%q, %q) = head %d tail %d mid %d", c.base, c.list, d.Head, d.Tail, len(d.Blocks))
		}
		got, err := d.Apply(base)
		if err != nil || len(got) != len(list) {
			t.Fatalf("Apply(%q → %q): %v %v", c.base, c.list, err, got)
		}
		for i := range got {
			if got[i] != list[i] {
				t.Errorf("Apply(%q → %q)[%d] = %v", c.base, c.list, i, got[i])
			}
		}
	}
}

func FuzzBlocksDeltaApply(f *testing.F) {
	f.Add("abcdef", 2, 3, "X")
	f.Add("ab", 3, 0, "")
	f.Add("", -1, 0, "Y")
	f.Fuzz(func(t *testing.T, base string, head, tail int, mid string) {
		b := blocksOf(base)
		d := BlocksDelta{BaseSeq: 1, Head: head, Tail: tail, Blocks: blocksOf(mid)}
		got, err := d.Apply(b)
		fits := head >= 0 && tail >= 0 && head <= len(b) && tail <= len(b)-head
		if (err == nil) != fits {
			t.Fatalf("Apply(%d blocks, head %d, tail %d): err %v", len(b), head, tail, err)
		}
		if err == nil && len(got) != head+len(d.Blocks)+tail {
			t.Fatalf("Apply gave %d blocks", len(got))
		}
	})
}
