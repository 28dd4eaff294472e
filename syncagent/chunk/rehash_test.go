package chunk

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// drawEdit draws a content of a few blocks and an edit of it: bytes overwritten,
// inserted or removed anywhere (the start and the end included), a stretch repeated
// (blocks that occur twice), or the content cut or extended.
func drawEdit(t *rapid.T) (old, edited []byte) {
	old = randomBytes(rapid.IntRange(0, 6<<20).Draw(t, "size"), rapid.Uint64().Draw(t, "seed"))
	if rapid.IntRange(0, 3).Draw(t, "repeat") == 0 && len(old) > 0 {
		// A stretch of the content again further on: prev holds blocks twice.
		from := rapid.IntRange(0, len(old)-1).Draw(t, "repeat/from")
		n := rapid.IntRange(0, min(len(old)-from, 2<<20)).Draw(t, "repeat/len")
		at := rapid.IntRange(0, len(old)).Draw(t, "repeat/at")
		old = slices.Insert(slices.Clone(old), at, old[from:from+n]...)
	}
	edited = slices.Clone(old)
	for i := range rapid.IntRange(0, 3).Draw(t, "edits") {
		at := rapid.IntRange(0, len(edited)).Draw(t, "at")
		n := rapid.IntRange(0, 300<<10).Draw(t, "n")
		if i == 0 && rapid.Bool().Draw(t, "at an end") {
			at = rapid.SampledFrom([]int{0, len(edited)}).Draw(t, "end")
		}
		switch rapid.IntRange(0, 3).Draw(t, "kind") {
		case 0: // overwrite
			for j := at; j < min(at+max(n, 1), len(edited)); j++ {
				edited[j] ^= 0x5a
			}
		case 1: // insert
			edited = slices.Insert(edited, at, randomBytes(n, uint64(at))...)
		case 2: // remove
			edited = slices.Delete(edited, at, min(at+n, len(edited)))
		case 3: // cut the content here
			edited = edited[:at]
		}
	}
	return old, edited
}

// checkedRehash runs Rehash of data against prev (with its sums, or none) and checks
// what fn sees: every block, in order, with its bytes; and the result's fast sums.
func checkedRehash(t fataler, data []byte, prev []proto.Block, prevSums Sums) Result {
	t.Helper()
	res, _ := checkedRehashWork(t, data, prev, prevSums, true)
	return res
}

// checkedRehashWork is checkedRehash that also returns its work; without withSum it
// runs RehashBlocks.
func checkedRehashWork(t fataler, data []byte, prev []proto.Block, prevSums Sums, withSum bool) (Result, rehashWork) {
	t.Helper()
	var seen []proto.Block
	var sums []FastSum
	var off int64
	res, work, err := rehash(bytes.NewReader(data), prev, prevSums, func(b proto.Block, held Data) error {
		d := held.Bytes()
		if _, ok := held.Hold(); ok {
			t.Fatal("Rehash handed over bytes that can be held: its window reuses them")
		}
		if SumHex(d) != b.Hash || int64(len(d)) != b.Size || !bytes.Equal(d, data[off:off+b.Size]) {
			t.Fatalf("block %d (%s at %d): the bytes handed over are not the content's", len(seen), b.Hash, off)
		}
		seen = append(seen, b)
		sums = append(sums, FastSumOf(d))
		off += b.Size
		return nil
	}, withSum)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, res.Blocks) {
		t.Fatalf("fn saw %d blocks, the result lists %d", len(seen), len(res.Blocks))
	}
	if !slices.Equal(sums, res.Fast) {
		t.Fatalf("the result's fast sums are not its blocks'")
	}
	return res, work
}

