package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestUploadCallsSendTheirRequests(t *testing.T) {
	var opened proto.StreamOpenRequest
	var mu sync.Mutex
	var query string // the last request's
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		query = r.URL.RawQuery
		mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == proto.RouteStreams+"s1"+proto.StreamOpenSuffix:
			if err := json.NewDecoder(r.Body).Decode(&opened); err != nil {
				writeJSON(w, http.StatusBadRequest, proto.Error{Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, proto.StreamOpenResponse{No: 7})
		case r.Method == http.MethodPost && r.URL.Path == proto.RouteStreams+"s2"+proto.StreamOpenSuffix:
			writeJSON(w, http.StatusConflict, proto.Error{Error: "stream s2 cannot be opened"})
		case r.Method == http.MethodGet && r.URL.Path == proto.RouteUploads:
			writeJSON(w, http.StatusOK, proto.UploadsResponse{Uploads: []proto.Upload{{No: 7, Path: "a.bin", Size: 9}}, Last: 7})
		case r.Method == http.MethodGet && r.URL.Path == proto.RouteUploadBlocks+"7":
			writeJSON(w, http.StatusOK, proto.UploadBlocksResponse{From: 2, Blocks: []proto.Block{{Hash: hashOf([]byte("x")), Size: 1}}, Done: true})
		default:
			writeJSON(w, http.StatusNotFound, proto.Error{Error: "no upload"})
		}
	})
	c := newTestClient(t, h, nil)
	ctx := context.Background()
	no, err := c.OpenStream(ctx, "s1", "a.bin", 9)
	if err != nil || no != 7 || opened != (proto.StreamOpenRequest{Path: "a.bin", Size: 9}) {
		t.Fatalf("OpenStream = %d, %v (sent %+v); want 7", no, err, opened)
	}
	if _, err := c.OpenStream(ctx, "s2", "a.bin", 9); !IsConflict(err) || errors.Is(err, ErrNotSupported) {
		t.Fatalf("OpenStream answered 409: %v; want a conflict", err)
	}
	last := func() string { mu.Lock(); defer mu.Unlock(); return query }
	ups, err := c.Uploads(ctx, 3, 2*time.Second)
	if err != nil || ups.Last != 7 || len(ups.Uploads) != 1 || last() != "after=3&wait=2s" {
		t.Fatalf("Uploads = %+v, %v (query %q)", ups, err, last())
	}
	got, err := c.UploadBlocks(ctx, 7, 2, 5, time.Second)
	if err != nil || !got.Done || !reflect.DeepEqual(got.Blocks, []proto.Block{{Hash: hashOf([]byte("x")), Size: 1}}) ||
		last() != "base=5&from=2&wait=1s" {
		t.Fatalf("UploadBlocks = %+v, %v (query %q)", got, err, last())
	}
	if _, err := c.UploadBlocks(ctx, 7, 0, 0, 0); err == nil {
		t.Fatal("UploadBlocks took an answer for another index than asked")
	}
	// An upload that ended is a 404, not a server without uploads.
	if _, err := c.UploadBlocks(ctx, 8, 0, 0, 0); !IsNotFound(err) || errors.Is(err, ErrNotSupported) {
		t.Fatalf("UploadBlocks answered 404: %v; want a plain 404", err)
	}
}

// An older server has no such routes: it answers 404 (its catch-all) or 405.
func TestUploadCallsOnAnOlderServer(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusMethodNotAllowed} {
		c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, status, proto.Error{Error: "no route " + r.Method + " " + r.URL.Path})
		}), nil)
		if _, err := c.OpenStream(context.Background(), "s1", "a.bin", 1); !errors.Is(err, ErrNotSupported) {
			t.Errorf("OpenStream answered %d: %v; want ErrNotSupported", status, err)
		}
		if _, err := c.Uploads(context.Background(), 0, 0); !errors.Is(err, ErrNotSupported) {
			t.Errorf("Uploads answered %d: %v; want ErrNotSupported", status, err)
		}
	}
}
