package syncserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func TestCommitBlocksThenDownload(t *testing.T) {
	e := newEnv(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80 000 bytes, 3 blocks
	res := e.commitFile("docs/a.txt", 0, content, 32<<10)
	if res.Status != proto.StatusOK || res.Entry == nil || res.Entry.Seq != 1 || len(res.Entry.Blocks) != 3 {
		t.Fatalf("commit result %+v", res)
	}
	code, body := e.do("GET", proto.RouteFile+"?path=docs/a.txt", nil, nil)
	if code != 200 || !bytes.Equal(body, content) {
		t.Fatalf("GET file: %d, %d bytes", code, len(body))
	}
	var ent proto.Entry
	if code, raw := e.do("GET", proto.RouteEntry+"?path=docs/a.txt", nil, &ent); code != 200 || ent.SHA256 != sha(content) || ent.ModifiedBy != "anonymous" {
		t.Fatalf("GET entry: %d %s", code, raw)
	}

	// A second version on the right base; the first stays downloadable by seq.
	v2 := []byte("second version")
	if r := e.commit(inlineItem("docs/a.txt", 1, v2))[0]; r.Status != proto.StatusOK || r.Entry.Seq != 2 {
		t.Fatalf("commit v2: %+v", r)
	}
	if code, body := e.do("GET", proto.RouteFile+"?path=docs/a.txt&seq=1", nil, nil); code != 200 || !bytes.Equal(body, content) {
		t.Fatalf("GET file seq=1: %d", code)
	}
	if code, body := e.do("GET", proto.RouteFile+"?path=docs/a.txt", nil, nil); code != 200 || !bytes.Equal(body, v2) {
		t.Fatalf("GET file current: %d %q", code, body)
	}
}

func TestCommitStaleBaseConflicts(t *testing.T) {
	e := newEnv(t)
	if r := e.commit(inlineItem("x", 0, []byte("one")))[0]; r.Status != proto.StatusOK {
		t.Fatalf("%+v", r)
	}
	before := e.snapshot()
	r := e.commit(inlineItem("x", 0, []byte("two")))[0]
	if r.Status != proto.StatusConflict || r.Entry == nil || r.Entry.Seq != 1 || r.Entry.SHA256 != sha([]byte("one")) {
		t.Fatalf("stale base: %+v", r)
	}
	if after := e.snapshot(); after.seq != before.seq || after.audit != before.audit {
		t.Fatalf("a conflict changed the store: %+v → %+v", before, after)
	}
}

func TestCommitBatchItemsCheckedOnTheirOwn(t *testing.T) {
	e := newEnv(t)
	missing := bytes.Repeat([]byte{7}, 100)
	items := []proto.CommitItem{
		inlineItem("ok1", 0, []byte("a")),
		{Path: "../escape", Type: proto.TypeFile, Size: 1, SHA256: sha([]byte("b")), Data: []byte("b")},
		{Path: "lacks-block", Type: proto.TypeFile, Size: 100, SHA256: sha(missing), Blocks: []proto.Block{{Hash: sha(missing), Size: 100}}},
		{Path: "wrong-sum", Type: proto.TypeFile, Size: 3, SHA256: sha([]byte("abc")), Blocks: []proto.Block{{Hash: sha([]byte("ab")), Size: 2}}},
		{Path: "dir", Type: proto.TypeDir, Mode: 0o755},
		{Path: "link", Type: proto.TypeSymlink, Target: "dir"},
		inlineItem("bad-inline", 0, []byte("zz")),
		inlineItem("empty", 0, []byte{}),
	}
	items[6].SHA256 = sha([]byte("yy"))
	res := e.commit(items...)
	want := []string{proto.StatusOK, proto.StatusError, proto.StatusError, proto.StatusError, proto.StatusOK, proto.StatusOK, proto.StatusError, proto.StatusOK}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("item %d (%s): status %s (%s), want %s", i, r.Path, r.Status, r.Error, want[i])
		}
		if r.Path != items[i].Path {
			t.Errorf("item %d: path %q, want %q", i, r.Path, items[i].Path)
		}
	}
	if !strings.Contains(res[2].Error, "not stored") || !strings.Contains(res[3].Error, "add up") {
		t.Errorf("errors not clear: %q / %q", res[2].Error, res[3].Error)
	}
	if st := e.snapshot(); st.seq != 4 {
		t.Fatalf("seq %d after 4 good items", st.seq)
	}
}

