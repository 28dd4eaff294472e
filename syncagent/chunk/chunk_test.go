package chunk

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func mustHash(t fataler, data []byte) Result {
	t.Helper()
	var seen int64
	res, err := Hash(bytes.NewReader(data), func(b proto.Block, data Data) error {
		d := data.Bytes()
		if SumHex(d) != b.Hash || int64(len(d)) != b.Size {
			t.Fatalf("block %s: bytes do not match", b.Hash)
		}
		seen += b.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != SumHex(data) || res.Size != int64(len(data)) || seen != res.Size {
		t.Fatalf("result %s/%d, want %s/%d (blocks cover %d)", res.SHA256, res.Size, SumHex(data), len(data), seen)
	}
	return res
}

// changedBytes is what a peer holding a would have to fetch to build b.
func changedBytes(a, b Result) int64 {
	have := map[string]bool{}
	for _, bl := range a.Blocks {
		have[bl.Hash] = true
	}
	var n int64
	for _, bl := range b.Blocks {
		if !have[bl.Hash] {
			n += bl.Size
		}
	}
	return n
}

func TestSmallFilesAreOneBlock(t *testing.T) {
	for _, n := range []int{0, 1, 4096, MinSize} {
		res := mustHash(t, randomBytes(n, uint64(n)))
		want := 1
		if n == 0 {
			want = 0
		}
		if len(res.Blocks) != want {
			t.Errorf("%d bytes: %d blocks, want %d", n, len(res.Blocks), want)
		}
	}
}

func TestBlocksStableUnderEdits(t *testing.T) {
	const size = 64 << 20
	base := randomBytes(size, 7)
	orig := mustHash(t, base)
	avg := size / len(orig.Blocks)
	if avg < AvgSize/2 || avg > AvgSize*2 {
		t.Errorf("average block %d bytes, want near %d", avg, AvgSize)
	}
	for _, b := range orig.Blocks {
		if b.Size > MaxSize {
			t.Errorf("block of %d bytes exceeds MaxSize", b.Size)
		}
	}

	inserted := append([]byte{'x'}, base...)
	flipped := bytes.Clone(base)
	flipped[size/2] ^= 0xff
	appended := append(bytes.Clone(base), 'y')
	for name, data := range map[string][]byte{"insert at start": inserted, "change in middle": flipped, "append": appended} {
		moved := changedBytes(orig, mustHash(t, data))
		// One or two blocks around the edit, never more than two maximal blocks.
		if moved == 0 || moved > 2*MaxSize {
			t.Errorf("%s: %d bytes of new blocks, want 1..%d", name, moved, 2*MaxSize)
		}
		t.Logf("%s: %d KiB of new blocks", name, moved>>10)
	}
}

func BenchmarkHash(b *testing.B) {
	data := randomBytes(64<<20, 1)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Hash(bytes.NewReader(data), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConcurrentHashesAgree hashes several multi-block contents at once, as the scan's
// workers do, and checks every result against the same content hashed alone. Under -race
// it also guards the chunker library's shared table (tableMu).
func TestConcurrentHashesAgree(t *testing.T) {
	const n = 6
	data := make([][]byte, n)
	want := make([]Result, n)
	for i := range data {
		data[i] = randomBytes(3*MaxSize+i*4099, uint64(100+i))
		want[i] = mustHash(t, data[i])
	}
	got := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range data {
		wg.Go(func() { got[i], errs[i] = Hash(bytes.NewReader(data[i]), nil) })
	}
	wg.Wait()
	for i := range data {
		if errs[i] != nil {
			t.Fatalf("content %d: %v", i, errs[i])
		}
		if got[i].SHA256 != want[i].SHA256 || !slices.Equal(got[i].Blocks, want[i].Blocks) {
			t.Errorf("content %d: concurrent result differs from the one hashed alone", i)
		}
	}
}

// HashBlocks cuts as Hash does, with the same fast sums, and leaves the whole content's
// SHA-256 out unless the content is one block (whose name is then that hash).
func TestHashBlocksCutsAsHashDoes(t *testing.T) {
	for _, n := range []int{0, 1, MinSize, MinSize + 1, 5*MaxSize + 12345} {
		data := randomBytes(n, uint64(n))
		want := mustHash(t, data)
		var seen []proto.Block
		got, err := HashBlocks(bytes.NewReader(data), func(b proto.Block, _ Data) error {
			seen = append(seen, b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Blocks, want.Blocks) || !slices.Equal(seen, want.Blocks) || !slices.Equal(got.Fast, want.Fast) || got.Size != want.Size {
			t.Fatalf("%d bytes: HashBlocks cut %d blocks (fn saw %d), Hash %d", n, len(got.Blocks), len(seen), len(want.Blocks))
		}
		oneBlock := len(want.Blocks) <= 1
		if oneBlock && got.SHA256 != want.SHA256 || !oneBlock && (got.SHA256 != "" || got.Sum != ([32]byte{}) || got.Marks != nil) {
			t.Fatalf("%d bytes in %d blocks: HashBlocks gave sum %q and %d marks", n, len(want.Blocks), got.SHA256, len(got.Marks))
		}
	}
}
