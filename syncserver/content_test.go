package syncserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// bigContent is a file of n distinct 1 KiB blocks.
func bigContent(n int, tag byte) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "%c%05d", tag, i)
		b.Write(bytes.Repeat([]byte{tag}, 1024-6))
	}
	return b.Bytes()
}

func (e *testEnv) entry(q string) (int, proto.Entry) {
	e.t.Helper()
	var out proto.Entry
	code, _ := e.do("GET", proto.RouteEntry+"?"+q, nil, &out)
	return code, out
}

func TestCommitCopyFrom(t *testing.T) {
	e := newEnv(t)
	content := bigContent(8, 'a')
	src := e.commitFile("a.bin", 0, content, 1024)
	if src.Status != proto.StatusOK {
		t.Fatalf("commit a.bin: %+v", src)
	}
	e.commit(proto.CommitItem{Path: "d", Type: proto.TypeDir, Mode: 0o755})
	gone := e.commit(inlineItem("gone.txt", 0, []byte("gone")))[0].Entry
	var del proto.CommitResponse
	e.do("POST", proto.RouteDelete, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: "gone.txt", BaseSeq: gone.Seq}}}, &del)
	item := func(from string, seq int64) proto.CommitItem {
		return proto.CommitItem{Path: "b.bin", Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644,
			MTimeNs: 1, SHA256: sha(content), CopyFrom: &proto.ContentRef{Path: from, Seq: seq}}
	}
	before := e.snapshot()
	bad := map[string]proto.CommitItem{
		"unknown path": item("nope.bin", src.Entry.Seq),
		"unknown seq":  item("a.bin", src.Entry.Seq+100),
		"a deletion":   item("gone.txt", del.Results[0].Entry.Seq),
		"a dir":        item("d", src.Entry.Seq+1),
		"bad path":     item("../a.bin", src.Entry.Seq),
		"seq zero":     item("a.bin", 0),
	}
	wrongSHA := item("a.bin", src.Entry.Seq)
	wrongSHA.SHA256 = sha([]byte("other"))
	bad["other sha256"] = wrongSHA
	wrongSize := item("a.bin", src.Entry.Seq)
	wrongSize.Size++
	bad["other size"] = wrongSize
	withBlocks := item("a.bin", src.Entry.Seq)
	withBlocks.Blocks = src.Entry.Blocks
	bad["with blocks"] = withBlocks
	both := item("a.bin", src.Entry.Seq)
	both.BlocksDelta = &proto.BlocksDelta{BaseSeq: src.Entry.Seq}
	bad["with blocksDelta"] = both
	for name, it := range bad {
		r := e.commit(it)[0]
		if r.Status != proto.StatusError || r.Error == "" {
			t.Errorf("%s: %+v, want an item error", name, r)
		}
	}
	dirRef := proto.CommitItem{Path: "d2", Type: proto.TypeDir, CopyFrom: &proto.ContentRef{Path: "a.bin", Seq: src.Entry.Seq}}
	if r := e.commit(dirRef)[0]; r.Status != proto.StatusError {
		t.Errorf("dir with copyFrom: %+v", r)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused items changed the folder: %+v → %+v", before, after)
	}

	var resp proto.CommitResponse
	code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: []proto.CommitItem{item("a.bin", src.Entry.Seq)}, OmitBlocks: true}, &resp)
	if code != 200 || resp.Results[0].Status != proto.StatusOK {
		t.Fatalf("copy: %d %s", code, raw)
	}
	if got := resp.Results[0].Entry; len(got.Blocks) != 0 || !got.BlocksOmitted {
		t.Errorf("omitBlocks answer: %+v", got)
	}
	_, b := e.entry("path=b.bin")
	if len(b.Blocks) != len(src.Entry.Blocks) || b.SHA256 != sha(content) {
		t.Errorf("b.bin: %+v", b)
	}
	code, body := e.do("GET", proto.RouteFile+"?path=b.bin", nil, nil)
	if code != 200 || !bytes.Equal(body, content) {
		t.Errorf("GET b.bin: %d, %d bytes", code, len(body))
	}
	// An old version stays a valid source after its path moved on.
	e.commitFile("a.bin", src.Entry.Seq, []byte("new"), 1024)
	it := item("a.bin", src.Entry.Seq)
	it.Path = "c.bin"
	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Errorf("copy of a superseded version: %+v", r)
	}
}

