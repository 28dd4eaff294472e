package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// blocksHandler answers RouteBlocksGet from blocks; corrupt replaces the bytes of a block
// with other bytes, cut stops the answer after that many records.
func blocksHandler(t *testing.T, blocks map[string][]byte, corrupt string, cut int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != proto.RouteBlocksGet {
			writeJSON(w, http.StatusMethodNotAllowed, proto.Error{Error: "method not allowed"})
			return
		}
		var req proto.GetBlocksRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("decode: %v", err)
		}
		w.Header().Set("Content-Type", proto.ContentTypeBlocks)
		enc, _ := zstd.NewWriter(nil)
		var out []byte
		for i, h := range req.Hashes {
			if i == cut {
				break
			}
			var sum [32]byte
			_, _ = hex.Decode(sum[:], []byte(h))
			data, ok := blocks[h]
			switch {
			case !ok:
				out = proto.AppendBlockRecordHeader(out, proto.BlockRecordMissing, sum, 0)
			case h == corrupt:
				out = proto.AppendBlockRecordHeader(out, proto.BlockRecordPlain, sum, len(data))
				out = append(out, bytes.ToUpper(data)...)
			case i%2 == 0:
				z := enc.EncodeAll(data, nil)
				out = proto.AppendBlockRecordHeader(out, proto.BlockRecordZstd, sum, len(z))
				out = append(out, z...)
			default:
				out = proto.AppendBlockRecordHeader(out, proto.BlockRecordPlain, sum, len(data))
				out = append(out, data...)
			}
		}
		_, _ = w.Write(out)
	})
}

func TestGetBlocks(t *testing.T) {
	blocks := map[string][]byte{}
	var hashes []string
	for _, s := range []string{"first block", "second block, a little longer", "third"} {
		h := hashOf([]byte(s))
		blocks[h] = []byte(s)
		hashes = append(hashes, h)
	}
	absent := hashOf([]byte("not stored"))
	ask := []string{hashes[0], absent, hashes[1], hashes[2]}
	ctx := context.Background()

	c := newTestClient(t, blocksHandler(t, blocks, "", -1), nil)
	got, err := c.GetBlocks(ctx, ask)
	if err != nil || len(got) != 4 {
		t.Fatalf("GetBlocks = %q, %v", got, err)
	}
	for i, h := range ask {
		if !bytes.Equal(got[i], blocks[h]) || (got[i] == nil) != (h == absent) {
			t.Errorf("block %d: %q, want %q", i, got[i], blocks[h])
		}
	}

	c = newTestClient(t, blocksHandler(t, blocks, hashes[1], -1), nil)
	if _, err := c.GetBlocks(ctx, ask); err == nil {
		t.Error("bytes that do not hash to their name were accepted")
	}

	c = newTestClient(t, blocksHandler(t, blocks, "", 2), nil)
	if _, err := c.GetBlocks(ctx, ask); !IsTransient(err) {
		t.Errorf("a cut answer: %v; want a transient error", err)
	}

	// A server without the call answers 405 (or 404): the caller falls back.
	c = newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, proto.Error{Error: "method not allowed"})
	}), nil)
	if _, err := c.GetBlocks(ctx, ask); !errors.Is(err, ErrNotSupported) {
		t.Errorf("older server: %v; want ErrNotSupported", err)
	}
}

// GetBlocksInto reads the blocks into the buffer while it has room, one after the
// other and each capped at its length, and allocates those that do not fit.
func TestGetBlocksIntoFillsTheBuffer(t *testing.T) {
	blocks := map[string][]byte{}
	var ask []string
	for _, s := range []string{"first block", "second block, a little longer", "third", "fourth, which does not fit"} {
		h := hashOf([]byte(s))
		blocks[h] = []byte(s)
		ask = append(ask, h)
	}
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req proto.GetBlocksRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("decode: %v", err)
		}
		w.Header().Set("Content-Type", proto.ContentTypeBlocks)
		var out []byte
		for _, h := range req.Hashes {
			sum, _ := proto.DecodeHash(h)
			out = proto.AppendBlockRecordHeader(out, proto.BlockRecordPlain, sum, len(blocks[h]))
			out = append(out, blocks[h]...)
		}
		_, _ = w.Write(out)
	}), nil)
	buf := make([]byte, 50)
	got, err := c.GetBlocksInto(context.Background(), ask, buf)
	if err != nil || len(got) != len(ask) {
		t.Fatalf("GetBlocksInto = %q, %v", got, err)
	}
	off := 0
	for i, h := range ask {
		if !bytes.Equal(got[i], blocks[h]) || cap(got[i]) != len(got[i]) {
			t.Errorf("block %d: %q (cap %d), want %q", i, got[i], cap(got[i]), blocks[h])
		}
		fits := off+len(blocks[h]) <= len(buf)
		if inBuf := fits && &buf[off] == &got[i][0]; inBuf != fits {
			t.Errorf("block %d: in the buffer at %d: %v; want %v", i, off, inBuf, fits)
		}
		if fits {
			off += len(blocks[h])
		}
	}
}

func TestGetBlocksRefusesAnotherBlockInItsPlace(t *testing.T) {
	a, b := []byte("block a"), []byte("block b")
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", proto.ContentTypeBlocks)
		out := proto.AppendBlockRecordHeader(nil, proto.BlockRecordPlain, sha256.Sum256(b), len(b))
		_, _ = w.Write(append(out, b...))
	}), nil)
	if _, err := c.GetBlocks(context.Background(), []string{hashOf(a)}); err == nil {
		t.Error("a record of another block than the one asked for was accepted")
	}
}

func TestStreamSumNamesTheList(t *testing.T) {
	blocks := []proto.Block{{Hash: hashOf([]byte("a")), Size: 1}, {Hash: hashOf([]byte("bc")), Size: 2}}
	key := proto.ListKeyOf(blocks)
	answer := hashOf([]byte("abc"))
	var got proto.StreamSumRequest
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != proto.RouteStreams+"s1"+proto.StreamSumSuffix {
			writeJSON(w, http.StatusNotFound, proto.Error{Error: "no route " + r.URL.Path})
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			writeJSON(w, http.StatusBadRequest, proto.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, proto.StreamSumResponse{SHA256: answer})
	})
	c := newTestClient(t, h, nil)
	sum, err := c.StreamSum(context.Background(), "s1", blocks)
	if err != nil || sum != answer {
		t.Fatalf("StreamSum = %q, %v; want %s", sum, err, answer)
	}
	if want := (proto.StreamSumRequest{Size: 3, Blocks: 2, List: hex.EncodeToString(key[:])}); got != want {
		t.Fatalf("request %+v; want %+v", got, want)
	}
	if _, err := c.StreamSum(context.Background(), "s2", blocks); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("StreamSum answered 404: %v; want ErrNotSupported", err)
	}
	answer = "not a hash"
	if _, err := c.StreamSum(context.Background(), "s1", blocks); err == nil {
		t.Fatal("StreamSum took an answer that is not a SHA-256")
	}
}
