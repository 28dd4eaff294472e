package proto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ContentTypeCommit is a POST RouteCommit body that carries inlined content as raw bytes
// instead of base64 inside the JSON: a sequence of frames, each a uvarint length and that
// many bytes. The first frame is a CommitFramesHeader (JSON); then each item is two
// frames, its CommitItem as JSON without "data", and its inlined content (empty when it
// inlines none). Decoding base64 strings out of JSON was most of a server's CPU in the
// first sync of many small files, and base64 made the bytes a third larger.
const ContentTypeCommit = "application/vnd.syncedfolder.commit"

// CommitFramesHeader is the first frame of a ContentTypeCommit body.
type CommitFramesHeader struct {
	// Items is how many items follow.
	Items int `json:"items"`
	// OmitBlocks is CommitRequest.OmitBlocks.
	OmitBlocks bool `json:"omitBlocks,omitempty"`
	// CompactResults is CommitRequest.CompactResults.
	CompactResults bool `json:"compactResults,omitempty"`
	// Deletes is CommitRequest.Deletes.
	Deletes []DeleteItem `json:"deletes,omitempty"`
}

// WriteFrame writes one frame: b's length as a uvarint, then b.
func WriteFrame(w io.Writer, b []byte) error {
	var n [binary.MaxVarintLen64]byte
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// ErrFrameTooLarge is a frame longer than the reader allows.
var ErrFrameTooLarge = errors.New("frame too large")

// ReadFrame reads one frame of at most max bytes. It returns io.EOF only when r ends
// before the frame begins, and io.ErrUnexpectedEOF for a cut frame.
func ReadFrame(r *bufio.Reader, max int64) ([]byte, error) {
	return ReadFrameWith(r, max, nil)
}

// ReadFrameWith is ReadFrame that reads the frame into alloc(n) (n bytes long) when
// alloc is not nil and gives memory for it (not nil).
func ReadFrameWith(r *bufio.Reader, max int64, alloc func(n int) []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("frame length: %w", err)
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, max)
	}
	var b []byte
	if alloc != nil {
		b = alloc(int(n))
	}
	if b == nil {
		// Allocated as the bytes arrive beyond 1 MiB: a length alone commits no memory.
		b = make([]byte, min(n, 1<<20))
	}
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, cutFrame(err)
	}
	if uint64(len(b)) < n {
		rest, err := io.ReadAll(io.LimitReader(r, int64(n)-int64(len(b))))
		if err != nil {
			return nil, cutFrame(err)
		}
		if b = append(b, rest...); uint64(len(b)) < n {
			return nil, io.ErrUnexpectedEOF
		}
	}
	return b, nil
}

func cutFrame(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