func TestCommitRefusesBlocksWhoseContentIsNotTheFile(t *testing.T) {
	e := newEnv(t)
	a, b := []byte("first block "), []byte("second block")
	ha, hb := e.putBlock(a), e.putBlock(b)
	before := e.snapshot()
	// The right blocks in the wrong order: sizes add up, the whole SHA-256 does not.
	it := proto.CommitItem{Path: "f", Type: proto.TypeFile, Size: int64(len(a) + len(b)),
		SHA256: sha(append(append([]byte{}, a...), b...)), Blocks: []proto.Block{{Hash: hb, Size: int64(len(b))}, {Hash: ha, Size: int64(len(a))}}}
	r := e.commit(it)[0]
	if r.Status != proto.StatusError || !strings.Contains(r.Error, "SHA-256") {
		t.Fatalf("swapped blocks: %+v", r)
	}
	// A block listed with a size other than its stored one.
	it2 := proto.CommitItem{Path: "g", Type: proto.TypeFile, Size: int64(len(a)) + 1, SHA256: sha(a),
		Blocks: []proto.Block{{Hash: ha, Size: int64(len(a)) + 1}}}
	if r := e.commit(it2)[0]; r.Status != proto.StatusError || !strings.Contains(r.Error, "bytes") {
		t.Fatalf("wrong block size: %+v", r)
	}
	if after := e.snapshot(); after.seq != before.seq || after.audit != before.audit {
		t.Fatalf("refused commits changed the store: %+v → %+v", before, after)
	}
}

func TestChangesLongPollWakesOnCommit(t *testing.T) {
	e := newEnv(t)
	e.commit(inlineItem("a", 0, []byte("a")))
	var first proto.ChangesResponse
	if code, raw := e.do("GET", proto.RouteChanges+"?since=0", nil, &first); code != 200 || len(first.Entries) != 1 || first.LastSeq != 1 || first.FolderID == "" {
		t.Fatalf("changes: %d %s", code, raw)
	}

	type answer struct {
		resp    proto.ChangesResponse
		elapsed time.Duration
	}
	got := make(chan answer, 1)
	start := time.Now()
	go func() {
		var r proto.ChangesResponse
		e.do("GET", proto.RouteChanges+"?since=1&wait=30s", nil, &r)
		got <- answer{r, time.Since(start)}
	}()
	// Wait until the poll is parked, then commit.
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.waiting() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the long poll never parked")
		}
		time.Sleep(time.Millisecond)
	}
	var stats proto.Stats
	e.do("GET", proto.RouteStats, nil, &stats)
	if stats.AgentsConnected != 1 {
		t.Errorf("stats while polling: agentsConnected %d", stats.AgentsConnected)
	}
	e.commit(inlineItem("b", 0, []byte("b")))
	select {
	case a := <-got:
		if len(a.resp.Entries) != 1 || a.resp.Entries[0].Path != "b" || a.resp.LastSeq != 2 {
			t.Fatalf("woken answer %+v", a.resp)
		}
		if a.elapsed > 10*time.Second {
			t.Fatalf("long poll answered after %v, not on the commit", a.elapsed)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long poll not woken by a commit")
	}

	// An empty wait that times out answers an empty page with the same cursor.
	var empty proto.ChangesResponse
	if code, _ := e.do("GET", proto.RouteChanges+"?since=2&wait=50ms", nil, &empty); code != 200 || len(empty.Entries) != 0 || empty.LastSeq != 2 {
		t.Fatalf("timed-out poll: %d %+v", code, empty)
	}
	// limit pages the feed.
	var page proto.ChangesResponse
	e.do("GET", proto.RouteChanges+"?since=0&limit=1", nil, &page)
	if len(page.Entries) != 1 || !page.More || page.LastSeq != 1 {
		t.Fatalf("limited page %+v", page)
	}
}

func TestShutdownEndsLongPolls(t *testing.T) {
	e := newEnv(t)
	done := make(chan int, 1)
	go func() {
		code, _ := e.do("GET", proto.RouteChanges+"?since=0&wait=60s", nil, nil)
		done <- code
	}()
	for e.srv.waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	e.srv.Shutdown()
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("poll answered %d on shutdown", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not end the long poll")
	}
}

