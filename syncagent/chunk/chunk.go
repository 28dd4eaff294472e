// Package chunk splits file content into content-defined blocks (FastCDC) and hashes
// them with SHA-256, so that an edit anywhere in a large file changes only the blocks
// around it.
//
// Sizes: the wire cost of a 1-byte edit of a file of size S is, on each hop (agent →
// server, server → agent), about one block plus the file's block list, which is S/avg
// entries of ~40 bytes once the JSON is zstd-compressed (a hex hash compresses to about
// half). For S = 1 GiB the sum avg + 40·S/avg is smallest near avg = 200 KiB; AvgSize =
// 256 KiB gives ≈ 256 KiB + 160 KiB per hop, well under 1 MiB. Smaller blocks would make
// the list dominate; larger ones the changed block. MinSize and MaxSize keep the FastCDC
// defaults (avg/4, avg·4). Without compressed JSON bodies (the server does not take them
// yet) a list entry costs ~95 bytes, ≈ 390 KiB per hop for 1 GiB; getting a 1-byte edit
// under 512 KiB for both hops together needs the list to travel as a delta against the
// base version, which is a protocol extension.
package chunk

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	fastcdc "github.com/jotfs/fastcdc-go"
	"github.com/zeebo/xxh3"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Block sizes of the content-defined chunker.
const (
	MinSize = 64 << 10
	AvgSize = 256 << 10
	MaxSize = 1 << 20
)

// Result is the identity of a whole file.
type Result struct {
	// SHA256 is the lowercase hex SHA-256 of the whole content.
	SHA256 string
	// Sum is the same hash as bytes.
	Sum [sha256.Size]byte
	// Size is the content's length.
	Size int64
	// Blocks lists the content's blocks in order.
	Blocks []proto.Block
	// Sums is what the index keeps beside Blocks for Rehash.
	Sums
}

// Sums is what Hash and Rehash learn of a content beside its block list, which the
// index keeps so that the next Rehash of the path is cheaper.
type Sums struct {
	// Fast holds each block's FastSum, in the order of the blocks, when the content was
	// cut into several blocks; nil otherwise.
	Fast []FastSum
	// Marks holds the whole content's SHA-256 state every MarkEvery bytes, in order; nil
	// for content shorter than that.
	Marks []Mark
}

// Mark is the state of a content's SHA-256 after its first Off bytes (the binary form of
// Go's SHA-256, encoding.BinaryMarshaler). Rehash resumes the whole content's hash from
// the last Mark before an edit, so an edit hashes the content after it, not all of it.
type Mark struct {
	Off   int64
	State []byte
}

// MarkEvery is how many bytes lie between two Marks: the most an edit costs in bytes
// hashed again before it, for 14 KiB of index per GiB of content (a variable for tests).
var MarkEvery int64 = 8 << 20

// marker hashes a content in order and keeps a Mark every MarkEvery bytes.
type marker struct {
	h     hash.Hash
	off   int64
	marks []Mark
}

func newMarker() *marker { return &marker{h: sha256.New()} }

// write hashes p, the content's next bytes.
func (m *marker) write(p []byte) {
	for len(p) > 0 {
		next := (m.off/MarkEvery + 1) * MarkEvery
		if m.off+int64(len(p)) < next {
			m.h.Write(p)
			m.off += int64(len(p))
			return
		}
		k := next - m.off
		m.h.Write(p[:k])
		m.off, p = next, p[k:]
		if state, err := m.h.(encoding.BinaryMarshaler).MarshalBinary(); err == nil {
			m.marks = append(m.marks, Mark{Off: m.off, State: state})
		}
	}
}

// resume sets the hash to mk's state, which must be valid (validMarks).
func (m *marker) resume(mk Mark, before []Mark) {
	if err := m.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(mk.State); err != nil {
		panic(fmt.Sprintf("resume from a mark not checked: %v", err))
	}
	m.off = mk.Off
	m.marks = append(m.marks[:0], before...)
}

// FastSum is the XXH3 (128 bits) of a block's bytes: a check, at a few percent of
// SHA-256's cost, that a block read again still holds the bytes it held when its
// SHA-256 was taken. Other bytes give the same sum by a chance of 2^-128, as unlikely as
// for a SHA-256 cut to 128 bits (rsync trusts the same XXH3-128 as its strong checksum,
// for blocks and whole files); it is not a defence against someone who crafts a
// collision, who could as well write the file. The writer's scan takes a block of the
// previous version by it, and the previous version's SHA-256 state over a prefix whose
// blocks all have their sums (Rehash).
type FastSum [16]byte

// FastSumOf returns the FastSum of data.
func FastSumOf(data []byte) FastSum { return xxh3.Hash128(data).Bytes() }

// tableMu guards fastcdc's package-level lookup table: NewChunker rewrites it (with
// identical values when Seed is 0) while every chunker's Next reads it, so NewChunker
// holds it exclusively and each Next shared. The rewrite is harmless in practice, but a
// data race all the same.
var tableMu sync.RWMutex

// newChunker is the FastCDC chunker of r with this package's block sizes (Hash and
// Rehash cut alike only with the same ones) and a buffer of bufSize bytes.
func newChunker(r io.Reader, bufSize int) (*fastcdc.Chunker, error) {
	tableMu.Lock()
	defer tableMu.Unlock()
	c, err := fastcdc.NewChunker(r, fastcdc.Options{MinSize: MinSize, AverageSize: AvgSize, MaxSize: MaxSize, BufSize: bufSize})
	if err != nil {
		return nil, fmt.Errorf("chunker: %w", err)
	}
	return c, nil
}

