package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ContentTypeBlocks is the media type of a RouteBlocksGet answer: one record per
// requested hash, in request order, each a BlockRecordHeaderSize-byte header (kind, the
// block's SHA-256, the length of what follows as a big-endian uint32) and then that many
// bytes.
const ContentTypeBlocks = "application/vnd.syncedfolder.blocks"

// BlockRecordHeaderSize is the size of a block record's header.
const BlockRecordHeaderSize = 1 + 32 + 4

// Kinds of block record.
const (
	// BlockRecordPlain carries the block's bytes as they are.
	BlockRecordPlain byte = 0
	// BlockRecordZstd carries the block as one zstd frame (only to a client that sent
	// Accept-Encoding: zstd).
	BlockRecordZstd byte = 1
	// BlockRecordMissing says the server does not hold the block; nothing follows.
	BlockRecordMissing byte = 2
)

// BlockRecord is one record of a RouteBlocksGet answer.
type BlockRecord struct {
	Kind byte
	Sum  [32]byte
	Data []byte
}

// AppendBlockRecordHeader appends the header of a record of kind for the block sum whose
// payload is n bytes long.
func AppendBlockRecordHeader(buf []byte, kind byte, sum [32]byte, n int) []byte {
	buf = append(buf, kind)
	buf = append(buf, sum[:]...)
	return binary.BigEndian.AppendUint32(buf, uint32(n))
}

// ReadBlockRecord reads the next record from r into buf (reused when large enough); the
// payload may not exceed maxPayload bytes. It returns io.EOF at a clean end of the
// answer, io.ErrUnexpectedEOF for a cut one.
func ReadBlockRecord(r io.Reader, buf []byte, maxPayload int64) (BlockRecord, error) {
	var h [BlockRecordHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return BlockRecord{}, err
	}
	rec := BlockRecord{Kind: h[0]}
	copy(rec.Sum[:], h[1:33])
	n := int64(binary.BigEndian.Uint32(h[33:]))
	switch rec.Kind {
	case BlockRecordPlain, BlockRecordZstd:
	case BlockRecordMissing:
		if n != 0 {
			return rec, fmt.Errorf("block record: a missing block with %d bytes", n)
		}
		return rec, nil
	default:
		return rec, fmt.Errorf("block record: unknown kind %d", rec.Kind)
	}
	if n > maxPayload {
		return rec, fmt.Errorf("block record: %d bytes, at most %d", n, maxPayload)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	rec.Data = buf[:n]
	if _, err := io.ReadFull(r, rec.Data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return rec, err
	}
	return rec, nil
}
