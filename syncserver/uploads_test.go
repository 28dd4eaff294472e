package syncserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// openStream names path as the file stream uploads and returns the upload's number.
func (e *testEnv) openStream(stream, path string, size int64) int64 {
	e.t.Helper()
	var resp proto.StreamOpenResponse
	code, raw := e.do("POST", proto.RouteStreams+stream+proto.StreamOpenSuffix, proto.StreamOpenRequest{Path: path, Size: size}, &resp)
	if code != http.StatusOK || resp.No < 1 {
		e.t.Fatalf("open stream %s: %d %s", stream, code, raw)
	}
	return resp.No
}

// uploads lists the uploads in progress; query is GET /v1/uploads's.
func (e *testEnv) uploads(query string) proto.UploadsResponse {
	e.t.Helper()
	var resp proto.UploadsResponse
	if code, raw := e.do("GET", proto.RouteUploads+query, nil, &resp); code != http.StatusOK {
		e.t.Fatalf("GET uploads%s: %d %s", query, code, raw)
	}
	return resp
}

// uploadBlocks asks for the blocks of upload no; query is GET /v1/uploads/{no}'s.
func (e *testEnv) uploadBlocks(no int64, query string) (int, proto.UploadBlocksResponse, []byte) {
	e.t.Helper()
	var resp proto.UploadBlocksResponse
	code, raw := e.do("GET", fmt.Sprintf("%s%d%s", proto.RouteUploadBlocks, no, query), nil, &resp)
	return code, resp, raw
}

// answer is what a request sent in the background got.
type answer struct {
	code int
	body []byte
	err  error
}

// getAsync sends GET path in the background; the answer comes on the channel.
func (e *testEnv) getAsync(path string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		resp, err := e.http.Client().Get(e.http.URL + path)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		ch <- answer{code: resp.StatusCode, body: body, err: err}
	}()
	return ch
}

// stillWaiting fails the test when the request behind ch answered already: it was to
// wait.
func stillWaiting(t *testing.T, ch <-chan answer, what string) {
	t.Helper()
	select {
	case a := <-ch:
		t.Fatalf("%s answered before anything happened: %d %s %v", what, a.code, a.body, a.err)
	case <-time.After(100 * time.Millisecond):
	}
}

