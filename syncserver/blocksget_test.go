package syncserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// readRecords parses a RouteBlocksGet answer.
func readRecords(t *testing.T, raw []byte) []proto.BlockRecord {
	t.Helper()
	var out []proto.BlockRecord
	r := bytes.NewReader(raw)
	for {
		rec, err := proto.ReadBlockRecord(r, nil, 1<<30)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("record %d: %v", len(out), err)
		}
		out = append(out, rec)
	}
}

func TestGetBlocksAnswersEveryHashInOrder(t *testing.T) {
	e := newEnv(t)
	text := bytes.Repeat([]byte("compressible text "), 100)
	random := make([]byte, 8<<10)
	_, _ = rand.Read(random)
	tiny := []byte("tiny")
	th, rh, yh := e.putBlock(text), e.putBlock(random), e.putBlock(tiny)
	big := bigContent(2048, 'b') // a loose block, not packed
	bh := e.putBlock(big)
	packed := bytes.Repeat([]byte("inlined in a commit, so packed "), 40)
	e.commit(inlineItem("packed.txt", 0, packed))
	ph := sha(packed)
	absent := sha([]byte("absent"))
	ask := []string{th, absent, rh, yh, bh, th, ph}
	want := [][]byte{text, nil, random, tiny, big, text, packed}
	dec, _ := zstd.NewReader(nil)
	for _, accept := range []string{"", "zstd"} {
		code, raw := e.do("POST", proto.RouteBlocksGet, proto.GetBlocksRequest{Hashes: ask}, nil, "Accept-Encoding", accept)
		if code != 200 {
			t.Fatalf("accept %q: %d %s", accept, code, raw)
		}
		recs := readRecords(t, raw)
		if len(recs) != len(ask) {
			t.Fatalf("accept %q: %d records for %d hashes", accept, len(recs), len(ask))
		}
		for i, rec := range recs {
			if fmt.Sprintf("%x", rec.Sum) != ask[i] {
				t.Errorf("accept %q: record %d is block %x, want %s", accept, i, rec.Sum, ask[i])
			}
			data := rec.Data
			switch rec.Kind {
			case proto.BlockRecordMissing:
				data = nil
			case proto.BlockRecordZstd:
				if accept != "zstd" {
					t.Errorf("record %d compressed for a client that did not ask for it", i)
				}
				var err error
				if data, err = dec.DecodeAll(rec.Data, nil); err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
			if !bytes.Equal(data, want[i]) || (rec.Kind == proto.BlockRecordMissing) != (want[i] == nil) {
				t.Errorf("accept %q: record %d (kind %d): %d bytes, want %d", accept, i, rec.Kind, len(data), len(want[i]))
			}
		}
		if accept == "zstd" && (recs[0].Kind != proto.BlockRecordZstd || recs[2].Kind != proto.BlockRecordPlain) {
			t.Errorf("text as kind %d, random bytes as kind %d; want zstd and plain", recs[0].Kind, recs[2].Kind)
		}
	}
	// The Go client reads the same answer and checks every block.
	cl, err := client.New(client.Options{BaseURL: e.http.URL})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.GetBlocks(context.Background(), ask)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ask {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("client: block %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
}

func TestGetBlocksBadInput(t *testing.T) {
	e := newEnv(t)
	h := e.putBlock([]byte("x"))
	many := make([]string, 10001)
	for i := range many {
		many[i] = h
	}
	tooMany, _ := json.Marshal(proto.GetBlocksRequest{Hashes: many})
	for name, body := range map[string]string{
		"malformed JSON": `{"hashes":[`,
		"no hashes":      `{}`,
		"bad hash":       `{"hashes":["` + strings.ToUpper(h) + `"]}`,
		"too many":       string(tooMany),
	} {
		code, raw := e.do("POST", proto.RouteBlocksGet, body, nil)
		if code != 400 || !strings.Contains(string(raw), `"error"`) {
			t.Errorf("%s: %d %s", name, code, raw)
		}
	}
}

// frames encodes a commit as frames; each item's Data goes in its own frame.
func frames(omit bool, items ...proto.CommitItem) []byte {
	var b bytes.Buffer
	h, _ := json.Marshal(proto.CommitFramesHeader{Items: len(items), OmitBlocks: omit})
	_ = proto.WriteFrame(&b, h)
	for _, it := range items {
		data := it.Data
		it.Data = nil
		j, _ := json.Marshal(it)
		_ = proto.WriteFrame(&b, j)
		_ = proto.WriteFrame(&b, data)
	}
	return b.Bytes()
}

func TestCommitFrames(t *testing.T) {
	e := newEnv(t)
	hello := []byte("hello, frames")
	block := bytes.Repeat([]byte("z"), 3000)
	bh := e.putBlock(block)
	body := frames(true,
		proto.CommitItem{Path: "d", Type: proto.TypeDir, Mode: 0o755},
		inlineItem("d/hello.txt", 0, hello),
		inlineItem("d/empty", 0, nil),
		proto.CommitItem{Path: "d/blocks.bin", Type: proto.TypeFile, Size: 3000, Mode: 0o644, MTimeNs: 1,
			SHA256: bh, Blocks: []proto.Block{{Hash: bh, Size: 3000}}},
		inlineItem("d/bad.txt", 0, []byte("not what the hash says")),
	)
	// The bad item's hash is of other content: an item error, the rest commits.
	body = bytes.Replace(body, []byte(sha([]byte("not what the hash says"))), []byte(sha([]byte("other"))), 1)
	var resp proto.CommitResponse
	code, raw := e.do("POST", proto.RouteCommit, body, &resp, "Content-Type", proto.ContentTypeCommit)
	if code != 200 || len(resp.Results) != 5 {
		t.Fatalf("commit: %d %s", code, raw)
	}
	for i, r := range resp.Results[:4] {
		if r.Status != proto.StatusOK || r.Entry == nil || r.Entry.Blocks != nil && r.Entry.Path != "d" {
			t.Errorf("item %d: %+v", i, r)
		}
	}
	if r := resp.Results[4]; r.Status != proto.StatusError {
		t.Errorf("item with a wrong hash: %+v", r)
	}
	for p, want := range map[string][]byte{"d/hello.txt": hello, "d/empty": {}, "d/blocks.bin": block} {
		code, got := e.do("GET", proto.RouteFile+"?path="+p, nil, nil)
		if code != 200 || !bytes.Equal(got, want) {
			t.Errorf("%s: %d, %q", p, code, got)
		}
	}
	// zstd on top of frames.
	var z bytes.Buffer
	enc, _ := zstd.NewWriter(&z)
	_, _ = enc.Write(frames(false, inlineItem("z.txt", 0, hello)))
	_ = enc.Close()
	code, raw = e.do("POST", proto.RouteCommit, z.Bytes(), &resp, "Content-Type", proto.ContentTypeCommit+"; x=y",
		"Content-Encoding", "zstd")
	if code != 200 || resp.Results[0].Status != proto.StatusOK {
		t.Errorf("zstd frames: %d %s", code, raw)
	}
}

func TestCommitFramesMalformed(t *testing.T) {
	e := newEnv(t)
	e.commit(inlineItem("keep.txt", 0, []byte("keep")))
	before := e.snapshot()
	good := frames(false, inlineItem("a.txt", 0, []byte("aaa")), inlineItem("b.txt", 0, []byte("bbb")))
	withData, _ := json.Marshal(inlineItem("c.txt", 0, []byte("ccc")))
	var dataInJSON bytes.Buffer
	_ = proto.WriteFrame(&dataInJSON, []byte(`{"items":1}`))
	_ = proto.WriteFrame(&dataInJSON, withData)
	_ = proto.WriteFrame(&dataInJSON, nil)
	huge := binary.AppendUvarint(nil, 1<<40)
	for name, c := range map[string]struct {
		body []byte
		code int
	}{
		"empty":             {nil, 400},
		"cut frame":         {good[:len(good)-2], 400},
		"cut before item":   {frames(false, inlineItem("a.txt", 0, []byte("a")))[:12], 400},
		"trailing bytes":    {append(bytes.Clone(good), 0), 400},
		"data in the JSON":  {dataInJSON.Bytes(), 400},
		"header not JSON":   {append([]byte{3}, "abc"...), 400},
		"no items":          {frames(false), 400},
		"frame length huge": {huge, 413},
		"too many items":    {append(binary.AppendUvarint(nil, 15), `{"items":10001}`...), 400},
	} {
		code, raw := e.do("POST", proto.RouteCommit, c.body, nil, "Content-Type", proto.ContentTypeCommit)
		if code != c.code || !strings.Contains(string(raw), `"error"`) {
			t.Errorf("%s: %d %s; want %d", name, code, raw, c.code)
		}
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("malformed requests changed the folder: %+v → %+v", before, after)
	}
	// A JSON body sent as frames is refused too, never half-read.
	code, _ := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{inlineItem("j.txt", 0, []byte("j"))}}, nil,
		"Content-Type", proto.ContentTypeCommit)
	if code != 400 {
		t.Errorf("JSON sent as frames: %d", code)
	}
}

// A commit's frames are read into the chunks of an arena: every item keeps its own
// bytes across chunk ends, and a frame larger than a chunk is read on its own.
func TestCommitFramesFillAnArena(t *testing.T) {
	var items []proto.CommitItem
	var contents [][]byte
	for i := range 700 {
		c := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 1000+i*7) // 2–12 KB each
		contents = append(contents, c)
		items = append(items, inlineItem(fmt.Sprintf("f%03d", i), 0, c))
	}
	big := bytes.Repeat([]byte("big"), frameChunk/3+1000)
	contents = append(contents, big)
	items = append(items, inlineItem("big", 0, big))
	arena := &frameArena{}
	defer arena.release()
	req, err := decodeCommitFrames(bytes.NewReader(frames(false, items...)), 1000, 64<<20, arena)
	if err != nil {
		t.Fatal(err)
	}
	if len(arena.chunks) < 2 {
		t.Errorf("%d chunks for %d MB of frames; want the frames spread over several", len(arena.chunks), 5)
	}
	for i, it := range req.Items {
		if !bytes.Equal(it.Data, contents[i]) {
			t.Fatalf("item %d (%s): %d bytes, not its content", i, it.Path, len(it.Data))
		}
	}
}
