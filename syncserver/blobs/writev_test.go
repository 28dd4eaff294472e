package blobs

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// The records of blocks written piece by piece (blockRecords) are byte for byte those
// appendRecord builds, with the same index entries: for any sizes, around the 64 KiB
// pieces and past the 1,024 pieces of one vectored write, and for blocks skipped.
func TestBlockRecordsAreAppendRecords(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		sizes := rapid.SliceOfN(rapid.OneOf(rapid.IntRange(0, 64), rapid.IntRange(60<<10, 70<<10), rapid.IntRange(0, maxPackedBlock)), 1, 40).Draw(rt, "sizes")
		if rapid.Bool().Draw(rt, "many") {
			for range 1500 { // 4,500 pieces
				sizes = append(sizes, 3)
			}
		}
		r := rand.New(rand.NewPCG(uint64(len(sizes)), 7))
		blocks := make([]BlockData, len(sizes))
		sums := make([][sha256.Size]byte, len(sizes))
		var todo []int
		for i, n := range sizes {
			data := make([]byte, n)
			for j := range data {
				data[j] = byte(r.Uint32())
			}
			blocks[i] = BlockData{Data: data}
			sums[i] = sha256.Sum256(data)
			if r.IntN(4) != 0 {
				todo = append(todo, i)
			}
		}
		if len(todo) == 0 {
			todo = []int{0}
		}
		var want []byte
		for _, i := range todo {
			want = appendRecord(want, sums[i], blocks[i].Data)
		}
		const base = 4099
		f, err := os.Create(filepath.Join(dir, "pack"))
		if err != nil {
			rt.Fatal(err)
		}
		defer f.Close()
		recs := newBlockRecords(blocks, sums, todo)
		if recs.size() != int64(len(want)) {
			rt.Fatalf("size %d, want %d", recs.size(), len(want))
		}
		if err := recs.writeAt(f, base); err != nil {
			rt.Fatal(err)
		}
		got := make([]byte, len(want)+1)
		n, _ := f.ReadAt(got, base)
		if n != len(want) || !bytes.Equal(got[:n], want) {
			rt.Fatalf("wrote %d bytes, not the %d appendRecord makes", n, len(want))
		}
		if e, w := recs.entries(base), packRecords(want, base); !reflect.DeepEqual(e, w) {
			rt.Fatalf("entries %v, want %v", e, w)
		}
	})
}