// awaitAnswer returns the answer behind ch, decoded into out, and fails the test
// unless it is a 200 within 10 s.
func awaitAnswer(t *testing.T, ch <-chan answer, what string, out any) {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil || a.code != http.StatusOK {
			t.Fatalf("%s: %d %s %v", what, a.code, a.body, a.err)
		}
		if err := json.Unmarshal(a.body, out); err != nil {
			t.Fatalf("%s: decode %s: %v", what, a.body, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not answer", what)
	}
}

func TestOpenedStreamsAreListedAsUploads(t *testing.T) {
	e := newEnv(t)
	if got := e.uploads(""); len(got.Uploads) != 0 || got.Last != 0 || got.Uploads == nil {
		t.Fatalf("uploads of a new server: %+v; want none, last 0", got)
	}
	// A stream that was never opened is no upload.
	e.putStreamBlock([]byte("not opened"), "quiet", 0)
	a := e.openStream("a", "dir/a.bin", 1<<30)
	b := e.openStream("b", "b.bin", 0)
	if a < 1 || b <= a {
		t.Fatalf("upload numbers %d, %d; want increasing from 1", a, b)
	}
	want := []proto.Upload{{No: a, Path: "dir/a.bin", Size: 1 << 30}, {No: b, Path: "b.bin", Size: 0}}
	if got := e.uploads(""); !reflect.DeepEqual(got.Uploads, want) || got.Last != b {
		t.Fatalf("uploads: %+v; want %+v, last %d", got, want, b)
	}
	if got := e.uploads(fmt.Sprintf("?after=%d", a)); !reflect.DeepEqual(got.Uploads, want[1:]) || got.Last != b {
		t.Fatalf("uploads after %d: %+v; want %+v", a, got, want[1:])
	}
	if got := e.uploads(fmt.Sprintf("?after=%d", b)); len(got.Uploads) != 0 || got.Last != b {
		t.Fatalf("uploads after the last: %+v; want none, last %d", got, b)
	}
	code, raw := e.do("POST", proto.RouteStreams+"a"+proto.StreamOpenSuffix, proto.StreamOpenRequest{Path: "other.bin", Size: 1}, nil)
	if code != http.StatusConflict {
		t.Fatalf("second open of a stream: %d %s; want 409", code, raw)
	}

	// The commit that names stream b takes it: b is no longer in progress, and its
	// number is not given again.
	content := []byte("b's content")
	e.putStreamBlock(content, "b", 0)
	it, _ := fileItem("b.bin", content, len(content))
	it.Stream = "b"
	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	if got := e.uploads(""); !reflect.DeepEqual(got.Uploads, want[:1]) || got.Last != b {
		t.Fatalf("uploads after b's commit: %+v; want %+v", got, want[:1])
	}
	if c := e.openStream("b", "b.bin", 11); c <= b {
		t.Fatalf("a new stream b got number %d; want more than %d", c, b)
	}
}

func TestUploadsLongPollWakesAtOpen(t *testing.T) {
	e := newEnv(t)
	last := e.openStream("first", "first.bin", 1)
	ch := e.getAsync(fmt.Sprintf("%s?after=%d&wait=5s", proto.RouteUploads, last))
	stillWaiting(t, ch, "GET uploads with nothing new")
	no := e.openStream("second", "second.bin", 2)
	var got proto.UploadsResponse
	awaitAnswer(t, ch, "GET uploads", &got)
	if want := []proto.Upload{{No: no, Path: "second.bin", Size: 2}}; !reflect.DeepEqual(got.Uploads, want) || got.Last != no {
		t.Fatalf("long poll: %+v; want %+v, last %d", got, want, no)
	}
	// Nothing new: the wait ends with an empty page.
	if got := e.uploads(fmt.Sprintf("?after=%d&wait=0.05", no)); len(got.Uploads) != 0 || got.Last != no {
		t.Fatalf("long poll without an open: %+v; want none", got)
	}
}

// commitInBlocks stores content in blocks of bs bytes and commits it at path.
func (e *testEnv) commitInBlocks(path string, content []byte, bs int) (proto.CommitItem, proto.ItemResult) {
	e.t.Helper()
	it, _ := fileItem(path, content, bs)
	for off := 0; off < len(content); off += bs {
		e.putBlock(content[off:min(off+bs, len(content))])
	}
	r := e.commit(it)[0]
	if r.Status != proto.StatusOK {
		e.t.Fatalf("commit %s: %+v", path, r)
	}
	return it, r
}

func TestUploadBlocksAreTheStoredPrefix(t *testing.T) {
	e := newEnv(t)
	const bs = 1 << 10
	content := randomContent(t, 6*bs)
	_, r1 := e.commitInBlocks("f.bin", content, bs)
	// v2 changes blocks 0–3 and keeps 4 and 5, which the stream names by reference.
	for i := 0; i < 4*bs; i += 97 {
		content[i] ^= 0xff
	}
	it, parts := fileItem("f.bin", content, bs)
	it.BaseSeq, it.Stream = r1.Entry.Seq, "s1"
	no := e.openStream("s1", "f.bin", int64(len(content)))

	e.putStreamBlock(parts[2], "s1", 2*bs)
	e.putStreamBlock(parts[3], "s1", 3*bs)
	if code, got, raw := e.uploadBlocks(no, ""); code != http.StatusOK || len(got.Blocks) != 0 || got.Runs != nil || got.Done {
		t.Fatalf("blocks before block 0 came: %d %s; want none, not done", code, raw)
	}
	ch := e.getAsync(fmt.Sprintf("%s%d?wait=5s", proto.RouteUploadBlocks, no))
	stillWaiting(t, ch, "GET blocks with a gap at 0")
	e.putStreamBlock(parts[0], "s1", 0)
	var got proto.UploadBlocksResponse
	awaitAnswer(t, ch, "GET blocks woken by block 0", &got)
	if want := it.Blocks[:1]; !reflect.DeepEqual(got.Blocks, want) || got.From != 0 || got.Done {
		t.Fatalf("blocks once block 0 came: %+v; want %v", got, want)
	}
	ch = e.getAsync(fmt.Sprintf("%s%d?from=1&wait=5s", proto.RouteUploadBlocks, no))
	stillWaiting(t, ch, "GET blocks from 1 with a gap at 1")
	e.putStreamBlock(parts[1], "s1", bs)
	awaitAnswer(t, ch, "GET blocks woken by block 1", &got)
	if want := it.Blocks[1:4]; !reflect.DeepEqual(got.Blocks, want) || got.From != 1 || got.Done {
		t.Fatalf("blocks from 1 once the gap filled: %+v; want %v", got, want)
	}
	if code, got, raw := e.uploadBlocks(no, "?from=1&limit=2"); code != http.StatusOK || !reflect.DeepEqual(got.Blocks, it.Blocks[1:3]) || got.From != 1 {
		t.Fatalf("blocks 1–2: %d %s; want %v", code, raw, it.Blocks[1:3])
	}
	if code, got, _ := e.uploadBlocks(no, "?from=4"); code != http.StatusOK || len(got.Blocks) != 0 || got.Done {
		t.Fatalf("blocks from 4 before they came: %d %+v; want none", code, got)
	}
	if code, _, raw := e.streamStored("s1", 4*bs, "f.bin", r1.Entry.Seq, 4, 2); code != http.StatusOK {
		t.Fatalf("blocks 4–5 by reference: %d %s", code, raw)
	}
	if code, got, raw := e.uploadBlocks(no, "?from=3"); code != http.StatusOK || !reflect.DeepEqual(got.Blocks, it.Blocks[3:]) || got.Done {
		t.Fatalf("blocks from 3 with 4–5 named: %d %s; want %v, not done", code, raw, it.Blocks[3:])
	}

	// The commit takes the stream: a request waiting past its end learns it is done,
	// and the upload is gone for new ones.
	ch = e.getAsync(fmt.Sprintf("%s%d?from=6&wait=5s", proto.RouteUploadBlocks, no))
	stillWaiting(t, ch, "GET blocks past the end")
	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Fatalf("v2: %+v", r)
	}
	got = proto.UploadBlocksResponse{} // an empty list is left out of the answer
	awaitAnswer(t, ch, "GET blocks past the end at the commit", &got)
	if len(got.Blocks) != 0 || !got.Done || got.From != 6 {
		t.Fatalf("blocks past the end at the commit: %+v; want none, done", got)
	}
	if code, _, raw := e.uploadBlocks(no, ""); code != http.StatusNotFound {
		t.Fatalf("blocks of a committed upload: %d %s; want 404", code, raw)
	}
	if got := e.uploads(""); len(got.Uploads) != 0 {
		t.Fatalf("uploads after the commit: %+v; want none", got)
	}
}

