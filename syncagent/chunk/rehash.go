package chunk

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Rehash is Hash of content that replaced a version Hash cut into prev (the list the
// index holds for the same path): the result is the same, but where a block of prev
// comes again at the place the new content's next block starts, its bytes are hashed
// once and the chunker is not run over them. An edit then costs the chunker only
// around the change, and the rest one SHA-256 pass per block beside the whole
// content's (FastCDC, about a third of Hash's work, is skipped).
//
// Why the blocks come out the same: FastCDC decides where a block ends from the bytes
// between its start and that end alone, so a block of prev that starts where a new
// block starts and holds the same bytes is cut at the same end. The last block of prev
// ended with its content, not at a cut, so it is taken again only where the new content
// ends with it too. After a changed region the chunker runs until it cuts a block that
// prev holds; the block after it in prev is tried next. prev must come from Hash (a list
// cut with other sizes gives other blocks, which are still the content's).
//
// sums, what the index kept of the version prev was cut from (Result.Sums), makes an
// edit cheaper twice. Its fast sums, when it holds one for each block of prev, are what
// a block of prev found again is checked against, instead of its SHA-256: sums that
// cost a few percent of it. Its marks let the whole content's SHA-256 skip the part
// before the edit: while the content holds prev's blocks from its start, the hash waits,
// and it resumes from the last mark those blocks cover, so only the bytes after it are
// hashed. A block taken by its fast sum keeps prev's hash, and a prefix taken by its
// blocks' sums keeps prev's hash state: should its bytes differ with the same sums (a
// chance of 2^-128 per block, FastSum), the list names blocks the file no longer holds,
// and the server, which hashes the listed blocks' stored bytes, keeps the content of
// the list. Marks that are not SHA-256 states are ignored, and a mark whose state is
// not its prefix's (a damaged index) gives a SHA-256 that the listed blocks do not have,
// which the server's check of a commit refuses. Fast sums of another length than prev
// are ignored.
func Rehash(r io.Reader, prev []proto.Block, sums Sums, fn BlockFunc) (Result, error) {
	res, _, err := rehash(r, prev, sums, fn, true)
	return res, err
}

// RehashBlocks is Rehash without the whole content's SHA-256: unless the content is one
// block, the result's Sum, SHA256 and Marks are left empty, and the bytes are not copied
// for it. It is for a writer that has the server hash the content of the blocks it
// sends (proto.StreamSumRequest): the SHA-256 pass over the whole content, the longest
// part of an edit's rescan, then runs on the server's side.
func RehashBlocks(r io.Reader, prev []proto.Block, sums Sums, fn BlockFunc) (Result, error) {
	res, _, err := rehash(r, prev, sums, fn, false)
	return res, err
}

// rehashWork is what one Rehash cost: the bytes the chunker cut, those the whole
// content's SHA-256 took, and the most bytes held back while the hash waited for a mark.
type rehashWork struct {
	chunked, hashed int64
	maxHeld         int
}

// rehash is Rehash, or RehashBlocks without withSum, that also returns its work.
func rehash(r io.Reader, prev []proto.Block, sums Sums, fn BlockFunc, withSum bool) (Result, rehashWork, error) {
	fast := sums.Fast
	if len(fast) != len(prev) {
		fast = nil
	}
	rh := &rehasher{win: window{r: r}, prev: prev, fast: fast, fn: fn, wholeDone: make(chan struct{})}
	if !withSum {
		if err := rh.run(); err != nil {
			return Result{}, rehashWork{}, err
		}
		rh.res.setOneBlockSum()
		return rh.res, rh.work, nil
	}
	marks := validMarks(sums.Marks)
	rh.prefix = len(marks) > 0
	whole := make(chan wholeItem, 4)
	rh.win.whole = whole
	go rh.hashWhole(whole, marks)
	err := rh.run()
	close(whole)
	<-rh.wholeDone
	if err != nil {
		return Result{}, rehashWork{}, err
	}
	rh.res.Sum, rh.res.SHA256 = rh.sum, hex.EncodeToString(rh.sum[:])
	return rh.res, rh.work, nil
}

// validMarks returns the marks up to the first that is not a SHA-256 state after more
// bytes than the one before.
func validMarks(marks []Mark) []Mark {
	h := sha256.New().(encoding.BinaryUnmarshaler)
	var off int64
	for i, mk := range marks {
		if mk.Off <= off || h.UnmarshalBinary(mk.State) != nil {
			return marks[:i]
		}
		off = mk.Off
	}
	return marks
}

// rehasher is one Rehash.
type rehasher struct {
	win  window
	prev []proto.Block
	fast []FastSum // prev's FastSums, or nil: check found blocks by their SHA-256
	fn   BlockFunc

	pos  int64          // where the next block starts
	next int            // the block of prev tried at pos; len(prev): none
	byID map[string]int // prev's hashes → their first index; built when first needed

	// prefix is set while every block so far was prev's at the same place: the content's
	// SHA-256 may then resume from a mark; wholeItems tell hashWhole how far that holds.
	prefix bool

	work rehashWork

	res       Result
	sum       [sha256.Size]byte
	wholeDone chan struct{}
}

// wholeItem is what hashWhole is told, in the content's order: the content's next
// bytes (data), or that the content holds prev's blocks up to verified, or that it
// departs from them from here on (diverged).
type wholeItem struct {
	data     *[]byte
	verified int64
	diverged bool
}

// hashWhole hashes the content in order from the copies the window hands over. With
// marks (prev's), it holds the bytes back while they may still be prev's, and resumes
// from the last mark the content is known to share before hashing the rest.
func (rh *rehasher) hashWhole(items <-chan wholeItem, marks []Mark) {
	defer close(rh.wholeDone)
	m := newMarker()
	waiting := len(marks) > 0
	var held []*[]byte // the bytes from m.off on, while waiting
	skip := 0          // bytes of held[0] before m.off
	heldBytes := 0     // the bytes of held from m.off on
	// What is held is at most the bytes since the last mark passed and what the window
	// reads ahead of the blocks it checks; marks further apart than MarkEvery (another
	// version's) are not waited for beyond that.
	maxHeld := int(MarkEvery) + 4*MaxSize
	write := func(p []byte) {
		m.write(p)
		rh.work.hashed += int64(len(p))
	}
	flush := func() {
		for i, bp := range held {
			if i == 0 {
				write((*bp)[skip:])
			} else {
				write(*bp)
			}
			wholeBufs.Put(bp)
		}
		held, heldBytes, skip, waiting = nil, 0, 0, false
	}
	for it := range items {
		switch {
		case it.data != nil && waiting:
			held = append(held, it.data)
			heldBytes += len(*it.data)
		case it.data != nil:
			write(*it.data)
			wholeBufs.Put(it.data)
		case it.diverged && waiting:
			flush()
		case it.verified > 0 && waiting:
			k := len(marks)
			for k > 0 && marks[k-1].Off > it.verified {
				k--
			}
			if k > 0 && marks[k-1].Off > m.off {
				mk := marks[k-1]
				drop := int(mk.Off - m.off)
				m.resume(mk, marks[:k])
				for drop > 0 {
					if n := len(*held[0]) - skip; n <= drop {
						wholeBufs.Put(held[0])
						held, heldBytes, skip, drop = held[1:], heldBytes-n, 0, drop-n
					} else {
						skip, heldBytes, drop = skip+drop, heldBytes-drop, 0
					}
				}
			}
			if k == len(marks) {
				flush() // past the last mark: nothing more to skip
			}
		}
		rh.work.maxHeld = max(rh.work.maxHeld, heldBytes)
		if waiting && heldBytes > maxHeld {
			flush() // marks too far apart to wait for the next
		}
	}
	flush()
	m.h.Sum(rh.sum[:0])
	rh.res.Marks = m.marks
}

func (rh *rehasher) run() error {
	for {
		taken, err := rh.follow()
		if err != nil {
			return err
		}
		if !taken {
			end, err := rh.chunk()
			if err != nil || end {
				return err
			}
		}
	}
}

// follow takes the blocks of prev from rh.next on for as long as the content holds them
// at rh.pos, and reports whether it took any.
func (rh *rehasher) follow() (taken bool, err error) {
	defer func() {
		if rh.prefix && (!taken || rh.next < len(rh.prev)) {
			// The content no longer holds prev's blocks in prev's places from here.
			rh.prefix = false
			rh.win.whole <- wholeItem{diverged: true}
		}
	}()
	for rh.next < len(rh.prev) {
		b := rh.prev[rh.next]
		last := rh.next == len(rh.prev)-1
		if b.Size <= 0 || b.Size > MaxSize || !last && b.Size < MinSize {
			return taken, nil // not cut by Hash
		}
		data, err := rh.win.fill(rh.pos, rh.pos+b.Size+1) // one byte more: the end shows
		if err != nil {
			return taken, err
		}
		if int64(len(data)) < b.Size || last && int64(len(data)) != b.Size {
			return taken, nil
		}
		data = data[:b.Size]
		sum := FastSumOf(data)
		if rh.fast != nil {
			if sum != rh.fast[rh.next] {
				return taken, nil
			}
		} else if want, ok := proto.DecodeHash(b.Hash); !ok || sha256.Sum256(data) != want {
			return taken, nil
		}
		if err := rh.emit(b, sum, data); err != nil {
			return taken, err
		}
		rh.next++
		taken = true
		if rh.prefix {
			rh.win.whole <- wholeItem{verified: rh.pos}
		}
	}
	return taken, nil
}

// chunk runs the chunker from rh.pos until it cuts a block of prev that another block
// of prev follows (rh.next is then that one), or to the end of the content (end).
func (rh *rehasher) chunk() (end bool, err error) {
	if rh.byID == nil {
		rh.byID = make(map[string]int, len(rh.prev))
		for i, b := range rh.prev {
			if _, ok := rh.byID[b.Hash]; !ok {
				rh.byID[b.Hash] = i
			}
		}
	}
	c, err := newChunker(&windowReader{rh: rh, at: rh.pos}, 2*MaxSize)
	if err != nil {
		return false, err
	}
	for {
		ch, err := next(c)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		rh.work.chunked += int64(len(ch.Data))
		sum := sha256.Sum256(ch.Data)
		b := proto.Block{Hash: hex.EncodeToString(sum[:]), Size: int64(len(ch.Data))}
		if err := rh.emit(b, FastSumOf(ch.Data), ch.Data); err != nil {
			return false, err
		}
		if i, ok := rh.byID[b.Hash]; ok && i+1 < len(rh.prev) {
			rh.next = i + 1
			return false, nil
		}
	}
}

func (rh *rehasher) emit(b proto.Block, fast FastSum, data []byte) error {
	if rh.fn != nil {
		if err := rh.fn(b, Data{b: data}); err != nil {
			return err
		}
	}
	rh.res.Blocks = append(rh.res.Blocks, b)
	rh.res.Fast = append(rh.res.Fast, fast)
	rh.res.Size += b.Size
	rh.pos += b.Size
	return nil
}

// windowReader reads the content from at on for the chunker, through the window, which
// keeps what lies after rh.pos (the start of the block being cut): when the chunker is
// left, the window still holds the bytes it had read ahead.
type windowReader struct {
	rh *rehasher
	at int64
}

func (w *windowReader) Read(p []byte) (int, error) {
	data, err := w.rh.win.fill(w.rh.pos, w.at+int64(len(p)))
	if err != nil {
		return 0, err
	}
	off := w.at - w.rh.pos
	if off >= int64(len(data)) {
		return 0, io.EOF
	}
	n := copy(p, data[off:])
	w.at += int64(n)
	return n, nil
}

// readSize is how much the window reads at a time.
const readSize = 1 << 20

var wholeBufs = sync.Pool{New: func() any { b := make([]byte, 0, readSize); return &b }}

// window holds a stretch of the content read from r in order, from off on. Every byte
// read is also handed, once and in order, to whole when it is set.
type window struct {
	r     io.Reader
	buf   []byte // the content from off on, in store
	store []byte
	off   int64
	eof   bool
	whole chan<- wholeItem
}

// fill drops what lies before from and reads until the window holds the content up to
// to (or up to the content's end), and returns the content from from on.
func (w *window) fill(from, to int64) ([]byte, error) {
	if d := from - w.off; d > 0 {
		w.buf, w.off = w.buf[d:], from
	}
	for w.off+int64(len(w.buf)) < to && !w.eof {
		if cap(w.buf)-len(w.buf) < readSize {
			// No room after the content held: move it to the start of the store, or
			// into a larger one.
			if cap(w.store)-len(w.buf) < readSize {
				w.store = make([]byte, 0, len(w.buf)+4*readSize)
			}
			w.buf = append(w.store[:0], w.buf...)
		}
		n, err := io.ReadFull(w.r, w.buf[len(w.buf):len(w.buf)+readSize])
		if n > 0 && w.whole != nil {
			bp := wholeBufs.Get().(*[]byte)
			*bp = append((*bp)[:0], w.buf[len(w.buf):len(w.buf)+n]...)
			w.whole <- wholeItem{data: bp}
		}
		w.buf = w.buf[:len(w.buf)+n]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			w.eof = true
		} else if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
	}
	return w.buf, nil
}
