package syncserver

import (
	"bytes"
	"context"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// compactBatch commits, besides what it returns, a.bin (4 blocks) and c.txt, and returns
// items of each kind: an inlined file, a file of listed blocks, a dir, a symlink, a copy
// of a.bin (its list is the server's), a stale write of c.txt (conflict) and a bad path
// (error).
func compactBatch(t *testing.T, e *testEnv) []proto.CommitItem {
	t.Helper()
	content := bigContent(4, 'a')
	src := e.commitFile("a.bin", 0, content, 1024)
	if r := e.commit(inlineItem("c.txt", 0, []byte("c"))); r[0].Status != proto.StatusOK {
		t.Fatalf("commit c.txt: %+v", r[0])
	}
	listed := bigContent(2, 'l')
	blocks := []proto.Block{{Hash: e.putBlock(listed[:1024]), Size: 1024}, {Hash: e.putBlock(listed[1024:]), Size: int64(len(listed) - 1024)}}
	return []proto.CommitItem{
		inlineItem("x.txt", 0, []byte("inlined")),
		{Path: "l.bin", Type: proto.TypeFile, Size: int64(len(listed)), Mode: 0o600, MTimeNs: 7, SHA256: sha(listed), Blocks: blocks},
		{Path: "d", Type: proto.TypeDir, Mode: 0o755, MTimeNs: 3},
		{Path: "d/link", Type: proto.TypeSymlink, MTimeNs: 4, Target: "../x.txt"},
		{Path: "b.bin", Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644, MTimeNs: 5, SHA256: sha(content),
			CopyFrom: &proto.ContentRef{Path: "a.bin", Seq: src.Entry.Seq}},
		inlineItem("c.txt", 0, []byte("stale")),
		inlineItem("../bad", 0, []byte("bad")),
	}
}

// A commit that asks for compact results gets, for each ok item whose new entry is the
// item's, its seq alone, and the answer's agent and time: the item's entry at that seq
// by that agent at that time is the stored entry. A copy (whose list is the server's), a
// conflict and an error keep what they said before; without the flag every ok item has
// its entry.
func TestCompactResultsStandForTheItemsEntries(t *testing.T) {
	e := newEnv(t)
	items := compactBatch(t, e)
	var resp proto.CommitResponse
	code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: items, CompactResults: true}, &resp)
	if code != 200 || len(resp.Results) != len(items) {
		t.Fatalf("commit: %d %s", code, raw)
	}
	if bytes.Contains(raw, []byte(items[0].SHA256)) || bytes.Contains(raw, []byte(items[1].Blocks[0].Hash)) {
		t.Errorf("the compact answer repeats what the items said: %s", raw)
	}
	if resp.ModifiedBy == "" || resp.ModifiedAt.IsZero() {
		t.Fatalf("the answer names no agent or time: %s", raw)
	}
	for i, r := range resp.Results[:4] {
		if r.Status != proto.StatusOK || r.Entry != nil || r.Seq <= 0 {
			t.Fatalf("%s: %+v; want ok with a seq and no entry", items[i].Path, r)
		}
		_, stored := e.entry("path=" + items[i].Path)
		if got := items[i].Entry(r.Seq, resp.ModifiedBy, resp.ModifiedAt); !proto.SameEntry(got, stored) {
			t.Errorf("%s: the result stands for %+v; the server holds %+v", items[i].Path, got, stored)
		}
	}
	if r := resp.Results[4]; r.Status != proto.StatusOK || r.Entry == nil || r.Seq != 0 || len(r.Entry.Blocks) != 4 {
		t.Errorf("copy: %+v; want its entry with the copied list", r)
	}
	if r := resp.Results[5]; r.Status != proto.StatusConflict || r.Entry == nil || r.Entry.SHA256 != sha([]byte("c")) {
		t.Errorf("stale write: %+v; want a conflict with the current entry", r)
	}
	if r := resp.Results[6]; r.Status != proto.StatusError || r.Entry != nil || r.Seq != 0 {
		t.Errorf("bad path: %+v; want an error alone", r)
	}

	// Without the flag, as before.
	more := []proto.CommitItem{inlineItem("y.txt", 0, []byte("y"))}
	resp = proto.CommitResponse{}
	if code, raw := e.do("POST", proto.RouteCommit, proto.CommitRequest{Items: more}, &resp); code != 200 {
		t.Fatalf("commit: %d %s", code, raw)
	}
	if r := resp.Results[0]; r.Entry == nil || r.Seq != 0 || !resp.ModifiedAt.IsZero() {
		t.Errorf("without compactResults: %+v (answer at %v); want the entry", r, resp.ModifiedAt)
	}
}

// The Go client asks for compact results, as frames and as JSON, and hands back full
// entries, the stored ones; with OmitCommitBlocks, without their lists, as the server
// would have sent them.
func TestClientExpandsCompactResults(t *testing.T) {
	for _, frames := range []bool{true, false} {
		for _, omit := range []bool{false, true} {
			e := newEnv(t)
			items := compactBatch(t, e)
			cl, err := client.New(client.Options{BaseURL: e.http.URL, JSONCommits: !frames, OmitCommitBlocks: omit})
			if err != nil {
				t.Fatal(err)
			}
			res, err := cl.Commit(context.Background(), items)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res[:5] {
				_, stored := e.entry("path=" + items[i].Path)
				if omit {
					stored = proto.OmitBlocks(stored, 0)
				}
				if r.Status != proto.StatusOK || r.Entry == nil || r.Seq != 0 || !proto.SameEntry(*r.Entry, stored) {
					t.Errorf("frames=%v omit=%v %s: %+v; want ok with %+v", frames, omit, items[i].Path, r, stored)
				}
			}
			if r := res[5]; r.Status != proto.StatusConflict || r.Entry == nil {
				t.Errorf("frames=%v omit=%v: stale write %+v", frames, omit, r)
			}
		}
	}
}