func TestMissingAndBlockTransfer(t *testing.T) {
	e := newEnv(t)
	data := bytes.Repeat([]byte("compressible text "), 4000)
	h := sha(data)
	other := sha([]byte("never uploaded"))
	var miss proto.MissingBlocksResponse
	e.do("POST", proto.RouteBlocksMissing, proto.MissingBlocksRequest{Hashes: []string{h, other}}, &miss)
	if len(miss.Missing) != 2 {
		t.Fatalf("missing before upload: %v", miss.Missing)
	}

	// zstd upload.
	enc, _ := zstd.NewWriter(nil)
	compressed := enc.EncodeAll(data, nil)
	var put PutBlockResponse
	code, raw := e.do("PUT", proto.RouteBlocks+h, compressed, &put, "Content-Encoding", "zstd")
	if code != http.StatusCreated || !put.Created || put.Size != int64(len(data)) {
		t.Fatalf("zstd PUT: %d %s", code, raw)
	}
	// The same block again is a dedup hit.
	if code, _ := e.do("PUT", proto.RouteBlocks+h, data, &put); code != http.StatusOK || put.Created {
		t.Fatalf("second PUT: %d %+v", code, put)
	}
	e.do("POST", proto.RouteBlocksMissing, proto.MissingBlocksRequest{Hashes: []string{h, other}}, &miss)
	if len(miss.Missing) != 1 || miss.Missing[0] != other {
		t.Fatalf("missing after upload: %v", miss.Missing)
	}

	// Plain GET.
	if code, body := e.do("GET", proto.RouteBlocks+h, nil, nil); code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET block: %d, %d bytes", code, len(body))
	}
	// zstd GET: the raw answer is compressed and decodes to the block.
	req, _ := http.NewRequest("GET", e.http.URL+proto.RouteBlocks+h, nil)
	req.Header.Set("Accept-Encoding", "zstd")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	zbody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "zstd" || len(zbody) >= len(data) {
		t.Fatalf("zstd GET: encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(zbody))
	}
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(zbody, nil)
	if err != nil || !bytes.Equal(plain, data) {
		t.Fatalf("zstd GET decodes wrong: %v", err)
	}
	if code, _ := e.do("GET", proto.RouteBlocks+other, nil, nil); code != 404 {
		t.Fatalf("GET unknown block: %d", code)
	}
}

// TestRandomBlockIsServedPlain: a block of random-looking bytes is answered as it is,
// even to a client that accepts zstd (compressing it would only cost CPU on both ends),
// with its length, and its bytes are the block's.
func TestRandomBlockIsServedPlain(t *testing.T) {
	e := newEnv(t)
	data := make([]byte, 300<<10)
	rnd := mrand.New(mrand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rnd.Uint32())
	}
	h := sha(data)
	if code, raw := e.do("PUT", proto.RouteBlocks+h, data, nil); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, raw)
	}
	req, _ := http.NewRequest("GET", e.http.URL+proto.RouteBlocks+h, nil)
	req.Header.Set("Accept-Encoding", "zstd")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(data)) {
		t.Fatalf("GET: %d, encoding %q, length %d", resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.ContentLength)
	}
	if !bytes.Equal(body, data) {
		t.Fatalf("GET: %d bytes, not the block's", len(body))
	}
}

