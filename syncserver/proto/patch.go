package proto

import (
	"crypto/sha256"
	"fmt"
)

// A block patch uploads a new block as a change of a block the server holds (its base):
// the client asks for the base's chunk sums (GET RouteBlocks{base}/sums → BlockSums),
// finds how many bytes of its block's start and end equal the base's, and sends only
// the bytes between (PUT RouteBlocks{hash}?base=B&head=H&tail=T). The server rebuilds
// the block as base[:H] + body + base[len(base)-T:] and checks its hash as for any
// upload. An edit inside a block of an edited file then costs a few KiB on the wire
// instead of the block. Optional: an older server answers 404 to the sums and, ignoring
// the query, 400 to the patch (the body does not hash to the block's name); the client
// then sends the block whole.

// SumsSuffix follows RouteBlocks{hash} in GET RouteBlocks{hash}/sums.
const SumsSuffix = "/sums"

// SumChunk is the span of one chunk sum, and the granularity of a patch's head and tail.
const SumChunk = 4096

// sumBytes is the length of one chunk sum: a prefix of the chunk's SHA-256. A sum that
// matches by accident only makes the rebuilt block fail its hash, and the client then
// sends it whole.
const sumBytes = 8

// BlockSums is the answer of GET RouteBlocks{hash}/sums: the chunk sums of a block, of
// its whole SumChunk-byte chunks counted from its start (Head) and from its end (Tail).
type BlockSums struct {
	// Size is the block's size in bytes.
	Size int64 `json:"size"`
	// Head holds the sums of the chunks at 0, SumChunk, 2·SumChunk, …, 8 bytes each.
	Head []byte `json:"head"`
	// Tail holds the sums of the chunks ending at Size, Size−SumChunk, …, 8 bytes each.
	Tail []byte `json:"tail"`
}

// SumsOf returns the chunk sums of data.
func SumsOf(data []byte) BlockSums {
	n := len(data) / SumChunk
	s := BlockSums{Size: int64(len(data)), Head: make([]byte, 0, n*sumBytes), Tail: make([]byte, 0, n*sumBytes)}
	for i := range n {
		h := sha256.Sum256(data[i*SumChunk : (i+1)*SumChunk])
		s.Head = append(s.Head, h[:sumBytes]...)
	}
	if len(data)%SumChunk == 0 {
		s.Tail = append(s.Tail, reverseChunks(s.Head)...)
		return s
	}
	for i := range n {
		end := len(data) - i*SumChunk
		h := sha256.Sum256(data[end-SumChunk : end])
		s.Tail = append(s.Tail, h[:sumBytes]...)
	}
	return s
}

// reverseChunks returns the sums of b in reverse order.
func reverseChunks(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := len(b) - sumBytes; i >= 0; i -= sumBytes {
		out = append(out, b[i:i+sumBytes]...)
	}
	return out
}

// Validate checks that s is a well-formed answer.
func (s BlockSums) Validate() error {
	n := int(s.Size / SumChunk)
	if s.Size < 0 || len(s.Head) != n*sumBytes || len(s.Tail) != n*sumBytes {
		return fmt.Errorf("block sums: %d and %d bytes of sums for a block of %d bytes; want %d each",
			len(s.Head), len(s.Tail), s.Size, n*sumBytes)
	}
	return nil
}

// PatchOf returns how many bytes at the start (head) and at the end (tail) of data
// equal the base's, by the base's sums, in whole chunks; head + tail never exceeds the
// size of data or of the base.
func PatchOf(base BlockSums, data []byte) (head, tail int64) {
	mine := SumsOf(data)
	room := min(int64(len(data)), base.Size)
	head = int64(commonSums(mine.Head, base.Head)) * SumChunk
	tail = int64(commonSums(mine.Tail, base.Tail)) * SumChunk
	tail = min(tail, room-head)
	return head, tail
}

// commonSums returns how many sums a and b have in common from their start.
func commonSums(a, b []byte) int {
	n := 0
	for i := 0; i+sumBytes <= len(a) && i+sumBytes <= len(b); i += sumBytes {
		if string(a[i:i+sumBytes]) != string(b[i:i+sumBytes]) {
			break
		}
		n++
	}
	return n
}