// The blocks of an edit that the writer names by reference to the version the reader
// holds come as runs of that version's list: a 1 GiB edit's answer is a few runs, not
// 3,600 hashes.
func TestUploadBlocksOfAnEditComeAsRunsOfItsBase(t *testing.T) {
	e := newEnv(t)
	const bs = 1 << 10
	content := randomContent(t, 6*bs)
	v1, r1 := e.commitInBlocks("f.bin", content, bs)
	seq := r1.Entry.Seq
	// v2 changes block 1 and keeps the others, which the stream names by reference.
	content[bs+5] ^= 0xff
	it, parts := fileItem("f.bin", content, bs)
	no := e.openStream("s1", "f.bin", int64(len(content)))
	if code, _, raw := e.streamStored("s1", 0, "f.bin", seq, 0, 1); code != http.StatusOK {
		t.Fatalf("block 0 by reference: %d %s", code, raw)
	}
	e.putStreamBlock(parts[1], "s1", bs)
	if code, _, raw := e.streamStored("s1", 2*bs, "f.bin", seq, 2, 4); code != http.StatusOK {
		t.Fatalf("blocks 2–5 by reference: %d %s", code, raw)
	}
	code, got, raw := e.uploadBlocks(no, fmt.Sprintf("?base=%d", seq))
	want := []proto.UploadRun{{BaseFrom: 0, Count: 1}, {Blocks: it.Blocks[1:2]}, {BaseFrom: 2, Count: 4}}
	if code != http.StatusOK || got.Blocks != nil || got.Base != seq || !reflect.DeepEqual(got.Runs, want) {
		t.Fatalf("blocks against version %d: %d %s; want runs %+v", seq, code, raw, want)
	}
	if all, err := got.Expand(v1.Blocks); err != nil || !reflect.DeepEqual(all, it.Blocks) {
		t.Fatalf("runs expanded: %v, %v; want the edit's list", all, err)
	}
	code, got, raw = e.uploadBlocks(no, fmt.Sprintf("?base=%d&from=3&limit=2", seq))
	if want := []proto.UploadRun{{BaseFrom: 3, Count: 2}}; code != http.StatusOK || got.From != 3 || !reflect.DeepEqual(got.Runs, want) {
		t.Fatalf("blocks 3–4 against version %d: %d %s; want runs %+v", seq, code, raw, want)
	}
	// Another version, or none named: the blocks themselves.
	for _, q := range []string{"", fmt.Sprintf("?base=%d", seq+1)} {
		code, got, raw := e.uploadBlocks(no, q)
		if code != http.StatusOK || got.Runs != nil || got.Base != 0 || !reflect.DeepEqual(got.Blocks, it.Blocks) {
			t.Fatalf("blocks%s: %d %s; want the list itself", q, code, raw)
		}
	}
}