func TestDeleteVersionsRestoreConflictsAudit(t *testing.T) {
	e := newEnv(t)
	e.commit(inlineItem("notes.txt", 0, []byte("v1")))
	e.commit(inlineItem("notes.txt", 1, []byte("v2")))

	var del proto.CommitResponse
	e.do("POST", proto.RouteDelete, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: "notes.txt", BaseSeq: 1}, {Path: "nothing", BaseSeq: 3}}}, &del)
	if del.Results[0].Status != proto.StatusConflict || del.Results[0].Entry.Seq != 2 || del.Results[1].Status != proto.StatusError {
		t.Fatalf("stale delete: %+v", del.Results)
	}
	e.do("POST", proto.RouteDelete, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: "notes.txt", BaseSeq: 2}}}, &del)
	if r := del.Results[0]; r.Status != proto.StatusOK || !r.Entry.Deleted || r.Entry.Seq != 3 {
		t.Fatalf("delete: %+v", r)
	}
	// A retried delete of the same base succeeds without a new change.
	e.do("POST", proto.RouteDelete, proto.DeleteRequest{Items: []proto.DeleteItem{{Path: "notes.txt", BaseSeq: 3}}}, &del)
	if r := del.Results[0]; r.Status != proto.StatusOK || r.Entry.Seq != 3 {
		t.Fatalf("retried delete: %+v", r)
	}
	if code, _ := e.do("GET", proto.RouteFile+"?path=notes.txt", nil, nil); code != 404 {
		t.Fatalf("GET deleted file: %d", code)
	}

	var vs proto.VersionsResponse
	e.do("GET", proto.RouteVersions+"?path=notes.txt", nil, &vs)
	if len(vs.Versions) != 3 || vs.Versions[0].Seq != 3 || !vs.Versions[0].Deleted {
		t.Fatalf("versions %+v", vs)
	}
	var rr proto.CommitResponse
	e.do("POST", proto.RouteRestore, proto.RestoreRequest{Path: "notes.txt", Seq: 1, BaseSeq: 2}, &rr)
	if r := rr.Results[0]; r.Status != proto.StatusConflict {
		t.Fatalf("restore on a stale base: %+v", r)
	}
	e.do("POST", proto.RouteRestore, proto.RestoreRequest{Path: "notes.txt", Seq: 1, BaseSeq: 3}, &rr)
	if r := rr.Results[0]; r.Status != proto.StatusOK || r.Entry.Seq != 4 {
		t.Fatalf("restore: %+v", r)
	}
	if code, body := e.do("GET", proto.RouteFile+"?path=notes.txt", nil, nil); code != 200 || string(body) != "v1" {
		t.Fatalf("restored content: %d %q", code, body)
	}

	cp := proto.ConflictPath("notes.txt", "laptop", time.Now())
	e.commit(inlineItem(cp, 0, []byte("mine")))
	var cf proto.ConflictsResponse
	e.do("GET", proto.RouteConflicts, nil, &cf)
	if len(cf.Conflicts) != 1 || cf.Conflicts[0].Path != cp {
		t.Fatalf("conflicts %+v", cf)
	}

	var audit proto.AuditResponse
	e.do("GET", proto.RouteAudit+"?path=notes.txt", nil, &audit)
	var actions []string
	for _, a := range audit.Records {
		actions = append(actions, a.Action)
	}
	if got := strings.Join(actions, ","); got != "restore,delete,upload,upload" {
		t.Fatalf("audit actions newest first: %s", got)
	}
	e.do("GET", proto.RouteAudit+"?limit=1", nil, &audit)
	if len(audit.Records) != 1 || audit.Records[0].Path != cp {
		t.Fatalf("audit limit=1: %+v", audit.Records)
	}

	var st proto.Stats
	e.do("GET", proto.RouteStats, nil, &st)
	if st.Files != 2 || st.Seq != 5 || st.Conflicts != 1 || st.Blocks < 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConcurrentCommitsOnePathOneWinner(t *testing.T) {
	e := newEnv(t)
	const n = 8
	var wg sync.WaitGroup
	results := make([]proto.ItemResult, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.commit(inlineItem("race", 0, []byte(fmt.Sprint("writer ", i))))[0]
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		if r.Status == proto.StatusOK {
			ok++
		} else if r.Status != proto.StatusConflict {
			t.Errorf("unexpected %+v", r)
		}
	}
	if ok != 1 {
		t.Fatalf("%d writers won on base 0, want exactly 1", ok)
	}
}

func TestMetricsAndRequestLog(t *testing.T) {
	e := newEnv(t)
	e.commit(inlineItem("m", 0, []byte("metrics")))
	e.do("GET", proto.RouteFile+"?path=m", nil, nil)
	e.do("GET", "/no/such/route/with/a/raw/path", nil, nil)
	code, raw := e.do("GET", proto.RouteMetrics, nil, nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	text := string(raw)
	for _, want := range []string{
		`sync_uploads_total 1`,
		`sync_requests_total{endpoint="/v1/commit",method="POST"} 1`,
		`sync_requests_total{endpoint="/v1/file",method="GET"} 1`,
		`sync_request_duration_seconds_bucket{endpoint="/v1/commit",method="POST",le="+Inf"} 1`,
		`sync_live_entries{type="file"} 1`,
		`sync_blocks 1`,
		`sync_blocks_stored_total 1`,
		`sync_changes_waiting 0`,
		`sync_received_bytes_total`,
		`sync_sent_bytes_total`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, "/no/such/route") {
		t.Error("a raw path became a label value")
	}

	// The request id is echoed, or made up.
	req, _ := http.NewRequest("GET", e.http.URL+proto.RouteHealthz, nil)
	req.Header.Set(HeaderRequestID, "abc-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(HeaderRequestID) != "abc-123" {
		t.Fatalf("request id not echoed: %q", resp.Header.Get(HeaderRequestID))
	}
}

func TestMaintenancePrunesAndCollects(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) {
		c.Retention = &store.Retention{Keep: 1}
		c.GCGrace = time.Nanosecond
	}))
	v := [][]byte{[]byte("version one"), []byte("version two"), []byte("version three")}
	var base int64
	for _, c := range v {
		base = e.commit(inlineItem("f", base, c))[0].Entry.Seq
	}
	orphan := e.putBlock([]byte("uploaded, never committed"))
	time.Sleep(5 * time.Millisecond)
	res, err := e.srv.Maintain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.PrunedVersions != 1 || res.RemovedBlocks != 2 {
		t.Fatalf("maintenance %+v; want 1 version pruned, its block and the orphan removed", res)
	}
	if ok, _ := e.blocks.Has(orphan); ok {
		t.Fatal("orphan block survived GC")
	}
	for _, seq := range []int64{2, 3} {
		code, body := e.do("GET", fmt.Sprintf("%s?path=f&seq=%d", proto.RouteFile, seq), nil, nil)
		if code != 200 || !bytes.Equal(body, v[seq-1]) {
			t.Fatalf("retained version %d: %d %q", seq, code, body)
		}
	}
	if code, _ := e.do("GET", proto.RouteFile+"?path=f&seq=1", nil, nil); code != 404 {
		t.Fatalf("pruned version still served: %d", code)
	}
}