// Rehash cuts an edited content exactly as Hash does, whatever the edit, taking the
// blocks of the previous version where they come again.
//
// With marks, the whole content's SHA-256 resumes from the last one the unchanged head
// covers: exactly the bytes after it are hashed.
func TestRehashCutsAsHashDoes(t *testing.T) {
	defer setMarkEvery(512 << 10)()
	rapid.Check(t, func(t *rapid.T) {
		old, edited := drawEdit(t)
		prev := mustHash(t, old)
		want := mustHash(t, edited)
		// Blocks found again checked by their SHA-256, or by their fast sums; with the
		// marks or without.
		sums := Sums{
			Fast:  rapid.SampledFrom([][]FastSum{nil, prev.Fast}).Draw(t, "fast"),
			Marks: rapid.SampledFrom([][]Mark{nil, prev.Marks}).Draw(t, "marks"),
		}
		if !rapid.Bool().Draw(t, "withSum") {
			// RehashBlocks: the same blocks and sums, no SHA-256 of the whole content
			// (unless it is one block's).
			got, work := checkedRehashWork(t, edited, prev.Blocks, sums, false)
			if len(want.Blocks) <= 1 && got.SHA256 == want.SHA256 && got.Sum == want.Sum {
				got.SHA256, got.Sum = "", [32]byte{} // at most one block: its hash is the content's
			}
			if work.hashed != 0 || got.SHA256 != "" || got.Sum != ([32]byte{}) || got.Marks != nil {
				t.Fatalf("RehashBlocks hashed %d bytes of the whole content, sum %q, %d marks; want none", work.hashed, got.SHA256, len(got.Marks))
			}
			if !slices.Equal(got.Blocks, want.Blocks) || got.Size != want.Size {
				t.Fatalf("RehashBlocks cut %d blocks, Hash %d", len(got.Blocks), len(want.Blocks))
			}
			if len(want.Blocks) > 1 && !slices.Equal(got.Fast, want.Fast) {
				t.Fatal("RehashBlocks's fast sums are not Hash's")
			}
			return
		}
		got, work := checkedRehashWork(t, edited, prev.Blocks, sums, true)
		if resumed := resumedAt(prev, want, sums.Marks); work.hashed != want.Size-resumed {
			t.Fatalf("the whole content's SHA-256 took %d bytes of %d; want those after %d", work.hashed, want.Size, resumed)
		}
		if !equalMarks(got.Marks, want.Marks) {
			t.Fatalf("Rehash's %d marks are not Hash's %d", len(got.Marks), len(want.Marks))
		}
		if got.SHA256 != want.SHA256 || got.Sum != want.Sum || got.Size != want.Size {
			t.Fatalf("Rehash: %s/%d; Hash: %s/%d", got.SHA256, got.Size, want.SHA256, want.Size)
		}
		if !slices.Equal(got.Blocks, want.Blocks) {
			t.Fatalf("Rehash cut %d blocks, Hash %d: %v\nwant %v", len(got.Blocks), len(want.Blocks), got.Blocks, want.Blocks)
		}
		if len(want.Blocks) > 1 && !slices.Equal(got.Fast, want.Fast) {
			t.Fatal("Rehash's fast sums are not Hash's")
		}
	})
}

// resumedAt returns where Rehash of want against prev, with marks, resumes the whole
// content's SHA-256: at the last mark within the blocks of prev that want starts with.
func resumedAt(prev, want Result, marks []Mark) int64 {
	var head int64
	for i, b := range prev.Blocks {
		lastOfPrev := i == len(prev.Blocks)-1
		if i >= len(want.Blocks) || want.Blocks[i] != b || lastOfPrev && i != len(want.Blocks)-1 {
			break
		}
		head += b.Size
	}
	var at int64
	for _, mk := range marks {
		if mk.Off <= head {
			at = mk.Off
		}
	}
	return at
}

func equalMarks(a, b []Mark) bool {
	return slices.EqualFunc(a, b, func(x, y Mark) bool { return x.Off == y.Off && bytes.Equal(x.State, y.State) })
}

// setMarkEvery sets MarkEvery to n and returns what restores it.
func setMarkEvery(n int64) func() {
	old := MarkEvery
	MarkEvery = n
	return func() { MarkEvery = old }
}

// A one-byte edit in the middle of a large content costs the whole content's SHA-256
// the bytes from the last mark before the edit; the marks of the result are Hash's.
func TestRehashResumesFromTheLastMarkBeforeAnEdit(t *testing.T) {
	old := randomBytes(40<<20, 12)
	prev := mustHash(t, old)
	if len(prev.Marks) != 5 || prev.Marks[0].Off != MarkEvery {
		t.Fatalf("Hash of 40 MiB kept %d marks; want one every %d bytes", len(prev.Marks), MarkEvery)
	}
	edited := slices.Clone(old)
	edited[20<<20+5] ^= 1
	want := mustHash(t, edited)
	got, work := checkedRehashWork(t, edited, prev.Blocks, prev.Sums, true)
	if got.SHA256 != want.SHA256 || !equalMarks(got.Marks, want.Marks) {
		t.Fatalf("Rehash: %s with %d marks; want %s with Hash's %d", got.SHA256, len(got.Marks), want.SHA256, len(want.Marks))
	}
	if work.hashed != 24<<20 {
		t.Errorf("the whole content's SHA-256 took %d bytes; want the 24 MiB after the mark at 16 MiB", work.hashed)
	}
}

