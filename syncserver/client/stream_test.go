package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// commitHandler answers a commit like the server: the whole body must decode. It reads
// JSON only, like a server from before commit frames: a body of frames is malformed JSON.
func commitHandler(t *testing.T, got *atomic.Int32, sawBadBody *atomic.Bool) http.Handler {
	return framesCommitHandler(t, got, sawBadBody, false, nil)
}

// framesCommitHandler is commitHandler for a server that also reads commit frames
// (proto.ContentTypeCommit) when frames is set; it counts the frame bodies in sawFrames.
func framesCommitHandler(t *testing.T, got *atomic.Int32, sawBadBody *atomic.Bool, frames bool, sawFrames *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "zstd" {
			dec, err := zstd.NewReader(r.Body)
			if err != nil {
				t.Errorf("zstd: %v", err)
				return
			}
			defer dec.Close()
			body = dec
		}
		var req proto.CommitRequest
		var err error
		if frames && r.Header.Get("Content-Type") == proto.ContentTypeCommit {
			sawFrames.Add(1)
			req, err = readFrames(body)
		} else {
			err = json.NewDecoder(body).Decode(&req)
		}
		if err != nil {
			sawBadBody.Store(true)
			writeJSON(w, 400, proto.Error{Error: "malformed JSON"})
			return
		}
		got.Add(int32(len(req.Items)))
		res := make([]proto.ItemResult, len(req.Items))
		for i, it := range req.Items {
			if string(it.Data) != "data of "+it.Path {
				t.Errorf("item %d: data %q", i, it.Data)
			}
			res[i] = proto.ItemResult{Path: it.Path, Status: proto.StatusOK, Entry: &proto.Entry{Path: it.Path, Seq: int64(i + 1)}}
		}
		writeJSON(w, 200, proto.CommitResponse{Results: res})
	})
}

// readFrames decodes a body of commit frames.
func readFrames(body io.Reader) (proto.CommitRequest, error) {
	var req proto.CommitRequest
	br := bufio.NewReader(body)
	raw, err := proto.ReadFrame(br, 1<<20)
	if err != nil {
		return req, err
	}
	var h proto.CommitFramesHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return req, err
	}
	req.OmitBlocks = h.OmitBlocks
	for range h.Items {
		var it proto.CommitItem
		if raw, err = proto.ReadFrame(br, 1<<20); err != nil {
			return req, err
		}
		if err := json.Unmarshal(raw, &it); err != nil {
			return req, err
		}
		if it.Data != nil {
			return req, errors.New("data inside the item's JSON")
		}
		if it.Data, err = proto.ReadFrame(br, 1<<20); err != nil {
			return req, err
		}
		req.Items = append(req.Items, it)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return req, errors.New("data after the last item")
	}
	return req, nil
}

func TestCommitFuncStreamsItems(t *testing.T) {
	for _, tc := range []struct{ compress, frames bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		var got, framed atomic.Int32
		var bad atomic.Bool
		c := newTestClient(t, framesCommitHandler(t, &got, &bad, tc.frames, &framed), func(o *Options) {
			o.CompressRequests = tc.compress
			o.JSONCommits = !tc.frames
		})
		compress := tc.compress
		const n = 300
		buf := make([]byte, 0, 64)
		calls := 0
		res, err := c.CommitFunc(context.Background(), n, func(i int) (proto.CommitItem, error) {
			calls++
			// One buffer for every item's data: an item need only live until the next.
			buf = append(buf[:0], "data of "...)
			buf = append(buf, strings.Repeat("p", i%7)+string(rune('a'+i%26))...)
			p := string(buf[len("data of "):])
			return proto.CommitItem{Path: p, Type: proto.TypeFile, Data: buf}, nil
		})
		if err != nil || len(res) != n || got.Load() != n || calls != n || bad.Load() {
			t.Errorf("compress=%v: %d results, %d items seen, %d calls, bad body %v, err %v", compress, len(res), got.Load(), calls, bad.Load(), err)
		}
		if want := map[bool]int32{true: 1}[tc.frames]; framed.Load() != want {
			t.Errorf("frames=%v: %d bodies of frames, want %d", tc.frames, framed.Load(), want)
		}
	}
}

