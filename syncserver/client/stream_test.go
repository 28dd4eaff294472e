package client

import (
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

// commitHandler answers a commit like the server: the whole body must decode.
func commitHandler(t *testing.T, got *atomic.Int32, sawBadBody *atomic.Bool) http.Handler {
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
		if err := json.NewDecoder(body).Decode(&req); err != nil {
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

func TestCommitFuncStreamsItems(t *testing.T) {
	for _, compress := range []bool{false, true} {
		var got atomic.Int32
		var bad atomic.Bool
		c := newTestClient(t, commitHandler(t, &got, &bad), func(o *Options) { o.CompressRequests = compress })
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
