package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestStateSurvivesReopenAndResets(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blocks := []proto.Block{{Hash: "aa", Size: 3}, {Hash: "bb", Size: 4}, {Hash: "aa", Size: 3}}
	err = db.Update(ctx, func(tx *Tx) error {
		if err := tx.PutSynced("f", plan.Node{Type: proto.TypeFile, SHA256: hashOf("h"), Seq: 7, Size: 10}); err != nil {
			return err
		}
		if err := tx.PutRemote(proto.Entry{Path: "f", Type: proto.TypeFile, SHA256: hexOf("h"), Seq: 7, Size: 10, Blocks: blocks}); err != nil {
			return err
		}
		if err := tx.PutIndex("f", trees.IndexEntry{Type: proto.TypeFile, SHA256: hashOf("h"), Size: 10, Ino: 1 << 40}, blocks, chunk.Sums{}); err != nil {
			return err
		}
		return tx.SetCursor("folder-1", 7)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failed transaction changes nothing.
	_ = db.Update(ctx, func(tx *Tx) error {
		_ = tx.DeleteSynced("f")
		return context.Canceled
	})
	db.Close()

	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	synced, remote, index, err := treeMaps(db)
	if err != nil {
		t.Fatal(err)
	}
	if synced["f"].Seq != 7 || remote["f"].SHA256 != hashOf("h") || index["f"].Ino != 1<<40 {
		t.Errorf("reloaded %+v %+v %+v", synced, remote, index)
	}
	if got, _ := db.RemoteBlocks("f"); len(got) != 3 || got[1].Hash != "bb" {
		t.Errorf("remote blocks %+v", got)
	}
	locs, err := db.FindBlock("bb")
	if err != nil || len(locs) != 1 || locs[0].Offset != 3 || locs[0].Path != "f" {
		t.Errorf("FindBlock(bb) = %+v, %v; want f at offset 3", locs, err)
	}
	if id, cur, _ := db.Cursor(); id != "folder-1" || cur != 7 {
		t.Errorf("cursor %q %d", id, cur)
	}
	if err := db.Update(ctx, func(tx *Tx) error { return tx.ResetTrees() }); err != nil {
		t.Fatal(err)
	}
	synced, remote, index, _ = treeMaps(db)
	if len(synced) != 0 || len(remote) != 0 || len(index) != 1 {
		t.Errorf("after reset: %d synced, %d remote, %d index (the index stays)", len(synced), len(remote), len(index))
	}
	if id, cur, _ := db.Cursor(); id != "" || cur != 0 {
		t.Errorf("cursor after reset %q %d", id, cur)
	}
}

// TestUpdateLaterIsSeenByEveryLaterUse: a background transaction is begun before
// UpdateLater returns, so a read issued at once waits for it and sees its rows; a failed
// one changes nothing and its wait reports the error.
func TestUpdateLaterIsSeenByEveryLaterUse(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	blocks := []proto.Block{{Hash: "aa", Size: 3}, {Hash: "bb", Size: 4}}
	release := make(chan struct{})
	wait := db.UpdateLater(ctx, func(tx *Tx) error {
		<-release // the read below is issued while this transaction is still open
		return tx.PutIndex("f", trees.IndexEntry{Type: proto.TypeFile, SHA256: hashOf("h"), Size: 7}, blocks, chunk.Sums{})
	})
	got := make(chan []proto.Block, 1)
	go func() {
		b, _ := db.LocalBlocks("f")
		got <- b
	}()
	close(release)
	if b := <-got; len(b) != 2 || b[1].Hash != "bb" {
		t.Fatalf("a read after UpdateLater saw blocks %+v, want its two", b)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	failed := db.UpdateLater(ctx, func(tx *Tx) error {
		if err := tx.DeleteIndex("f"); err != nil {
			return err
		}
		return context.Canceled
	})
	if err := failed(); !errors.Is(err, context.Canceled) || !errors.Is(failed(), context.Canceled) {
		t.Fatalf("wait of a failed transaction = %v, want context.Canceled every time", err)
	}
	if b, _ := db.LocalBlocks("f"); len(b) != 2 {
		t.Errorf("a failed background transaction changed the index: %+v", b)
	}
}

// hashOf is a hash to stand for the content s.
func hashOf(s string) plan.Hash { return plan.HashOf([]byte(s)) }

// hexOf is hashOf(s) as the wire spells it.
func hexOf(s string) string { return hashOf(s).String() }

// A file of one block is found as that block's location through its index row, with no
// blockloc row of its own; a row an earlier agent wrote for it is not listed twice; a
// new version or a deletion of the file forgets the old content.
func TestFindBlockFindsWholeFilesOfOneBlock(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	one, two := hashOf("one"), hashOf("two")
	update := func(fn func(tx *Tx) error) {
		t.Helper()
		if err := db.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	find := func(h plan.Hash) []BlockLocation {
		t.Helper()
		locs, err := db.FindBlock(h.String())
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(locs, func(a, b BlockLocation) int { return strings.Compare(a.Path, b.Path) })
		return locs
	}
	update(func(tx *Tx) error {
		for _, p := range []string{"a", "b"} {
			if err := tx.PutIndex(p, trees.IndexEntry{Type: proto.TypeFile, SHA256: one, Size: 3}, []proto.Block{{Hash: one.String(), Size: 3}}, chunk.Sums{}); err != nil {
				return err
			}
		}
		// A symlink whose target hashes alike holds no such block.
		return tx.PutIndex("l", trees.IndexEntry{Type: proto.TypeSymlink, SHA256: one, Target: "one"}, nil, chunk.Sums{})
	})
	var rows int
	if err := db.db.QueryRow(`SELECT COUNT(*) FROM blockloc`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("blockloc holds %d rows (%v) for files of one block; want none", rows, err)
	}
	if got := find(one); len(got) != 2 || got[0] != (BlockLocation{Path: "a", Size: 3}) || got[1] != (BlockLocation{Path: "b", Size: 3}) {
		t.Errorf("FindBlock(one) = %+v; want a and b, whole", got)
	}
	// The row an earlier agent wrote for a.
	if _, err := db.db.Exec(`INSERT INTO blockloc (hash, path, off, size) VALUES (?, 'a', 0, 3)`, one.String()); err != nil {
		t.Fatal(err)
	}
	if got := find(one); len(got) != 2 {
		t.Errorf("FindBlock(one) with an earlier agent's row = %+v; want a and b once each", got)
	}
	update(func(tx *Tx) error {
		if err := tx.PutIndex("a", trees.IndexEntry{Type: proto.TypeFile, SHA256: two, Size: 3}, []proto.Block{{Hash: two.String(), Size: 3}}, chunk.Sums{}); err != nil {
			return err
		}
		return tx.DeleteIndex("b")
	})
	if got := find(one); len(got) != 0 {
		t.Errorf("FindBlock(one) after a changed and b deleted = %+v; want none", got)
	}
	if got := find(two); len(got) != 1 || got[0].Path != "a" {
		t.Errorf("FindBlock(two) = %+v; want a", got)
	}
}

// The sums kept with a block list come back as they were put, across a reopen, and
// ForgetSums drops them; sums written by an agent before marks (fast sums alone) are
// read as such, and marks cut short are dropped from there on, the fast sums kept.
func TestIndexKeepsBlockSums(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blocks := []proto.Block{{Hash: hexOf("a"), Size: 3 << 20}, {Hash: hexOf("b"), Size: 6 << 20}}
	sums := chunk.Sums{
		Fast:  []chunk.FastSum{{1, 2}, {3, 4}},
		Marks: []chunk.Mark{{Off: 8 << 20, State: []byte("state one")}, {Off: 1 << 40, State: make([]byte, 300)}},
	}
	e := trees.IndexEntry{Type: proto.TypeFile, SHA256: hashOf("f"), Size: 9 << 20}
	put := func(s chunk.Sums) {
		t.Helper()
		if err := db.Update(ctx, func(tx *Tx) error { return tx.PutIndex("f", e, blocks, s) }); err != nil {
			t.Fatal(err)
		}
	}
	get := func() chunk.Sums {
		t.Helper()
		got, s, err := db.LocalBlockSums("f")
		if err != nil || !slices.Equal(got, blocks) {
			t.Fatalf("blocks %v, %v", got, err)
		}
		return s
	}
	equal := func(a, b chunk.Sums) bool {
		return slices.Equal(a.Fast, b.Fast) && slices.EqualFunc(a.Marks, b.Marks, func(x, y chunk.Mark) bool {
			return x.Off == y.Off && string(x.State) == string(y.State)
		})
	}
	put(sums)
	db.Close()
	if db, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := get(); !equal(got, sums) {
		t.Errorf("sums after a reopen: %+v; want %+v", got, sums)
	}

	raw := encodeSums(sums, len(blocks))
	for _, c := range []struct {
		name string
		raw  []byte
		want chunk.Sums
	}{
		{"fast sums alone", raw[:32], chunk.Sums{Fast: sums.Fast}},
		{"second mark cut short", raw[:len(raw)-1], chunk.Sums{Fast: sums.Fast, Marks: sums.Marks[:1]}},
		{"too short for the fast sums", raw[:31], chunk.Sums{}},
	} {
		if _, err := db.db.Exec(`UPDATE local SET fast = ? WHERE path = 'f'`, c.raw); err != nil {
			t.Fatal(err)
		}
		if got := get(); !equal(got, c.want) {
			t.Errorf("%s: %+v; want %+v", c.name, got, c.want)
		}
	}

	put(sums)
	if err := db.Update(ctx, func(tx *Tx) error { return tx.ForgetSums("f") }); err != nil {
		t.Fatal(err)
	}
	if got := get(); got.Fast != nil || got.Marks != nil {
		t.Errorf("sums after ForgetSums: %+v", got)
	}
	// A list of one block keeps no sums.
	if err := db.Update(ctx, func(tx *Tx) error { return tx.PutIndex("f", e, blocks[:1], sums) }); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := db.LocalBlockSums("f"); got.Fast != nil || got.Marks != nil {
		t.Errorf("sums of a one-block list: %+v", got)
	}
}

// TestPutOverwritesRows: a put over a path's row replaces it in every table, as a put of
// a new path adds one (the first is a plain insert, the second a replace); the remote
// row keeps its block list only for the same version sent without one, and the index
// forgets where the old content's blocks were.
func TestPutOverwritesRows(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	old := []proto.Block{{Hash: "aa", Size: 3}, {Hash: "bb", Size: 4}}
	put := func(seq int64, content string, blocks []proto.Block, omitted bool) {
		t.Helper()
		err := db.Update(ctx, func(tx *Tx) error {
			if err := tx.PutSynced("f", plan.Node{Type: proto.TypeFile, SHA256: hashOf(content), Seq: seq, Size: 7}); err != nil {
				return err
			}
			if err := tx.PutRemote(proto.Entry{Path: "f", Type: proto.TypeFile, SHA256: hexOf(content), Seq: seq, Size: 7, Blocks: blocks, BlocksOmitted: omitted}); err != nil {
				return err
			}
			if omitted {
				return nil // the index holds what the file holds, never without its list
			}
			return tx.PutIndex("f", trees.IndexEntry{Type: proto.TypeFile, SHA256: hashOf(content), Size: 7, Ino: uint64(seq)}, blocks, chunk.Sums{})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(seq int64, content, indexed string, remoteBlocks, indexBlocks []proto.Block) {
		t.Helper()
		synced, remote, index, err := treeMaps(db)
		if err != nil {
			t.Fatal(err)
		}
		if len(synced) != 1 || synced["f"].Seq != seq || synced["f"].SHA256 != hashOf(content) {
			t.Errorf("synced = %+v; want f at seq %d holding %q", synced, seq, content)
		}
		if len(remote) != 1 || remote["f"].Seq != seq || remote["f"].SHA256 != hashOf(content) {
			t.Errorf("remote = %+v; want f at seq %d holding %q", remote, seq, content)
		}
		if len(index) != 1 || index["f"].SHA256 != hashOf(indexed) {
			t.Errorf("index = %+v; want f holding %q", index, indexed)
		}
		if got, err := db.RemoteBlocks("f"); err != nil || !slices.Equal(got, remoteBlocks) {
			t.Errorf("remote blocks = %+v, %v; want %+v", got, err, remoteBlocks)
		}
		if got, err := db.LocalBlocks("f"); err != nil || !slices.Equal(got, indexBlocks) {
			t.Errorf("index blocks = %+v, %v; want %+v", got, err, indexBlocks)
		}
		var rows int
		if err := db.db.QueryRow(`SELECT COUNT(*) FROM blockloc WHERE path = 'f'`).Scan(&rows); err != nil || rows != len(indexBlocks) {
			t.Errorf("blockloc holds %d rows (%v) for f; want %d", rows, err, len(indexBlocks))
		}
	}
	put(1, "one", old, false)
	check(1, "one", "one", old, old)

	changed := []proto.Block{{Hash: "cc", Size: 5}, {Hash: "dd", Size: 2}}
	put(2, "two", changed, false)
	check(2, "two", "two", changed, changed)
	if locs, err := db.FindBlock("aa"); err != nil || len(locs) != 0 {
		t.Errorf("FindBlock(aa) after f changed = %+v, %v; want none", locs, err)
	}

	put(2, "two", nil, true) // the same version again, its list left out
	check(2, "two", "two", changed, changed)

	put(3, "three", nil, true) // a later version whose list was left out
	check(3, "three", "two", nil, changed)
}

// encodeBlocks writes what json.Marshal writes, hashes that need escaping included, and
// decodeBlocks reads it back.
func TestEncodeBlocksIsJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		blocks := rapid.SliceOf(rapid.Custom(func(t *rapid.T) proto.Block {
			hash := rapid.StringMatching(`[0-9a-f]{64}`).Draw(t, "hash")
			if rapid.Bool().Draw(t, "odd") {
				hash = rapid.String().Draw(t, "oddHash")
			}
			return proto.Block{Hash: hash, Size: rapid.Int64().Draw(t, "size")}
		})).Draw(t, "blocks")
		got, err := encodeBlocks(blocks)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) == 0 {
			if got != nil {
				t.Fatalf("no blocks written as %q", got)
			}
			return
		}
		want, err := json.Marshal(blocks)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeBlocks = %s\njson.Marshal = %s", got, want)
		}
		back, err := decodeBlocks(got)
		if err != nil || !slices.Equal(back, blocks) {
			t.Fatalf("read back %v, %v; want %v", back, err, blocks)
		}
	})
}