// next is c.Next with the lookup table held shared.
func next(c *fastcdc.Chunker) (fastcdc.Chunk, error) {
	tableMu.RLock()
	defer tableMu.RUnlock()
	return c.Next()
}

var smallBufs = sync.Pool{New: func() any { b := make([]byte, MinSize+1); return &b }}

// Hash reads r to its end, splitting it into blocks. fn, when not nil, sees every block
// with its bytes (Data). A content of at most MinSize bytes is one block.
func Hash(r io.Reader, fn BlockFunc) (Result, error) {
	return hashContent(r, fn, true)
}

// HashBlocks is Hash without the whole content's SHA-256 when the content has more
// than one block: the result's Sum, SHA256 and Marks are then left empty (one block's
// hash is the content's). It is for a writer that has the server hash the content of
// the blocks it sends (proto.StreamSumRequest), as RehashBlocks.
func HashBlocks(r io.Reader, fn BlockFunc) (Result, error) {
	return hashContent(r, fn, false)
}

// hashContent is Hash, or HashBlocks without withSum.
func hashContent(r io.Reader, fn BlockFunc, withSum bool) (Result, error) {
	// Read the first MinSize+1 bytes: most files are small and need no chunker.
	bp := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(bp)
	head := *bp
	n, err := io.ReadFull(r, head)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		data := head[:n]
		res := Result{Size: int64(n), Sum: sha256.Sum256(data)} // too short for a mark
		res.SHA256 = hex.EncodeToString(res.Sum[:])
		if n == 0 {
			return res, nil
		}
		b := proto.Block{Hash: res.SHA256, Size: int64(n)}
		res.Blocks = []proto.Block{b}
		if fn != nil {
			if err := fn(b, Data{b: data}); err != nil {
				return Result{}, err
			}
		}
		return res, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("read: %w", err)
	}
	c, err := newChunker(io.MultiReader(&onceReader{b: head}, r), 4*MaxSize)
	if err != nil {
		return Result{}, err
	}
	whole := newMarker()
	// Three stages on their own goroutines, so that a large file keeps two cores busy:
	// this one finds the boundaries (FastCDC) and copies each chunk out of the
	// chunker's buffer; the next hashes the blocks and hands them to fn, in order; the
	// last hashes the whole content and takes the blocks' fast sums (where they cost the
	// least: about 5 % of Hash's time there, 15 % in the other stages). Each passes the
	// copy on; fn may hold it beyond the last stage.
	hashCh := make(chan *sharedBuf, 4)
	wholeCh := make(chan *sharedBuf, 4)
	wholeDone := make(chan struct{})
	var fast []FastSum
	go func() {
		defer close(wholeDone)
		for buf := range wholeCh {
			if withSum {
				whole.write(buf.b)
			}
			fast = append(fast, FastSumOf(buf.b))
			buf.release()
		}
	}()
	var res Result
	var fnErr error
	hashDone := make(chan struct{})
	stop := make(chan struct{}) // closed when fn fails: the chunker stops early
	go func() {
		defer close(hashDone)
		defer close(wholeCh)
		for buf := range hashCh {
			if fnErr != nil {
				buf.release()
				continue
			}
			sum := sha256.Sum256(buf.b)
			b := proto.Block{Hash: hex.EncodeToString(sum[:]), Size: int64(len(buf.b))}
			res.Blocks = append(res.Blocks, b)

			res.Size += b.Size
			if fn != nil {
				if err := fn(b, Data{b: buf.b, shared: buf}); err != nil {
					fnErr = err
					close(stop)
					buf.release()
					continue
				}
			}
			wholeCh <- buf
		}
	}()
	var loopErr error
loop:
	for {
		ch, err := next(c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			loopErr = fmt.Errorf("read: %w", err)
			break
		}
		buf := newSharedBuf(ch.Data)
		select {
		case hashCh <- buf:
		case <-stop:
			buf.release()
			break loop
		}
	}
	close(hashCh)
	<-hashDone
	<-wholeDone
	if fnErr != nil {
		return Result{}, fnErr
	}
	if loopErr != nil {
		return Result{}, loopErr
	}
	res.Fast = fast
	if withSum {
		res.setSum(whole.h)
		res.Marks = whole.marks
	} else {
		res.setOneBlockSum()
	}
	return res, nil
}

// setOneBlockSum sets Sum and SHA256 of a content of at most one block: its block's
// hash, or the empty content's.
func (r *Result) setOneBlockSum() {
	switch len(r.Blocks) {
	case 0:
		r.Sum = sha256.Sum256(nil)
		r.SHA256 = hex.EncodeToString(r.Sum[:])
	case 1:
		r.Sum, _ = proto.DecodeHash(r.Blocks[0].Hash)
		r.SHA256 = r.Blocks[0].Hash
	}
}

// setSum ends the whole-content hash h into Sum and SHA256.
func (r *Result) setSum(h hash.Hash) {
	h.Sum(r.Sum[:0])
	r.SHA256 = hex.EncodeToString(r.Sum[:])
}

// onceReader returns b, then EOF, without copying b first.
type onceReader struct{ b []byte }

func (o *onceReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, o.b)
	o.b = o.b[n:]
	return n, nil
}

// SumHex returns the lowercase hex SHA-256 of b.
func SumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