func TestReadyAndHealth(t *testing.T) {
	e := newEnv(t)
	if code, _ := e.do("GET", proto.RouteHealthz, nil, nil); code != 200 {
		t.Fatal(code)
	}
	if code, _ := e.do("GET", proto.RouteReadyz, nil, nil); code != 200 {
		t.Fatal(code)
	}
	var body map[string]string
	if code, _ := e.do("GET", "/v2/nothing", nil, &body); code != 404 || body["error"] == "" {
		t.Fatalf("unknown route: %d %v", code, body)
	}
}

func TestZstdRequestBodies(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.MaxCommitBody = 1 << 20 }))
	enc, _ := zstd.NewWriter(nil)
	body, _ := json.Marshal(proto.CommitRequest{Items: []proto.CommitItem{inlineItem("z.txt", 0, []byte("compressed commit"))}})
	var resp proto.CommitResponse
	code, raw := e.do("POST", proto.RouteCommit, enc.EncodeAll(body, nil), &resp, "Content-Encoding", "zstd")
	if code != 200 || len(resp.Results) != 1 || resp.Results[0].Status != proto.StatusOK {
		t.Fatalf("zstd commit: %d %s", code, raw)
	}
	// A small compressed body that inflates past the limit is refused, not inflated.
	bomb, _ := json.Marshal(proto.CommitRequest{Items: []proto.CommitItem{inlineItem("bomb", 0, bytes.Repeat([]byte{0}, 2<<20))}})
	before := e.snapshot()
	code, raw = e.do("POST", proto.RouteCommit, enc.EncodeAll(bomb, nil), nil, "Content-Encoding", "zstd")
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("zstd bomb: %d %s", code, raw)
	}
	if code, raw := e.do("POST", proto.RouteDelete, []byte("not zstd at all"), nil, "Content-Encoding", "zstd"); code != 400 {
		t.Fatalf("broken zstd body: %d %s", code, raw)
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("refused bodies changed the folder: %+v → %+v", before, after)
	}
}

func TestPeriodicMaintenance(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) {
		c.Retention = &store.Retention{Keep: 0}
		c.GCGrace = time.Nanosecond
	}))
	e.commit(inlineItem("p", 0, []byte("old")))
	e.commit(inlineItem("p", 1, []byte("new")))
	e.srv.cfg.GCInterval = 20 * time.Millisecond
	e.srv.Start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		vs, err := e.store.Versions(context.Background(), "p")
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := e.blocks.Has(sha([]byte("old"))); len(vs) == 1 && !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("maintenance never pruned: %d versions", len(vs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := e.do("GET", proto.RouteFile+"?path=p", nil, nil); code != 200 || string(body) != "new" {
		t.Fatalf("current version after maintenance: %d %q", code, body)
	}
}

// TestInlinedContentIsStoredUnderItsOwnHashOnly: the server hashes inlined content once
// and hands that SHA-256 to the block store; an item whose one block is named by another
// hash is refused and stores nothing, and a good item's block reads back as sent.
func TestInlinedContentIsStoredUnderItsOwnHashOnly(t *testing.T) {
	e := newEnv(t)
	good, other := []byte("inlined content"), []byte("another content")
	bad := inlineItem("bad", 0, good)
	bad.Blocks = []proto.Block{{Hash: sha(other), Size: int64(len(good))}}
	before := e.snapshot()
	res := e.commit(bad)
	if res[0].Status != proto.StatusError || !strings.Contains(res[0].Error, "only block") {
		t.Fatalf("item naming another block: %+v", res[0])
	}
	if after := e.snapshot(); after != before {
		t.Fatalf("a refused inline item changed the server: %+v -> %+v", before, after)
	}
	if res := e.commit(inlineItem("good", 0, good)); res[0].Status != proto.StatusOK {
		t.Fatalf("good item: %+v", res[0])
	}
	f, _, err := e.blocks.Open(sha(good))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := io.ReadAll(f); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("block of the good item: %q, %v", got, err)
	}
}
