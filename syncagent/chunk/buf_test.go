package execute

import (
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
)

func TestBlockBufsComeInClasses(t *testing.T) {
	for _, tc := range []struct{ n, cap int }{
		{1, 1},
		{chunk.MinSize - 1, chunk.MinSize - 1},
		{chunk.MinSize, chunk.MinSize},
		{chunk.MinSize + 1, 2 * chunk.MinSize},
		{300 << 10, 512 << 10},
		{chunk.MaxSize, chunk.MaxSize},
		{chunk.MaxSize + 1, chunk.MaxSize + 1},
	} {
		b := getBlockBuf(tc.n)
		if len(b) != tc.n || cap(b) != tc.cap {
			t.Errorf("getBlockBuf(%d): len %d cap %d; want cap %d", tc.n, len(b), cap(b), tc.cap)
		}
		putBlockBuf(b)
	}
}

func TestBlockBufIsReused(t *testing.T) {
	// The pool may drop what it holds at any collection: a reuse is looked for over
	// several tries.
	for range 100 {
		b := getBlockBuf(200 << 10)
		b[0] = 42
		putBlockBuf(b)
		if again := getBlockBuf(150 << 10); len(again) == 150<<10 && again[0] == 42 {
			return
		}
	}
	t.Error("a buffer given back was never handed out again")
}

func TestForeignSliceIsNotPooled(t *testing.T) {
	putBlockBuf(make([]byte, 100<<10)) // its capacity is not a class size
	for range 10 {
		if b := getBlockBuf(100 << 10); cap(b) != 128<<10 {
			t.Fatalf("getBlockBuf(100 KiB) has cap %d; want the class's 128 KiB", cap(b))
		}
	}
}
