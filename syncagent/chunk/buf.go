package chunk

import (
	"sync"
	"sync/atomic"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Block buffers hold a block's bytes on their way: cut from a file by Hash (and held
// by the upload that sends them, Data.Hold), or read from a local file for a rebuild
// (an edited large file's unchanged blocks, from its previous version). They return to
// a pool once written or sent: a rebuild of 1 GiB used to allocate 1 GiB of fresh
// slices, which kept the collector running under the agent's soft memory limit and
// made the kernel hand the process fresh pages over and over (docs/benchmarks.md: the
// reader's CPU over W7 fell by a quarter). Buffers come in classes of MinSize << c bytes
// up to MaxSize; other sizes are plain allocations.
var blockBufs [blockBufClasses]sync.Pool

// blockBufClasses is how many buffer sizes the pool keeps.
const blockBufClasses = 5

// blockBufClass returns the class of the smallest pooled buffer that holds n bytes;
// false when n is under the smallest class or over the largest.
func blockBufClass(n int) (int, bool) {
	if n < MinSize {
		return 0, false
	}
	for c := range blockBufClasses {
		if n <= MinSize<<c {
			return c, true
		}
	}
	return 0, false
}

// GetBuf returns a slice of n bytes (contents undefined), from the pool when n fits
// a class.
func GetBuf(n int) []byte {
	c, ok := blockBufClass(n)
	if !ok {
		return make([]byte, n)
	}
	if b, ok := blockBufs[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, MinSize<<c)
}

// PutBuf gives b, from GetBuf, back to the pool; its bytes must not be used
// afterwards. A slice of another capacity is left to the collector.
func PutBuf(b []byte) {
	c, ok := blockBufClass(cap(b))
	if !ok || cap(b) != MinSize<<c {
		return
	}
	b = b[:cap(b)]
	blockBufs[c].Put(&b)
}

// BlockFunc takes each block that Hash or Rehash cuts, in order: its entry and its
// bytes. An error stops the hash, which returns it.
type BlockFunc func(b proto.Block, data Data) error

// Data is a block's bytes as a BlockFunc gets them: valid during the call, and after
// it only while held.
type Data struct {
	b      []byte
	shared *sharedBuf // nil: the bytes sit in a buffer the hash reuses
}

// Bytes returns the block's bytes.
func (d Data) Bytes() []byte { return d.b }

// Hold keeps the bytes valid after the call until release is called (once); it must be
// called during the call. ok is false when the bytes cannot be held (a small content's,
// Rehash's window): the callee copies what it keeps. An upload that holds a large
// file's blocks sends them without a second copy of every byte.
func (d Data) Hold() (release func(), ok bool) {
	if d.shared == nil {
		return nil, false
	}
	d.shared.refs.Add(1)
	return sync.OnceFunc(d.shared.release), true
}

// sharedBuf is a block buffer (GetBuf) that goes back to the pool when its last holder
// releases it.
type sharedBuf struct {
	b    []byte
	refs atomic.Int32
}

// newSharedBuf returns a copy of data in a block buffer, held once.
func newSharedBuf(data []byte) *sharedBuf {
	s := &sharedBuf{b: GetBuf(len(data))}
	copy(s.b, data)
	s.refs.Store(1)
	return s
}

func (s *sharedBuf) release() {
	if s.refs.Add(-1) == 0 {
		PutBuf(s.b)
	}
}
