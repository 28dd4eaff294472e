package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/execute"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestOwnCommitsEchoIsNotWrittenAgain: the feed entry of our own commit, at the seq the
// commit's answer recorded in full, leaves the remote tree and table alone; a later seq
// of the same path is recorded.
func TestOwnCommitsEchoIsNotWrittenAgain(t *testing.T) {
	srv := startServer(t)
	a := newAgent(t, srv, t.TempDir(), "A", nil)
	ctx := context.Background()
	mine := proto.Entry{Path: "f", Type: proto.TypeFile, Size: 1, SHA256: sha("a"), Seq: 7,
		Blocks: []proto.Block{{Hash: sha("a"), Size: 1}}}
	// As recordCommit leaves it: the remote tree, floor and recorded seq of the answer.
	n, err := state.NodeOf(mine)
	if err != nil {
		t.Fatal(err)
	}
	a.trees.Remote.Set("f", n)
	a.own["f"] = execute.OwnSeq{Floor: 7, Recorded: 7}
	// A feed entry at that seq that differed (it cannot; the server has one entry per
	// seq) would show whether the echo was written.
	echo := mine
	echo.SHA256, echo.Blocks = sha("b"), []proto.Block{{Hash: sha("b"), Size: 1}}
	page1 := page{resp: &proto.ChangesResponse{FolderID: "F", Entries: []proto.Entry{echo}, LastSeq: 7}}
	if err := a.applyPage(ctx, page1); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.trees.Remote.Get("f"); n.SHA256.String() != sha("a") {
		t.Fatal("the echo of our own recorded commit was written again")
	}
	if _, ok := a.own["f"]; ok {
		t.Error("the recorded seq outlived the cursor passing it")
	}
	later := echo
	later.Seq = 9
	page2 := page{resp: &proto.ChangesResponse{FolderID: "F", Entries: []proto.Entry{later}, LastSeq: 9}}
	if err := a.applyPage(ctx, page2); err != nil {
		t.Fatal(err)
	}
	blocks, err := a.db.RemoteBlocks("f")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := a.trees.Remote.Get("f"); n.SHA256.String() != sha("b") || n.Seq != 9 || !slices.Equal(blocks, later.Blocks) {
		t.Fatalf("a later entry was not recorded: %+v, blocks %v", n, blocks)
	}
}

// TestFeedEntryWithABadHashIsRefused: a page with an entry whose hash is not one is an
// error naming the path, and neither the cursor nor the remote table moves.
func TestFeedEntryWithABadHashIsRefused(t *testing.T) {
	srv := startServer(t)
	a := newAgent(t, srv, t.TempDir(), "A", nil)
	bad := proto.Entry{Path: "f", Type: proto.TypeFile, Size: 1, SHA256: strings.ToUpper(sha("a")), Seq: 3,
		Blocks: []proto.Block{{Hash: sha("a"), Size: 1}}}
	p := page{resp: &proto.ChangesResponse{FolderID: "F", Entries: []proto.Entry{bad}, LastSeq: 3}}
	err := a.applyPage(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Fatalf("applyPage: %v, want an error naming the path", err)
	}
	if a.cursor != 0 {
		t.Errorf("cursor moved to %d", a.cursor)
	}
	if blocks, err := a.db.RemoteBlocks("f"); err == nil && blocks != nil {
		t.Errorf("the remote table holds the entry: %v", blocks)
	}
	if _, ok := a.trees.Remote.Get("f"); ok {
		t.Error("the remote tree holds the entry")
	}
}

// TestOwnCommitsLeaveTheRemoteTableComplete: after an upload whose answers come without
// block lists (the agent fills them in) and their echo in the feed, the remote table
// holds every file's entry and block list, as a restart reads them.
func TestOwnCommitsLeaveTheRemoteTableComplete(t *testing.T) {
	srv := startServer(t)
	dir := filepath.Join(t.TempDir(), "a")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(rand.Uint32())
	}
	write(t, filepath.Join(dir, "big.bin"), string(big))
	write(t, filepath.Join(dir, "d/small.txt"), "small")
	write(t, filepath.Join(dir, "empty"), "")
	a := newAgent(t, srv, dir, "A", nil)
	once(t, a)
	once(t, a) // the echo has come back by now
	a.Close()
	a2 := newAgent(t, srv, dir, "A", nil)
	for _, p := range []string{"big.bin", "d/small.txt", "empty"} {
		local, err := a2.db.LocalBlocks(p)
		if err != nil {
			t.Fatal(err)
		}
		remote, err := a2.db.RemoteBlocks(p)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := a2.trees.Remote.Get(p)
		idx, _ := a2.trees.Index.Get(p)
		if !slices.Equal(remote, local) || r.SHA256 != idx.SHA256 || r.Seq == 0 {
			t.Errorf("%s: remote %+v with %d blocks; local %s with %d", p, r, len(remote), idx.SHA256, len(local))
		}
	}
}