func TestCommitBlocksDelta(t *testing.T) {
	e := newEnv(t)
	old := bigContent(6, 'a')
	base := e.commitFile("f.bin", 0, old, 1024)
	if base.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", base)
	}
	edited := bytes.Clone(old)
	edited[2*1024+10] ^= 0xff
	mid := proto.Block{Hash: e.putBlock(edited[2*1024 : 3*1024]), Size: 1024}
	item := func(d proto.BlocksDelta) proto.CommitItem {
		return proto.CommitItem{Path: "f.bin", BaseSeq: base.Entry.Seq, Type: proto.TypeFile, Size: int64(len(edited)),
			Mode: 0o644, MTimeNs: 2, SHA256: sha(edited), BlocksDelta: &d}
	}
	good := proto.DiffBlocks(base.Entry.Seq, base.Entry.Blocks, append(append(append([]proto.Block(nil), base.Entry.Blocks[:2]...), mid), base.Entry.Blocks[3:]...))
	if good.Head != 2 || good.Tail != 3 || len(good.Blocks) != 1 {
		t.Fatalf("DiffBlocks: %+v", good)
	}
	unknown := proto.Block{Hash: sha([]byte("never uploaded")), Size: 1024}
	before := e.snapshot()
	for name, d := range map[string]proto.BlocksDelta{
		"head+tail over base": {BaseSeq: base.Entry.Seq, Head: 4, Tail: 3, Blocks: []proto.Block{mid}},
		"negative head":       {BaseSeq: base.Entry.Seq, Head: -1, Tail: 3, Blocks: []proto.Block{mid}},
		"unknown base":        {BaseSeq: base.Entry.Seq + 50, Head: 2, Tail: 3, Blocks: []proto.Block{mid}},
		"base zero":           {Head: 2, Tail: 3, Blocks: []proto.Block{mid}},
		"sizes do not add up": {BaseSeq: base.Entry.Seq, Head: 2, Tail: 2, Blocks: []proto.Block{mid}},
		"wrong content":       {BaseSeq: base.Entry.Seq, Head: 3, Tail: 3},
		"block not stored":    {BaseSeq: base.Entry.Seq, Head: 2, Tail: 3, Blocks: []proto.Block{unknown}},
		"bad block hash":      {BaseSeq: base.Entry.Seq, Head: 2, Tail: 3, Blocks: []proto.Block{{Hash: "zz", Size: 1024}}},
		"block size zero":     {BaseSeq: base.Entry.Seq, Head: 2, Tail: 3, Blocks: []proto.Block{{Hash: mid.Hash}}},
	} {
		if r := e.commit(item(d))[0]; r.Status != proto.StatusError || r.Error == "" {
			t.Errorf("%s: %+v, want an item error", name, r)
		}
	}
	withData := item(good)
	withData.Data = edited
	if r := e.commit(withData)[0]; r.Status != proto.StatusError {
		t.Errorf("delta with data: %+v", r)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused items changed the folder: %+v → %+v", before, after)
	}
	r := e.commit(item(good))[0]
	if r.Status != proto.StatusOK {
		t.Fatalf("delta commit: %+v", r)
	}
	code, body := e.do("GET", proto.RouteFile+"?path=f.bin", nil, nil)
	if code != 200 || !bytes.Equal(body, edited) {
		t.Fatalf("GET f.bin after the delta commit: %d", code)
	}
	// A stale base is a conflict, as with a full list.
	if r := e.commit(item(good))[0]; r.Status != proto.StatusConflict {
		t.Errorf("stale delta commit: %+v", r)
	}

	// The entry as a delta against the version the client holds.
	code, d := e.entry(fmt.Sprintf("path=f.bin&baseSeq=%d", base.Entry.Seq))
	if code != 200 || d.BlocksDelta == nil || len(d.Blocks) != 0 {
		t.Fatalf("entry with baseSeq: %d %+v", code, d)
	}
	list, err := d.BlocksDelta.Apply(base.Entry.Blocks)
	if err != nil || len(list) != 6 || list[2] != mid {
		t.Errorf("applied delta: %v %+v", err, list)
	}
	// A base that is not a retained file version gets the whole list.
	if code, d := e.entry("path=f.bin&baseSeq=9999"); code != 200 || d.BlocksDelta != nil || len(d.Blocks) != 6 {
		t.Errorf("entry with an unknown base: %d %+v", code, d)
	}
	if code, v := e.entry(fmt.Sprintf("path=f.bin&seq=%d", base.Entry.Seq)); code != 200 || v.SHA256 != sha(old) {
		t.Errorf("entry at seq: %d %+v", code, v)
	}
	if code, _ := e.entry("path=f.bin&seq=9999"); code != 404 {
		t.Errorf("entry at an unknown seq: %d", code)
	}
	for _, q := range []string{"path=f.bin&baseSeq=0", "path=f.bin&baseSeq=x", "path=f.bin&seq=-1", "path=f.bin&baseSeq=-3"} {
		if code, _ := e.entry(q); code != 400 {
			t.Errorf("GET entry?%s: %d, want 400", q, code)
		}
	}
}