// A stream that ends while a reader holds it answers done, and only with the last of
// its blocks.
func TestUploadBlocksOfAGivenUpStreamAreDone(t *testing.T) {
	e := newEnv(t)
	parts := [][]byte{[]byte("block zero"), []byte("block one")}
	no := e.openStream("s", "f.bin", 19)
	e.putStreamBlock(parts[0], "s", 0)
	e.putStreamBlock(parts[1], "s", len(parts[0]))
	st := e.srv.streams.upload(no)
	st.mu.Lock()
	st.broken = true
	st.changed.fire()
	st.mu.Unlock()
	if code, got, raw := e.uploadBlocks(no, "?limit=1"); code != http.StatusOK || len(got.Blocks) != 1 || got.Done {
		t.Fatalf("first block of a given-up stream: %d %s; want one block, not done yet", code, raw)
	}
	if code, got, raw := e.uploadBlocks(no, "?from=1&wait=5s"); code != http.StatusOK || len(got.Blocks) != 1 || !got.Done {
		t.Fatalf("last block of a given-up stream: %d %s; want one block, done", code, raw)
	}
	if code, got, raw := e.uploadBlocks(no, "?from=2&wait=5s"); code != http.StatusOK || len(got.Blocks) != 0 || !got.Done {
		t.Fatalf("past the end of a given-up stream: %d %s; want done at once", code, raw)
	}
	if got := e.uploads(""); len(got.Uploads) != 0 {
		t.Fatalf("uploads with a given-up stream: %+v; want none", got)
	}
}

