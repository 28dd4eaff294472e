package syncserver

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/internal/entropy"
	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// handleGetBlocks answers POST /v1/blocks/get: the bytes of many blocks in one answer,
// one record per requested hash in request order (proto.ReadBlockRecord). A reader
// fetching 10,000 small files makes a few dozen requests instead of 10,000. A block the
// server lacks (or found damaged) is a "missing" record; any other failure once the
// answer has begun cuts the connection, so a client never takes a short answer for a
// whole one. Each block read from a pack is checked against its hash (blobs.Open), and
// the client checks every block again.
func (s *Server) handleGetBlocks(w http.ResponseWriter, r *http.Request) {
	req, ok := s.hashesRequest(w, r)
	if !ok {
		return
	}
	zstdOK := acceptsZstd(r)
	h := w.Header()
	h.Set("Content-Type", proto.ContentTypeBlocks)
	h.Add("Vary", "Accept-Encoding")
	w.WriteHeader(http.StatusOK)
	bw := getBlocksWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		getBlocksWriters.Put(bw)
	}()
	bufp := getBlocksBufs.Get().(*[]byte)
	defer getBlocksBufs.Put(bufp)
	var enc *zstd.Encoder
	if zstdOK {
		enc = zstdEncoders.Get()
		defer zstdEncoders.Put(enc)
	}
	var hdr []byte
	for _, hash := range req.Hashes {
		var sum [32]byte
		_, _ = hex.Decode(sum[:], []byte(hash)) // validated by decodeMissing
		data, release, err := s.readBlock(hash, bufp)
		kind := proto.BlockRecordPlain
		switch {
		case errors.Is(err, blobs.ErrNotFound) || errors.Is(err, blobs.ErrCorrupt):
			kind, data = proto.BlockRecordMissing, nil
		case err != nil:
			s.log.Error("send blocks", "requestId", infoFrom(r.Context()).id, "block", hash, "err", err)
			panic(http.ErrAbortHandler)
		case enc != nil && len(data) > 512 && entropy.Compressible(middle(data, blockSample)):
			if z := enc.EncodeAll(data, nil); len(z) < len(data) {
				kind, data = proto.BlockRecordZstd, z
			}
		}
		hdr = proto.AppendBlockRecordHeader(hdr[:0], kind, sum, len(data))
		_, err = bw.Write(hdr)
		if err == nil {
			_, err = bw.Write(data) // bw copies what it keeps: data may go back to the store
		}
		release()
		if err != nil {
			return // the client went away
		}
	}
	if err := bw.Flush(); err != nil {
		s.log.Info("send blocks", "requestId", infoFrom(r.Context()).id, "err", err)
	}
}

// readBlock returns a whole block and what frees it: the store's own buffer of a packed
// block (wholeBlock), or *buf (grown as needed) filled from a loose file.
func (s *Server) readBlock(hash string, buf *[]byte) (data []byte, release func(), err error) {
	f, size, err := s.blocks.Open(hash)
	if err != nil {
		return nil, func() {}, err
	}
	if w, ok := f.(wholeBlock); ok {
		return w.Bytes(), func() { f.Close() }, nil
	}
	defer f.Close()
	if int64(cap(*buf)) < size {
		*buf = make([]byte, size)
	}
	data = (*buf)[:size]
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, func() {}, fmt.Errorf("read block %q: %w", hash, err)
	}
	return data, func() {}, nil
}

// wholeBlock is a block reader that holds the whole block in memory already (a packed
// block's, blobs.Store.Open).
type wholeBlock interface{ Bytes() []byte }

// blockSample is the most of a block that the entropy check of a download reads. 4 KiB
// tells random-looking bytes (above 7.9 bits per byte) from text or tables (under 6) as
// well as 16 KiB does, and a reader of 10,000 small files had the server read every one
// of their 80 MB for the check (5 % of its CPU in W1).
const blockSample = 4 << 10

// middle returns up to n bytes from the middle of b: the sample an entropy check reads.
func middle(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	start := len(b)/2 - n/2
	return b[start : start+n]
}

// getBlocksWriters holds the write buffers of batched block answers.
var getBlocksWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// getBlocksBufs holds the read buffers of batched block answers.
var getBlocksBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}