func TestChangesMaxBlocks(t *testing.T) {
	e := newEnv(t)
	e.commitFile("big.bin", 0, bigContent(8, 'b'), 1024)
	e.commit(inlineItem("small.txt", 0, []byte("small")))
	var resp proto.ChangesResponse
	if code, raw := e.do("GET", proto.RouteChanges+"?since=0&maxBlocks=1", nil, &resp); code != 200 {
		t.Fatalf("changes: %d %s", code, raw)
	}
	if len(resp.Entries) != 2 {
		t.Fatalf("entries: %+v", resp.Entries)
	}
	if big := resp.Entries[0]; !big.BlocksOmitted || len(big.Blocks) != 0 || big.SHA256 == "" {
		t.Errorf("big.bin: %+v", big)
	}
	if small := resp.Entries[1]; small.BlocksOmitted || len(small.Blocks) != 1 {
		t.Errorf("small.txt: %+v", small)
	}
	var full proto.ChangesResponse
	e.do("GET", proto.RouteChanges+"?since=0", nil, &full)
	if len(full.Entries[0].Blocks) != 8 || full.Entries[0].BlocksOmitted {
		t.Errorf("without maxBlocks: %+v", full.Entries[0])
	}
	for _, v := range []string{"-1", "x", "1.5"} {
		if code, raw := e.do("GET", proto.RouteChanges+"?maxBlocks="+v, nil, nil); code != 400 {
			t.Errorf("maxBlocks=%s: %d %s", v, code, raw)
		}
	}
}

func TestJSONAnswersZstd(t *testing.T) {
	e := newEnv(t)
	e.commitFile("big.bin", 0, bigContent(64, 'z'), 1024)
	req, _ := http.NewRequest("GET", e.http.URL+proto.RouteChanges+"?since=0", nil)
	req.Header.Set("Accept-Encoding", "zstd")
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "zstd" {
		t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	d, _ := zstd.NewReader(resp.Body)
	defer d.Close()
	raw, err := io.ReadAll(d)
	if err != nil {
		t.Fatal(err)
	}
	var out proto.ChangesResponse
	if err := jsonUnmarshal(raw, &out); err != nil || len(out.Entries) != 1 || len(out.Entries[0].Blocks) != 64 {
		t.Fatalf("decoded answer: %v %+v", err, out)
	}
	// Without Accept-Encoding: zstd the answer is plain JSON.
	var plain proto.ChangesResponse
	if code, _ := e.do("GET", proto.RouteChanges+"?since=0", nil, &plain); code != 200 || len(plain.Entries) != 1 {
		t.Fatalf("plain answer: %d %+v", code, plain)
	}
}

func TestGetBlockDelta(t *testing.T) {
	e := newEnv(t)
	base := bigContent(64, 'q')
	edited := bytes.Clone(base)
	edited[1000] ^= 0xff
	bh, eh := e.putBlock(base), e.putBlock(edited)
	cl, err := client.New(client.Options{BaseURL: e.http.URL})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.GetBlockDelta(context.Background(), eh, bh, base)
	if err != nil || !bytes.Equal(got, edited) {
		t.Fatalf("GetBlockDelta: %v", err)
	}
	code, raw := e.do("GET", proto.RouteBlocks+eh+"?base="+bh, nil, nil, "Accept-Encoding", "zstd")
	if code != 200 || len(raw) > 512 {
		t.Errorf("delta answer: %d, %d bytes", code, len(raw))
	}
	// A base the server lacks: the plain block, still checked by the client.
	unknown := sha([]byte("unknown"))
	if got, err := cl.GetBlockDelta(context.Background(), eh, unknown, []byte("unknown")); err != nil || !bytes.Equal(got, edited) {
		t.Errorf("unknown base: %v", err)
	}
	// The wrong base bytes on the client: the hash check catches it.
	if _, err := cl.GetBlockDelta(context.Background(), eh, bh, bigContent(64, 'r')); err == nil {
		t.Error("a delta decoded against the wrong base was accepted")
	}
	if code, raw := e.do("GET", proto.RouteBlocks+eh+"?base=xyz", nil, nil, "Accept-Encoding", "zstd"); code != 400 {
		t.Errorf("bad base: %d %s", code, raw)
	}
}

func TestNewCommitFieldsMalformed(t *testing.T) {
	e := newEnv(t)
	e.commit(inlineItem("keep.txt", 0, []byte("keep")))
	before := e.snapshot()
	h := sha([]byte("keep"))
	for name, body := range map[string]string{
		"omitBlocks not a bool":  `{"omitBlocks":"yes","items":[{"path":"a","type":"dir"}]}`,
		"copyFrom not an object": `{"items":[{"path":"a","type":"file","size":4,"sha256":"` + h + `","copyFrom":"keep.txt"}]}`,
		"blocksDelta head text":  `{"items":[{"path":"a","type":"file","size":4,"sha256":"` + h + `","blocksDelta":{"baseSeq":1,"head":"x"}}]}`,
	} {
		if code, raw := e.do("POST", proto.RouteCommit, body, nil); code != 400 {
			t.Errorf("%s: %d %s", name, code, raw)
		}
	}
	dir := proto.CommitItem{Path: "d", Type: proto.TypeDir, BlocksDelta: &proto.BlocksDelta{BaseSeq: 1}}
	if r := e.commit(dir)[0]; r.Status != proto.StatusError {
		t.Errorf("dir with blocksDelta: %+v", r)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("malformed requests changed the folder: %+v → %+v", before, after)
	}
}
