package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newTestClient(t *testing.T, h http.Handler, mod func(*Options)) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o := Options{BaseURL: srv.URL}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenIsReadOnEveryRequest(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var seen []string
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Authorization"))
		writeJSON(w, 200, proto.Stats{Files: 3})
	}), func(o *Options) { o.TokenFile = tokenFile })
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 {
		t.Errorf("Files = %d, want 3", st.Files)
	}
	if want := []string{"Bearer first", "Bearer second"}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("Authorization headers %q, want %q", seen, want)
	}
	if err := os.WriteFile(tokenFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stats(context.Background()); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: err %v, want a clear error", err)
	}
	if len(seen) != 2 {
		t.Errorf("a request was sent with an empty token")
	}
}

func TestChangesQueryAndDecoding(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != proto.RouteChanges || r.Method != http.MethodGet {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		q := r.URL.Query()
		if q.Get("since") != "41" || q.Get("wait") != "2s" || q.Get("limit") != "500" {
			t.Errorf("query %v", q)
		}
		// Answer zstd-compressed, as a server may when the client accepts it.
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "zstd") {
			t.Errorf("Accept-Encoding %q lacks zstd", r.Header.Get("Accept-Encoding"))
		}
		body, _ := json.Marshal(proto.ChangesResponse{FolderID: "f1", LastSeq: 42, Entries: []proto.Entry{{Path: "a b/ü.txt", Type: proto.TypeFile, Seq: 42, Blocks: []proto.Block{{Hash: "ab", Size: 1}}}}})
		enc, _ := zstd.NewWriter(nil)
		w.Header().Set("Content-Encoding", "zstd")
		_, _ = w.Write(enc.EncodeAll(body, nil))
	}), nil)
	got, err := c.Changes(context.Background(), 41, 2*time.Second, 500)
	if err != nil {
		t.Fatal(err)
	}
	if got.FolderID != "f1" || got.LastSeq != 42 || len(got.Entries) != 1 || got.Entries[0].Path != "a b/ü.txt" || got.Entries[0].Blocks[0].Hash != "ab" {
		t.Errorf("decoded %+v", got)
	}
}

func TestPutBlockCompressesAndGetBlockVerifies(t *testing.T) {
	data := bytes.Repeat([]byte("compressible "), 4096)
	h := hashOf(data)
	var stored []byte
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != proto.RouteBlocks+h {
			writeJSON(w, 404, proto.Error{Error: "no such block"})
			return
		}
		switch r.Method {
		case http.MethodPut:
			raw, _ := io.ReadAll(r.Body)
			if r.Header.Get("Content-Encoding") != "zstd" {
				t.Errorf("block not compressed")
			}
			dec, _ := zstd.NewReader(nil)
			stored, _ = dec.DecodeAll(raw, nil)
			if len(raw) >= len(data) {
				t.Errorf("compressed body %d bytes, raw %d", len(raw), len(data))
			}
			w.WriteHeader(http.StatusCreated)
		case http.MethodGet:
			_, _ = w.Write(stored)
		}
	}), nil)
	ctx := context.Background()
	if err := c.PutBlock(ctx, h, data, true); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetBlock(ctx, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetBlock: %d bytes, %v", len(got), err)
	}
	stored = []byte("tampered")
	if _, err := c.GetBlock(ctx, h); err == nil || !strings.Contains(err.Error(), "hashing to") {
		t.Errorf("tampered block: err %v", err)
	}
	_, err = c.GetBlock(ctx, hashOf([]byte("other")))
	if !IsNotFound(err) || IsTransient(err) {
		t.Errorf("missing block: err %v, want a 404", err)
	}
}

func TestCommitAndErrors(t *testing.T) {
	current := &proto.Entry{Path: "x", Seq: 9, Type: proto.TypeFile}
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case proto.RouteCommit:
			var req proto.CommitRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeJSON(w, 400, proto.Error{Error: "malformed JSON"})
				return
			}
			var res []proto.ItemResult
			for _, it := range req.Items {
				if it.BaseSeq != 9 {
					res = append(res, proto.ItemResult{Path: it.Path, Status: proto.StatusConflict, Entry: current})
					continue
				}
				if string(it.Data) != "hi" {
					t.Errorf("inline data %q", it.Data)
				}
				res = append(res, proto.ItemResult{Path: it.Path, Status: proto.StatusOK, Entry: &proto.Entry{Path: it.Path, Seq: 10}})
			}
			writeJSON(w, 200, proto.CommitResponse{Results: res})
		case proto.RouteRestore:
			writeJSON(w, 409, proto.Error{Error: "entry moved on", Entry: current})
		case proto.RouteStats:
			w.Header().Set("Retry-After", "3")
			writeJSON(w, 503, proto.Error{Error: "store unavailable"})
		default:
			http.Error(w, "plain text failure", 500)
		}
	}), nil)
	ctx := context.Background()
	res, err := c.Commit(ctx, []proto.CommitItem{{Path: "x", BaseSeq: 9, Data: []byte("hi")}, {Path: "x", BaseSeq: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != proto.StatusOK || res[0].Entry.Seq != 10 || res[1].Status != proto.StatusConflict || res[1].Entry.Seq != 9 {
		t.Errorf("results %+v", res)
	}
	_, err = c.Restore(ctx, proto.RestoreRequest{Path: "x", Seq: 2, BaseSeq: 1})
	var e *Error
	if !errors.As(err, &e) || !IsConflict(err) || e.Entry == nil || e.Entry.Seq != 9 || e.Message != "entry moved on" {
		t.Errorf("restore: %v", err)
	}
	_, err = c.Stats(ctx)
	if !IsUnavailable(err) || !IsTransient(err) || !errors.As(err, &e) || e.RetryAfter != 3*time.Second {
		t.Errorf("stats: %v", err)
	}
	_, err = c.Conflicts(ctx)
	if !errors.As(err, &e) || e.Status != 500 || e.Message != "plain text failure" || !IsTransient(err) || IsUnavailable(err) {
		t.Errorf("conflicts: %#v", err)
	}
}

func TestCompressedRequests(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Encoding") != "zstd" {
			t.Errorf("request not compressed")
		}
		dec, _ := zstd.NewReader(r.Body)
		var req proto.MissingBlocksRequest
		if err := json.NewDecoder(dec).Decode(&req); err != nil {
			t.Errorf("decode: %v", err)
		}
		writeJSON(w, 200, proto.MissingBlocksResponse{Missing: req.Hashes[:1]})
	}), func(o *Options) { o.CompressRequests = true })
	hashes := make([]string, 100)
	for i := range hashes {
		hashes[i] = hashOf([]byte{byte(i)})
	}
	got, err := c.MissingBlocks(context.Background(), hashes)
	if err != nil || len(got) != 1 || got[0] != hashes[0] {
		t.Errorf("MissingBlocks = %v, %v", got, err)
	}
}

func TestUnreachableServerIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := New(Options{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Healthz(context.Background())
	if !IsUnavailable(err) || !IsTransient(err) {
		t.Errorf("err %v, want unavailable", err)
	}
}

func TestTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "ok"})
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{BaseURL: srv.URL, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Healthz(context.Background()); err != nil {
		t.Errorf("with CA: %v", err)
	}
	plain, _ := New(Options{BaseURL: srv.URL})
	if err := plain.Healthz(context.Background()); err == nil {
		t.Errorf("without CA the server's certificate was accepted")
	}
	if _, err := New(Options{BaseURL: srv.URL, CAFile: filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Errorf("missing CA file accepted")
	}
}

func TestBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := New(Options{BaseURL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
