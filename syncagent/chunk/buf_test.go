package chunk

import (
	"bytes"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestBlockBufsComeInClasses(t *testing.T) {
	for _, tc := range []struct{ n, cap int }{
		{1, 1},
		{MinSize - 1, MinSize - 1},
		{MinSize, MinSize},
		{MinSize + 1, 2 * MinSize},
		{300 << 10, 512 << 10},
		{MaxSize, MaxSize},
		{MaxSize + 1, MaxSize + 1},
	} {
		b := GetBuf(tc.n)
		if len(b) != tc.n || cap(b) != tc.cap {
			t.Errorf("GetBuf(%d): len %d cap %d; want cap %d", tc.n, len(b), cap(b), tc.cap)
		}
		PutBuf(b)
	}
}

func TestBlockBufIsReused(t *testing.T) {
	// The pool may drop what it holds at any collection: a reuse is looked for over
	// several tries.
	for range 100 {
		b := GetBuf(200 << 10)
		b[0] = 42
		PutBuf(b)
		if again := GetBuf(150 << 10); len(again) == 150<<10 && again[0] == 42 {
			return
		}
	}
	t.Error("a buffer given back was never handed out again")
}

func TestForeignSliceIsNotPooled(t *testing.T) {
	PutBuf(make([]byte, 100<<10)) // its capacity is not a class size
	for range 10 {
		if b := GetBuf(100 << 10); cap(b) != 128<<10 {
			t.Fatalf("GetBuf(100 KiB) has cap %d; want the class's 128 KiB", cap(b))
		}
	}
}

// A block that Hash hands over and the callee holds keeps its bytes after the hash
// returns and while other hashes reuse the pool, until it is released; a small
// content's block cannot be held.
func TestHeldBlocksKeepTheirBytes(t *testing.T) {
	data := randomBytes(6*MaxSize+777, 7)
	type held struct {
		b       proto.Block
		off     int64
		bytes   []byte
		release func()
	}
	var kept []held
	var off int64
	res, err := HashBlocks(bytes.NewReader(data), func(b proto.Block, d Data) error {
		release, ok := d.Hold()
		if !ok {
			t.Fatalf("block at %d of a large content cannot be held", off)
		}
		kept = append(kept, held{b, off, d.Bytes(), release})
		off += b.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) < 4 || len(kept) != len(res.Blocks) {
		t.Fatalf("%d blocks held of %d", len(kept), len(res.Blocks))
	}
	// Other hashes take buffers from the pool meanwhile; a buffer given back early would
	// be overwritten with their bytes.
	for seed := range uint64(3) {
		mustHash(t, randomBytes(4*MaxSize, 100+seed))
	}
	for _, h := range kept {
		if !bytes.Equal(h.bytes, data[h.off:h.off+h.b.Size]) || SumHex(h.bytes) != h.b.Hash {
			t.Fatalf("held block at %d changed after the hash returned", h.off)
		}
	}
	for _, h := range kept {
		h.release()
		h.release() // a second call does nothing
	}
	_, err = Hash(bytes.NewReader([]byte("small")), func(_ proto.Block, d Data) error {
		if _, ok := d.Hold(); ok {
			t.Error("a small content's block can be held; its buffer is reused")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
