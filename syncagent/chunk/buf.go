package execute

import (
	"sync"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
)

// Block buffers hold a block's bytes on their way: read from a local file for a rebuild
// (an edited large file's unchanged blocks, from its previous version) or to be
// uploaded. They return to a pool once written or sent: a rebuild of
// 1 GiB used to allocate 1 GiB of fresh slices, which kept the collector running under
// the agent's soft memory limit and made the kernel hand the process fresh pages over
// and over (docs/benchmarks.md: the reader's CPU over W7 fell by a quarter). Buffers
// come in classes of chunk.MinSize << c bytes up to chunk.MaxSize; other sizes are
// plain allocations.
var blockBufs [blockBufClasses]sync.Pool

// blockBufClasses is how many buffer sizes the pool keeps.
const blockBufClasses = 5

// blockBufClass returns the class of the smallest pooled buffer that holds n bytes;
// false when n is under the smallest class or over the largest.
func blockBufClass(n int) (int, bool) {
	if n < chunk.MinSize {
		return 0, false
	}
	for c := range blockBufClasses {
		if n <= chunk.MinSize<<c {
			return c, true
		}
	}
	return 0, false
}

// getBlockBuf returns a slice of n bytes (contents undefined), from the pool when n fits
// a class.
func getBlockBuf(n int) []byte {
	c, ok := blockBufClass(n)
	if !ok {
		return make([]byte, n)
	}
	if b, ok := blockBufs[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, chunk.MinSize<<c)
}

// putBlockBuf gives b, from getBlockBuf, back to the pool; its bytes must not be used
// afterwards. A slice of another capacity is left to the collector.
func putBlockBuf(b []byte) {
	c, ok := blockBufClass(cap(b))
	if !ok || cap(b) != chunk.MinSize<<c {
		return
	}
	b = b[:cap(b)]
	blockBufs[c].Put(&b)
}