func TestCommitFallsBackToJSONForAnOlderServer(t *testing.T) {
	var got atomic.Int32
	var bad atomic.Bool
	var commits atomic.Int32
	old := commitHandler(t, &got, &bad)
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		commits.Add(1)
		old.ServeHTTP(w, r)
	}), nil)
	item := func(i int) (proto.CommitItem, error) {
		return proto.CommitItem{Path: "p", Type: proto.TypeFile, Data: []byte("data of p")}, nil
	}
	// The first commit goes as frames, is refused as malformed JSON and goes again as JSON;
	// the next one goes as JSON at once.
	for round, want := range []int32{2, 3} {
		res, err := c.CommitFunc(context.Background(), 1, item)
		if err != nil || len(res) != 1 || res[0].Status != proto.StatusOK {
			t.Fatalf("round %d: %v, %v", round, res, err)
		}
		if commits.Load() != want || got.Load() != int32(round+1) {
			t.Errorf("round %d: %d requests, %d items applied; want %d requests", round, commits.Load(), got.Load(), want)
		}
	}
	if !bad.Load() {
		t.Error("the first request was not sent as frames")
	}
}

func TestCommitFuncAbandonsTheRequestWhenAnItemFails(t *testing.T) {
	var got atomic.Int32
	var bad atomic.Bool
	c := newTestClient(t, commitHandler(t, &got, &bad), nil)
	boom := errors.New("file changed")
	_, err := c.CommitFunc(context.Background(), 50, func(i int) (proto.CommitItem, error) {
		if i == 40 {
			return proto.CommitItem{}, boom
		}
		p := strings.Repeat("x", i+1)
		return proto.CommitItem{Path: p, Type: proto.TypeFile, Data: []byte("data of " + p)}, nil
	})
	var be *BodyError
	if !errors.As(err, &be) || !errors.Is(err, boom) || IsTransient(err) {
		t.Fatalf("err %v (%T); want a *BodyError wrapping the item's error", err, err)
	}
	if got.Load() != 0 {
		t.Errorf("the server applied %d items of an abandoned request", got.Load())
	}
	// The client still works afterwards.
	res, err := c.Commit(context.Background(), []proto.CommitItem{{Path: "y", Type: proto.TypeFile, Data: []byte("data of y")}})
	if err != nil || len(res) != 1 || got.Load() != 1 {
		t.Errorf("commit after an abandoned one: %v, %v", res, err)
	}
}

// A server from before commit deletes answers for the items only: the client says it
// deleted nothing (deleted is nil), for the caller to send the deletes on their own.
// An answer that fits neither count is an error.
func TestCommitDeletesOnAnOlderServer(t *testing.T) {
	for _, frames := range []bool{true, false} {
		var got, framed atomic.Int32
		var bad atomic.Bool
		c := newTestClient(t, framesCommitHandler(t, &got, &bad, frames, &framed), func(o *Options) { o.JSONCommits = !frames })
		item := func(int) (proto.CommitItem, error) {
			return proto.CommitItem{Path: "p", Type: proto.TypeFile, Data: []byte("data of p")}, nil
		}
		res, deleted, err := c.CommitDeletesFunc(context.Background(), 1, item, []proto.DeleteItem{{Path: "q", BaseSeq: 4}})
		if err != nil || len(res) != 1 || deleted != nil || bad.Load() {
			t.Errorf("frames=%v: %d results, deleted %v, err %v, bad body %v", frames, len(res), deleted, err, bad.Load())
		}
	}
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, proto.CommitResponse{Results: make([]proto.ItemResult, 2)})
	}), nil)
	item := func(int) (proto.CommitItem, error) { return proto.CommitItem{Path: "p", Type: proto.TypeFile}, nil }
	if _, _, err := c.CommitDeletesFunc(context.Background(), 1, item, []proto.DeleteItem{{Path: "q", BaseSeq: 4}, {Path: "r", BaseSeq: 5}}); err == nil {
		t.Error("2 results for 1 item and 2 deletes: no error")
	}
}

// A compact result the client cannot expand (a seq for an item that failed, or for
// another path, or for no item at all) is an error of the commit, not a made-up entry.
func TestCommitRefusesACompactResultItCannotExpand(t *testing.T) {
	bad := map[string][]proto.ItemResult{
		"seq on an error":  {{Path: "p", Status: proto.StatusError, Error: "no", Seq: 3}},
		"seq for another":  {{Path: "q", Status: proto.StatusOK, Seq: 3}},
		"negative seq":     {{Path: "p", Status: proto.StatusOK, Seq: -1}},
		"more than it has": {{Path: "p", Status: proto.StatusOK, Seq: 3}, {Path: "p2", Status: proto.StatusOK, Seq: 4}},
	}
	for name, results := range bad {
		c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			writeJSON(w, 200, proto.CommitResponse{Results: results, ModifiedBy: "a"})
		}), func(o *Options) { o.JSONCommits = true })
		item := func(int) (proto.CommitItem, error) {
			return proto.CommitItem{Path: "p", Type: proto.TypeFile, Size: 1, SHA256: strings.Repeat("a", 64), Data: []byte("x")}, nil
		}
		if res, err := c.CommitFunc(context.Background(), 1, item); err == nil {
			t.Errorf("%s: %+v, nil error", name, res)
		}
	}
}