func TestBadUploadRequestsRefused(t *testing.T) {
	e := newEnv(t)
	no := e.openStream("s", "f.bin", 10)
	e.putStreamBlock([]byte("0123456789"), "s", 0)
	broken := e.srv.streams.get(streamKey{e.srv.cfg.AnonymousAgent, "broken"}, true)
	broken.mu.Lock()
	broken.broken = true
	broken.mu.Unlock()
	listed := e.uploads("")
	_, blocks, _ := e.uploadBlocks(no, "")
	before := e.snapshot()
	for _, c := range []struct {
		name   string
		stream string
		body   any
		want   int
	}{
		{"bad stream name", "a.b", proto.StreamOpenRequest{Path: "g.bin", Size: 1}, http.StatusBadRequest},
		{"not JSON", "t", "{", http.StatusBadRequest},
		{"two values", "t", `{"path":"g.bin","size":1} {}`, http.StatusBadRequest},
		{"no path", "t", proto.StreamOpenRequest{Size: 1}, http.StatusBadRequest},
		{"bad path", "t", proto.StreamOpenRequest{Path: "../g.bin", Size: 1}, http.StatusBadRequest},
		{"path not clean", "t", proto.StreamOpenRequest{Path: "a//g.bin", Size: 1}, http.StatusBadRequest},
		{"negative size", "t", proto.StreamOpenRequest{Path: "g.bin", Size: -1}, http.StatusBadRequest},
		{"size over the limit", "t", proto.StreamOpenRequest{Path: "g.bin", Size: e.srv.cfg.MaxFileSize + 1}, http.StatusBadRequest},
		{"opened already", "s", proto.StreamOpenRequest{Path: "g.bin", Size: 1}, http.StatusConflict},
		{"given up", "broken", proto.StreamOpenRequest{Path: "g.bin", Size: 1}, http.StatusConflict},
	} {
		code, raw := e.do("POST", proto.RouteStreams+c.stream+proto.StreamOpenSuffix, c.body, nil)
		if code != c.want || !json.Valid(raw) || !containsError(raw) {
			t.Errorf("open, %s: %d %s; want %d with an error message", c.name, code, raw, c.want)
		}
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{proto.RouteUploads + "?after=-1", http.StatusBadRequest},
		{proto.RouteUploads + "?after=x", http.StatusBadRequest},
		{proto.RouteUploads + "?wait=forever", http.StatusBadRequest},
		{proto.RouteUploadBlocks + "0", http.StatusBadRequest},
		{proto.RouteUploadBlocks + "x", http.StatusBadRequest},
		{fmt.Sprintf("%s%d?from=-1", proto.RouteUploadBlocks, no), http.StatusBadRequest},
		{fmt.Sprintf("%s%d?from=x", proto.RouteUploadBlocks, no), http.StatusBadRequest},
		{fmt.Sprintf("%s%d?limit=0", proto.RouteUploadBlocks, no), http.StatusBadRequest},
		{fmt.Sprintf("%s%d?limit=%d", proto.RouteUploadBlocks, no, maxUploadBlocks+1), http.StatusBadRequest},
		{fmt.Sprintf("%s%d?wait=-1s", proto.RouteUploadBlocks, no), http.StatusBadRequest},
		{fmt.Sprintf("%s%d?base=0", proto.RouteUploadBlocks, no), http.StatusBadRequest},
		{fmt.Sprintf("%s%d?base=x", proto.RouteUploadBlocks, no), http.StatusBadRequest},
		{fmt.Sprintf("%s%d", proto.RouteUploadBlocks, no+1), http.StatusNotFound},
	} {
		code, raw := e.do("GET", c.path, nil, nil)
		if code != c.want || !containsError(raw) {
			t.Errorf("GET %s: %d %s; want %d with an error message", c.path, code, raw, c.want)
		}
	}
	if got := e.uploads(""); !reflect.DeepEqual(got, listed) {
		t.Fatalf("refused requests changed the uploads: %+v → %+v", listed, got)
	}
	if _, got, _ := e.uploadBlocks(no, ""); !reflect.DeepEqual(got, blocks) {
		t.Fatalf("refused requests changed the upload's blocks: %+v → %+v", blocks, got)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused requests changed the store: %+v → %+v", before, after)
	}
}

// containsError reports whether raw is a JSON error answer.
func containsError(raw []byte) bool {
	var pe proto.Error
	return json.Unmarshal(raw, &pe) == nil && pe.Error != ""
}

func TestClientFollowsAnUpload(t *testing.T) {
	e := newEnv(t)
	cl, err := client.New(client.Options{BaseURL: e.http.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	content := randomContent(t, 3<<10)
	it, parts := fileItem("c.bin", content, 1<<10)
	no, err := cl.OpenStream(ctx, "c1", "c.bin", int64(len(content)))
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	if _, err := cl.OpenStream(ctx, "c1", "c.bin", 1); !client.IsConflict(err) || errors.Is(err, client.ErrNotSupported) {
		t.Fatalf("second OpenStream: %v; want a 409", err)
	}
	ups, err := cl.Uploads(ctx, 0, 0)
	if want := []proto.Upload{{No: no, Path: "c.bin", Size: int64(len(content))}}; err != nil || !reflect.DeepEqual(ups.Uploads, want) || ups.Last != no {
		t.Fatalf("Uploads = %+v, %v; want %+v", ups, err, want)
	}
	if ups, err := cl.Uploads(ctx, ups.Last, 20*time.Millisecond); err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("Uploads after the last = %+v, %v; want none", ups, err)
	}
	for i, p := range parts {
		if err := cl.PutStreamBlock(ctx, sha(p), p, false, "c1", int64(i)<<10); err != nil {
			t.Fatal(err)
		}
	}
	got, err := cl.UploadBlocks(ctx, no, 1, 0, time.Second)
	if err != nil || !reflect.DeepEqual(got.Blocks, it.Blocks[1:]) || got.From != 1 || got.Done {
		t.Fatalf("UploadBlocks = %+v, %v; want %v", got, err, it.Blocks[1:])
	}
	it.Stream = "c1"
	if r := e.commit(it)[0]; r.Status != proto.StatusOK {
		t.Fatalf("commit: %+v", r)
	}
	if _, err := cl.UploadBlocks(ctx, no, 0, 0, 0); !client.IsNotFound(err) {
		t.Fatalf("UploadBlocks of a committed upload: %v; want a 404", err)
	}
}
