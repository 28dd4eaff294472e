package execute

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Every block storedRuns holds back is named by exactly one stretch, at its offset and
// as the base list's block there; the others are left to be sent.
func TestStoredRunsNameEachHeldBlockOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		block := func(i int) proto.Block { return proto.Block{Hash: fmt.Sprintf("%064x", i), Size: int64(1 + i%3)} }
		n := rapid.IntRange(1, 40).Draw(t, "base")
		base := make([]proto.Block, n)
		for i := range base {
			base[i] = block(rapid.IntRange(0, 30).Draw(t, "baseBlock"))
		}
		file := rapid.SliceOfN(rapid.IntRange(0, 40), 0, 60).Draw(t, "file")
		r := &storedRuns{base: proto.ContentRef{Path: "f", Seq: 1}, list: base}
		var runs []storedRun
		named := map[int64]proto.Block{} // offset → the file's block there, held back
		var off int64
		for _, id := range file {
			b := block(id)
			done, held := r.add(b, off)
			if done != nil {
				runs = append(runs, *done)
			}
			if held {
				named[off] = b
			}
			off += b.Size
		}
		if last := r.flush(); last != nil {
			runs = append(runs, *last)
		}
		seen := map[int64]bool{}
		for _, run := range runs {
			at := run.off
			for i := run.from; i < run.from+run.count; i++ {
				if b, ok := named[at]; !ok || b != base[i] || seen[at] {
					t.Fatalf("stretch %+v names base block %d at %d: the file's held block there is %v (held: %v, named before: %v)", run, i, at, b, ok, seen[at])
				}
				seen[at] = true
				at += base[i].Size
			}
			if at-run.off != run.size {
				t.Fatalf("stretch %+v: its blocks add up to %d bytes", run, at-run.off)
			}
		}
		if len(seen) != len(named) {
			t.Fatalf("%d blocks held back, %d named", len(named), len(seen))
		}
	})
}
