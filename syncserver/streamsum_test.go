package syncserver

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// streamSum asks for the SHA-256 of a stream's content, naming blocks as its list.
func (e *testEnv) streamSum(stream string, blocks []proto.Block) (int, string, []byte) {
	e.t.Helper()
	var size int64
	for _, b := range blocks {
		size += b.Size
	}
	key := proto.ListKeyOf(blocks)
	var resp proto.StreamSumResponse
	req := proto.StreamSumRequest{Size: size, Blocks: len(blocks), List: hex.EncodeToString(key[:])}
	code, raw := e.do("POST", proto.RouteStreams+stream+proto.StreamSumSuffix, req, &resp)
	return code, resp.SHA256, raw
}

// The server answers the SHA-256 of a stream's content once it hashed it, and only
// for the list the stream holds; the stream then serves its commit.
func TestStreamSumIsTheHashOfTheListedContent(t *testing.T) {
	e, logs := newLoggedEnv(t)
	content := randomContent(t, 1<<20+12345)
	const bs = 100 << 10
	it, parts := fileItem("big.bin", content, bs)
	for _, i := range []int{2, 0, 1, 5, 4, 3, 8, 6, 7, 10} { // block 9 not yet
		e.putStreamBlock(parts[i], "s1", i*bs)
	}
	code, _, raw := e.streamSum("s1", it.Blocks)
	if code != http.StatusConflict || !bytes.Contains(raw, []byte("offset 921600")) {
		t.Fatalf("sum of a stream with a gap: %d %s; want 409 naming the gap", code, raw)
	}
	e.putStreamBlock(parts[9], "s1", 9*bs)
	before := e.snapshot()
	swapped := append([]proto.Block{it.Blocks[1], it.Blocks[0]}, it.Blocks[2:]...)
	for name, list := range map[string][]proto.Block{
		"another order":    swapped,
		"fewer blocks":     it.Blocks[:len(it.Blocks)-1],
		"a block too many": append(append([]proto.Block{}, it.Blocks...), it.Blocks[0]),
	} {
		if code, _, raw := e.streamSum("s1", list); code != http.StatusConflict || !bytes.Contains(raw, []byte(`"error"`)) {
			t.Errorf("sum naming %s: %d %s; want 409", name, code, raw)
		}
	}
	code, sum, raw := e.streamSum("s1", it.Blocks)
	if code != http.StatusOK || sum != it.SHA256 {
		t.Fatalf("sum: %d %s; want %s", code, raw, it.SHA256)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("sums changed the store: %+v → %+v", before, after)
	}
	it.Stream = "s1"
	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	if n := streamed(t, logs, "big.bin"); n != len(parts) {
		t.Fatalf("the stream had hashed %d of %d blocks at commit; want all", n, len(parts))
	}
	if code, _, raw := e.streamSum("s1", it.Blocks); code != http.StatusConflict || !bytes.Contains(raw, []byte("not held")) {
		t.Fatalf("sum of a stream its commit took: %d %s; want 409", code, raw)
	}

	// An edit named by reference: the sum is the new content's.
	content[5*bs+3] ^= 1
	it2, parts2 := fileItem("big.bin", content, bs)
	seq := e.snapshot().seq
	if code, _, raw := e.streamStored("s2", 0, "big.bin", seq, 0, 5); code != http.StatusOK {
		t.Fatalf("blocks 0–4: %d %s", code, raw)
	}
	e.putStreamBlock(parts2[5], "s2", 5*bs)
	if code, _, raw := e.streamStored("s2", 6*bs, "big.bin", seq, 6, len(parts2)-6); code != http.StatusOK {
		t.Fatalf("blocks 6–: %d %s", code, raw)
	}
	if code, sum, raw := e.streamSum("s2", it2.Blocks); code != http.StatusOK || sum != sha(content) {
		t.Fatalf("sum of an edit: %d %s; want %s", code, raw, sha(content))
	}
}

func TestBadStreamSumRefused(t *testing.T) {
	e := newEnv(t)
	b := []byte("one block")
	e.putStreamBlock(b, "s", 0)
	list := proto.ListKeyOf([]proto.Block{{Hash: sha(b), Size: int64(len(b))}})
	good := hex.EncodeToString(list[:])
	before := e.snapshot()
	for _, c := range []struct {
		name   string
		stream string
		body   any
		want   int
	}{
		{"bad stream name", "a.b", proto.StreamSumRequest{Size: 9, Blocks: 1, List: good}, http.StatusBadRequest},
		{"not JSON", "s", "{", http.StatusBadRequest},
		{"no size", "s", proto.StreamSumRequest{Blocks: 1, List: good}, http.StatusBadRequest},
		{"no blocks", "s", proto.StreamSumRequest{Size: 9, List: good}, http.StatusBadRequest},
		{"more blocks than bytes", "s", proto.StreamSumRequest{Size: 9, Blocks: 10, List: good}, http.StatusBadRequest},
		{"list not hex", "s", proto.StreamSumRequest{Size: 9, Blocks: 1, List: strings.ToUpper(good)}, http.StatusBadRequest},
		{"unknown stream", "t", proto.StreamSumRequest{Size: 9, Blocks: 1, List: good}, http.StatusConflict},
		{"another list", "s", proto.StreamSumRequest{Size: 9, Blocks: 1, List: sha(b)}, http.StatusConflict},
		{"longer than the stream", "s", proto.StreamSumRequest{Size: 10, Blocks: 1, List: good}, http.StatusConflict},
	} {
		code, raw := e.do("POST", proto.RouteStreams+c.stream+proto.StreamSumSuffix, c.body, nil)
		if code != c.want || !bytes.Contains(raw, []byte(`"error"`)) {
			t.Errorf("%s: %d %s; want %d with an error message", c.name, code, raw, c.want)
		}
	}
	if code, sum, raw := e.streamSum("s", []proto.Block{{Hash: sha(b), Size: int64(len(b))}}); code != http.StatusOK || sum != sha(b) {
		t.Fatalf("the good request after the bad ones: %d %s", code, raw)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused requests changed the store: %+v → %+v", before, after)
	}
}
