package syncserver

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A commit's deletes are applied in its transaction: a rename (the new path copying the
// old one's version, and the old path's delete) reaches the feed as two entries of
// consecutive seqs, with the results of the deletes after the items'. A delete is
// checked as on /v1/delete (stale: conflict; unknown: error), and one naming a path the
// same commit writes is refused; neither changes the items. Both encodings, as frames
// and as JSON.
func TestCommitCarriesDeletes(t *testing.T) {
	for _, frames := range []bool{true, false} {
		e := newEnv(t)
		cl, err := client.New(client.Options{BaseURL: e.http.URL, JSONCommits: !frames})
		if err != nil {
			t.Fatal(err)
		}
		content := make([]byte, 3<<20)
		for i := range content {
			content[i] = byte(i * 7)
		}
		old := e.commitFile("old.bin", 0, content, 1<<20)
		other := e.commit(inlineItem("other.txt", 0, []byte("other")))[0]
		ctx := context.Background()
		item := proto.CommitItem{Path: "new.bin", Type: proto.TypeFile, Size: int64(len(content)), Mode: 0o644, MTimeNs: 1,
			SHA256: sha(content), CopyFrom: &proto.ContentRef{Path: "old.bin", Seq: old.Entry.Seq}}
		deletes := []proto.DeleteItem{
			{Path: "old.bin", BaseSeq: old.Entry.Seq},
			{Path: "other.txt", BaseSeq: other.Entry.Seq + 5}, // stale
			{Path: "never.txt", BaseSeq: 3},                   // unknown
			{Path: "new.bin", BaseSeq: 1},                     // written by the commit
		}
		res, deleted, err := cl.CommitDeletesFunc(ctx, 1, func(int) (proto.CommitItem, error) { return item, nil }, deletes)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Status != proto.StatusOK {
			t.Fatalf("frames=%v: item results %+v", frames, res)
		}
		want := []string{proto.StatusOK, proto.StatusConflict, proto.StatusError, proto.StatusError}
		for i, r := range deleted {
			if r.Path != deletes[i].Path || r.Status != want[i] {
				t.Errorf("frames=%v: delete %d: %s %s (%s); want %s", frames, i, r.Path, r.Status, r.Error, want[i])
			}
		}
		if len(deleted) != len(want) {
			t.Fatalf("frames=%v: %d delete results", frames, len(deleted))
		}
		if !deleted[0].Entry.Deleted || deleted[0].Entry.Seq != res[0].Entry.Seq+1 {
			t.Errorf("frames=%v: old.bin %+v, new.bin at seq %d; want a tombstone right after it", frames, deleted[0].Entry, res[0].Entry.Seq)
		}
		got, err := cl.Changes(ctx, old.Entry.Seq, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, en := range got.Entries {
			paths = append(paths, en.Path)
		}
		if len(paths) != 3 || paths[1] != "new.bin" || paths[2] != "old.bin" || !got.Entries[2].Deleted {
			t.Errorf("frames=%v: feed after old.bin: %v", frames, paths)
		}
		if ent, err := cl.Entry(ctx, "other.txt"); err != nil || ent.Deleted {
			t.Errorf("frames=%v: other.txt %+v, %v; want it kept", frames, ent, err)
		}
	}
}

// Items and deletes together count against the batch limit, in both encodings; under
// it, the deletes are decoded as sent.
func TestCommitDeletesCountAgainstTheBatchLimit(t *testing.T) {
	item := proto.CommitItem{Path: "a", Type: proto.TypeDir, Mode: 0o755}
	deletes := []proto.DeleteItem{{Path: "b", BaseSeq: 1}, {Path: "c", BaseSeq: 2}}
	body := func(n int) []byte {
		b, err := json.Marshal(proto.CommitRequest{Items: []proto.CommitItem{item}, Deletes: deletes[:n]})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	framed := func(n int) []byte {
		var buf bytes.Buffer
		h, _ := json.Marshal(proto.CommitFramesHeader{Items: 1, Deletes: deletes[:n]})
		it, _ := json.Marshal(item)
		for _, f := range [][]byte{h, it, nil} {
			if err := proto.WriteFrame(&buf, f); err != nil {
				t.Fatal(err)
			}
		}
		return buf.Bytes()
	}
	arena := &frameArena{}
	defer arena.release()
	for n, ok := range map[int]bool{1: true, 2: false} {
		req, err := decodeCommit(bytes.NewReader(body(n)), 2)
		if (err == nil) != ok || ok && !slices.Equal(req.Deletes, deletes[:n]) {
			t.Errorf("JSON, 1 item and %d deletes, at most 2: %+v, %v", n, req.Deletes, err)
		}
		req, err = decodeCommitFrames(bytes.NewReader(framed(n)), 2, 1<<20, arena)
		if (err == nil) != ok || ok && !slices.Equal(req.Deletes, deletes[:n]) {
			t.Errorf("frames, 1 item and %d deletes, at most 2: %+v, %v", n, req.Deletes, err)
		}
	}
}