// Marks that are not SHA-256 states, or that do not grow, are dropped from the first
// such one on; the content is then hashed from the last good one, and nothing is held
// back past it. A mark that is a valid state but not its prefix's (a damaged index)
// gives another SHA-256 than the content's, which the server's check of a commit
// refuses (the agent then hashes the file again without sums:
// agent.TestDamagedMarkCostsOneRefusedCommit). Marks further apart than MarkEvery are
// waited for up to MarkEvery and four blocks of bytes, then the hash goes on from the
// last one passed.
func TestRehashIgnoresMarksThatAreNotStates(t *testing.T) {
	old := randomBytes(40<<20, 13)
	prev := mustHash(t, old)
	edited := slices.Clone(old)
	edited[30<<20] ^= 1
	garbled := slices.Clone(prev.Marks)
	garbled[1].State = []byte("not a state")
	shrinking := slices.Clone(prev.Marks)
	shrinking[2].Off = shrinking[0].Off
	other := mustHash(t, randomBytes(40<<20, 14)).Marks
	restore := setMarkEvery(32 << 20)
	sparse := mustHash(t, old).Marks // one mark, at 32 MiB: past the edit
	restore()
	bound := int(MarkEvery) + 3*MaxSize // the marks passed, and what is read ahead
	for _, c := range []struct {
		name    string
		marks   []Mark
		resumed int64
		right   bool
		held    int
	}{
		{"not a state", garbled, 8 << 20, true, bound},
		{"not growing", shrinking, 16 << 20, true, bound},
		{"another content's", other, 24 << 20, false, bound},
		{"too far apart", sparse, 0, true, int(MarkEvery) + 5*MaxSize},
	} {
		got, work := checkedRehashWork(t, edited, prev.Blocks, Sums{Fast: prev.Fast, Marks: c.marks}, true)
		if work.hashed != int64(len(edited))-c.resumed {
			t.Errorf("%s: hashed %d bytes; want those after %d", c.name, work.hashed, c.resumed)
		}
		if right := got.SHA256 == SumHex(edited); right != c.right {
			t.Errorf("%s: SHA-256 %s, content's %s; want them equal: %v", c.name, got.SHA256, SumHex(edited), c.right)
		}
		if work.maxHeld > c.held {
			t.Errorf("%s: held back %d bytes; want at most %d", c.name, work.maxHeld, c.held)
		}
	}
}

// A previous list that Hash did not cut (other sizes, wrong hashes, a list of another
// content) still gives the content's blocks: each block's hash is its bytes', and
// together they are the content.
func TestRehashOfAListNotCutByHash(t *testing.T) {
	data := randomBytes(5<<20+12345, 7)
	var fixed []proto.Block
	for off := 0; off < len(data); off += 200 << 10 {
		end := min(off+200<<10, len(data))
		fixed = append(fixed, proto.Block{Hash: SumHex(data[off:end]), Size: int64(end - off)})
	}
	other := mustHash(t, randomBytes(3<<20, 8)).Blocks
	garbled := slices.Clone(mustHash(t, data).Blocks)
	garbled[2].Hash = "not hex"
	garbled[3].Size = 0
	garbled[5].Size = 5 << 20
	for name, prev := range map[string][]proto.Block{"fixed sizes": fixed, "another content": other, "garbled": garbled, "none": nil} {
		t.Run(name, func(t *testing.T) {
			got := checkedRehash(t, data, prev, Sums{})
			if got.SHA256 != SumHex(data) || got.Size != int64(len(data)) {
				t.Fatalf("result %s/%d, want %s/%d", got.SHA256, got.Size, SumHex(data), len(data))
			}
			var sum int64
			for _, b := range got.Blocks {
				sum += b.Size
			}
			if sum != got.Size {
				t.Fatalf("blocks cover %d bytes of %d", sum, got.Size)
			}
		})
	}
}

