package state

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// rowsModel is what the state must hold after a sequence of writes.
type rowsModel struct {
	synced, remote map[string]plan.Node
	index          map[string]trees.IndexEntry
	remoteBlocks   map[string][]proto.Block
	indexBlocks    map[string][]proto.Block
}

// Puts are queued for multi-row statements and deletes are not: whatever the order and
// the transactions, and however many rows a transaction holds (more than one statement's
// worth, the same path twice, rows there already), the state reads back as the writes
// said, in their order.
func TestQueuedRowsKeepTheOrderOfWrites(t *testing.T) {
	base := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		dir, err := os.MkdirTemp(base, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		db, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		m := rowsModel{synced: map[string]plan.Node{}, remote: map[string]plan.Node{}, index: map[string]trees.IndexEntry{},
			remoteBlocks: map[string][]proto.Block{}, indexBlocks: map[string][]proto.Block{}}
		paths := rapid.IntRange(1, 400).Draw(t, "paths")
		pathOf := func(t *rapid.T) string { return fmt.Sprintf("d/f%03d", rapid.IntRange(0, paths-1).Draw(t, "path")) }
		for range rapid.IntRange(1, 4).Draw(t, "txs") {
			ops := rapid.IntRange(1, 700).Draw(t, "ops")
			err := db.Update(context.Background(), func(tx *Tx) error {
				for range ops {
					p := pathOf(t)
					v := rapid.IntRange(0, 9).Draw(t, "version")
					h := hashOf(fmt.Sprint(p, v))
					size := int64(100 + v)
					one := []proto.Block{{Hash: h.String(), Size: size}}
					switch rapid.IntRange(0, 6).Draw(t, "op") {
					case 0, 1:
						n := plan.Node{Type: proto.TypeFile, SHA256: h, Size: size, Seq: int64(v + 1)}
						m.synced[p] = n
						if err := tx.PutSynced(p, n); err != nil {
							return err
						}
					case 2:
						delete(m.synced, p)
						if err := tx.DeleteSynced(p); err != nil {
							return err
						}
					case 3:
						e := proto.Entry{Path: p, Type: proto.TypeFile, SHA256: h.String(), Size: size, Seq: int64(v + 1), Blocks: one}
						m.remote[p], _ = NodeOf(e)
						m.remoteBlocks[p] = one
						if err := tx.PutRemote(e); err != nil {
							return err
						}
					case 4:
						delete(m.remote, p)
						delete(m.remoteBlocks, p)
						if err := tx.DeleteRemote(p); err != nil {
							return err
						}
					case 5:
						e := trees.IndexEntry{Type: proto.TypeFile, SHA256: h, Size: size, Ino: uint64(v)}
						blocks := one
						if v%3 == 0 { // a file of two blocks, listed in blockloc: written on its own
							blocks = []proto.Block{{Hash: hexOf(fmt.Sprint(p, v, "a")), Size: 60}, {Hash: hexOf(fmt.Sprint(p, v, "b")), Size: size - 60}}
						}
						m.index[p], m.indexBlocks[p] = e, blocks
						if err := tx.PutIndex(p, e, blocks, chunk.Sums{}); err != nil {
							return err
						}
					case 6:
						delete(m.index, p)
						delete(m.indexBlocks, p)
						if err := tx.DeleteIndex(p); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.Trees()
		if err != nil {
			t.Fatal(err)
		}
		if s := maps.Collect(got.Synced.All()); !maps.Equal(s, m.synced) {
			t.Fatalf("synced: %d rows, want %d", len(s), len(m.synced))
		}
		if r := maps.Collect(got.Remote.All()); !maps.Equal(r, m.remote) {
			t.Fatalf("remote: %d rows, want %d", len(r), len(m.remote))
		}
		if i := maps.Collect(got.Index.All()); !maps.Equal(i, m.index) {
			t.Fatalf("index: %d rows, want %d", len(i), len(m.index))
		}
		for p := range paths {
			path := fmt.Sprintf("d/f%03d", p)
			if b, err := db.RemoteBlocks(path); err != nil || !slices.Equal(b, m.remoteBlocks[path]) {
				t.Fatalf("remote blocks of %s: %v, %v; want %v", path, b, err, m.remoteBlocks[path])
			}
			if b, err := db.LocalBlocks(path); err != nil || !slices.Equal(b, m.indexBlocks[path]) {
				t.Fatalf("index blocks of %s: %v, %v; want %v", path, b, err, m.indexBlocks[path])
			}
		}
		// Where each listed block is: the second block of every file of two.
		for path, blocks := range m.indexBlocks {
			if len(blocks) != 2 {
				continue
			}
			locs, err := db.FindBlock(blocks[1].Hash)
			if err != nil || len(locs) != 1 || locs[0] != (BlockLocation{Path: path, Offset: 60, Size: blocks[1].Size}) {
				t.Fatalf("block %s of %s found at %+v, %v", blocks[1].Hash, path, locs, err)
			}
		}
	})
}
