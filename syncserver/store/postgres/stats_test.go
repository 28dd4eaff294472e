package postgres

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// TestStatsCountersMatchARecount drives a random workload (files, dirs, symlinks and
// conflict copies created, changed, deleted and brought back, stale bases, one path
// several times in a batch) and checks after every batch that the figures the folder row
// keeps equal a recount of the current entries.
func TestStatsCountersMatchARecount(t *testing.T) {
	url := testpg.URL(t)
	st := openURL(t, url)
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(1, 2))
	conflictName := proto.ConflictPath("c/x.txt", "agent", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	paths := []string{"a", "b", "c/x.txt", conflictName, "d", "e/f", "g"}
	known := map[string]int64{} // path → current seq, as this test believes
	for round := range 60 {
		var batch []store.Change
		for range 1 + rng.IntN(6) {
			p := paths[rng.IntN(len(paths))]
			base := known[p]
			if rng.IntN(8) == 0 {
				base += 1 + int64(rng.IntN(3)) // stale or future: conflicts
			}
			var e proto.Entry
			switch k := rng.IntN(5); k {
			case 0:
				e = proto.Entry{Path: p, Type: proto.TypeDir, Mode: 0o755}
			case 1:
				e = proto.Entry{Path: p, Type: proto.TypeSymlink, Target: "a"}
			case 2:
				e = proto.Entry{Path: p, Type: proto.TypeFile, Deleted: true}
			default:
				e = fileEntry(p, fmt.Sprintf("%d-%d", round, rng.IntN(1000)))
			}
			batch = append(batch, store.Change{Entry: e, BaseSeq: base})
		}
		for i, r := range mustApply(t, st, "a", batch...) {
			if !r.Conflict {
				known[batch[i].Entry.Path] = r.Entry.Seq
			}
		}
		got, err := st.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := recount(t, url)
		if got.Files != want.Files || got.Dirs != want.Dirs || got.Symlinks != want.Symlinks ||
			got.Bytes != want.Bytes || got.Conflicts != want.Conflicts || got.Seq != want.Seq {
			t.Fatalf("round %d: Stats = %+v, recount = %+v", round, got, want)
		}
	}
}

func recount(t *testing.T, url string) store.Stats {
	var s store.Stats
	s.Files = queryInt(t, url, `SELECT count(*) FROM entries e JOIN versions v USING (seq) WHERE NOT v.deleted AND v.type = 'file'`)
	s.Dirs = queryInt(t, url, `SELECT count(*) FROM entries e JOIN versions v USING (seq) WHERE NOT v.deleted AND v.type = 'dir'`)
	s.Symlinks = queryInt(t, url, `SELECT count(*) FROM entries e JOIN versions v USING (seq) WHERE NOT v.deleted AND v.type = 'symlink'`)
	s.Bytes = queryInt(t, url, `SELECT coalesce(sum(v.size), 0)::bigint FROM entries e JOIN versions v USING (seq) WHERE NOT v.deleted AND v.type = 'file'`)
	s.Conflicts = queryInt(t, url, `SELECT count(*) FROM entries e JOIN versions v USING (seq) WHERE NOT v.deleted AND v.path LIKE '%.sync-conflict-%'`)
	s.Seq = queryInt(t, url, `SELECT coalesce(max(seq), 0) FROM entries`)
	return s
}