// Edits (a byte inserted at the start, one changed in the middle) run the chunker only
// around them: every other block is one of the previous version's.
func TestRehashKeepsTheBlocksAroundAnEdit(t *testing.T) {
	old := randomBytes(16<<20, 9)
	prev := mustHash(t, old).Blocks
	edited := slices.Clone(old)
	edited[8<<20] ^= 1
	edited = slices.Insert(edited, 0, 'x')
	got, work := checkedRehashWork(t, edited, prev, Sums{}, true)
	if n := changedBytes(Result{Blocks: prev}, got); n == 0 || n > 4*MaxSize {
		t.Errorf("%d bytes in new blocks; want those around the two edits, at most %d", n, 4*MaxSize)
	}
	if work.chunked > 4*MaxSize {
		t.Errorf("the chunker cut %d bytes of %d; want only those around the two edits", work.chunked, len(edited))
	}
}

// With fast sums, a block found again is taken by its sum and keeps the previous list's
// hash (the trust the server's check of the commit backs: here the list's hash of block
// 2 is not its bytes', and the whole content's SHA-256, taken over every byte, is still
// the content's); without them, by its SHA-256. Sums of another length are ignored.
func TestRehashTakesFoundBlocksByTheirFastSums(t *testing.T) {
	data := randomBytes(4<<20, 11)
	prev := mustHash(t, data)
	listed := slices.Clone(prev.Blocks)
	listed[2].Hash = SumHex([]byte("another block"))
	for _, c := range []struct {
		name string
		fast []FastSum
		want string
	}{
		{"fast sums", prev.Fast, listed[2].Hash},
		{"none", nil, prev.Blocks[2].Hash},
		{"too few", prev.Fast[1:], prev.Blocks[2].Hash},
	} {
		got, err := Rehash(bytes.NewReader(data), listed, Sums{Fast: c.fast}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Blocks[2].Hash != c.want || got.SHA256 != SumHex(data) {
			t.Errorf("%s: block 2 listed as %s, content %s; want %s, %s", c.name, got.Blocks[2].Hash, got.SHA256, c.want, SumHex(data))
		}
	}
}

// A failing fn stops Rehash with its error.
func TestRehashStopsWhenFnFails(t *testing.T) {
	data := randomBytes(4<<20, 10)
	prev := mustHash(t, data).Blocks
	boom := errors.New("boom")
	calls := 0
	_, err := Rehash(bytes.NewReader(data), prev, Sums{}, func(proto.Block, Data) error {
		calls++
		if calls == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 3 {
		t.Fatalf("err %v after %d calls; want boom after 3", err, calls)
	}
}

// fataler is what the helpers need of a *testing.T, *testing.B or *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// BenchmarkRehash measures a one-byte edit in the middle of 64 MiB: Hash of the edited
// content against Rehash with the previous version's blocks, found blocks checked by
// their SHA-256 or by their fast sums.
func BenchmarkRehash(b *testing.B) {
	old := randomBytes(64<<20, 11)
	res := mustHash(b, old)
	prev := res.Blocks
	edited := slices.Clone(old)
	edited[32<<20] ^= 1
	b.Run("Hash", func(b *testing.B) {
		b.SetBytes(int64(len(edited)))
		for b.Loop() {
			if _, err := Hash(bytes.NewReader(edited), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Rehash", func(b *testing.B) {
		b.SetBytes(int64(len(edited)))
		for b.Loop() {
			if _, err := Rehash(bytes.NewReader(edited), prev, Sums{}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RehashFast", func(b *testing.B) {
		b.SetBytes(int64(len(edited)))
		for b.Loop() {
			if _, err := Rehash(bytes.NewReader(edited), prev, Sums{Fast: res.Fast}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RehashMarks", func(b *testing.B) {
		b.SetBytes(int64(len(edited)))
		for b.Loop() {
			if _, err := Rehash(bytes.NewReader(edited), prev, res.Sums, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The blocks alone, the whole content's SHA-256 left to the server.
	b.Run("RehashBlocks", func(b *testing.B) {
		b.SetBytes(int64(len(edited)))
		for b.Loop() {
			if _, err := RehashBlocks(bytes.NewReader(edited), prev, res.Sums, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
