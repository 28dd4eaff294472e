package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// Changes answered from the tail of latest entries say what the database says, from
// every seq and with any limit: new paths, new versions and tombstones, batches with
// conflicts, a tail that drops its older half (kept small here) and a reopened store.
func TestTailAnswersAsTheDatabase(t *testing.T) {
	base := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		dir, err := os.MkdirTemp(base, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "meta.db")
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close() }()
		s.tail.maxEntries = rapid.IntRange(1, 40).Draw(t, "maxEntries")
		s.tail.maxBlocks = rapid.IntRange(1, 80).Draw(t, "maxBlocks")
		ctx := context.Background()
		current := map[string]int64{} // path → seq of its current entry
		check := func(when string) {
			top, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for since := int64(0); since <= top.Seq; since++ {
				for _, limit := range []int{0, 1, 3, 1000} {
					got, err := s.Changes(ctx, since, limit)
					if err != nil {
						t.Fatal(err)
					}
					want, err := s.changesStored(ctx, since, limit)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(want) {
						t.Fatalf("%s: Changes(%d, %d): %d entries (tail from %d), the database %d", when, since, limit, len(got), s.tail.base, len(want))
					}
					for i := range got {
						if !proto.SameEntry(got[i], want[i]) {
							t.Fatalf("%s: Changes(%d, %d)[%d] = %+v; the database %+v", when, since, limit, i, got[i], want[i])
						}
					}
				}
			}
		}
		paths := rapid.IntRange(1, 12).Draw(t, "paths")
		for b := range rapid.IntRange(1, 12).Draw(t, "batches") {
			var changes []store.Change
			for k := range rapid.IntRange(1, 6).Draw(t, "changes") {
				p := fmt.Sprintf("d/f%02d", rapid.IntRange(0, paths-1).Draw(t, "path"))
				e := proto.Entry{Path: p, Type: proto.TypeFile, Size: int64(b*10 + k), Mode: 0o644, MTimeNs: int64(b), SHA256: fmt.Sprintf("%064x", b*100+k)}
				for n := range rapid.IntRange(0, 9).Draw(t, "blocks") {
					e.Blocks = append(e.Blocks, proto.Block{Hash: fmt.Sprintf("%064x", n+1), Size: 1})
				}
				e.Size = int64(len(e.Blocks))
				if rapid.IntRange(0, 4).Draw(t, "kind") == 0 {
					e = proto.Entry{Path: p, Type: proto.TypeFile, Deleted: true}
				}
				base := current[p]
				if rapid.IntRange(0, 9).Draw(t, "stale") == 0 {
					base += 100 // a conflict: consumes no seq
				}
				changes = append(changes, store.Change{Entry: e, BaseSeq: base, Action: proto.ActionUpload})
			}
			res, err := s.Apply(ctx, "a", changes)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if !r.Conflict {
					current[r.Entry.Path] = r.Entry.Seq
				}
			}
			check(fmt.Sprintf("after batch %d", b))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = Open(path); err != nil {
			t.Fatal(err)
		}
		check("reopened")
	})
}
