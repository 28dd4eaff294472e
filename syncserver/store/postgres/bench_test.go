package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// BenchmarkApply4KiBBatch commits new 4 KiB files (one block each) in batches of 256, the
// shape of the sqlite store's benchmark of the same name; the target is files/s
// within 2× of the embedded store.
func BenchmarkApply4KiBBatch(b *testing.B) {
	const batchSize = 256
	st := openURL(b, testpg.URL(b))
	ctx := testCtx(b)
	batch := func(n int) []store.Change {
		changes := make([]store.Change, batchSize)
		for i := range changes {
			h := sha256.Sum256(fmt.Appendf(nil, "%d/%d", n, i))
			hash := hex.EncodeToString(h[:])
			changes[i] = store.Change{
				Entry: proto.Entry{
					Path: fmt.Sprintf("dir%05d/file%03d.txt", n, i), Type: proto.TypeFile,
					Size: 4096, Mode: 0o644, MTimeNs: 1_700_000_000_000_000_000 + int64(i),
					SHA256: hash, Blocks: []proto.Block{{Hash: hash, Size: 4096}},
				},
				Action: proto.ActionUpload,
			}
		}
		return changes
	}
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		res, err := st.Apply(ctx, "bench", batch(n))
		if err != nil {
			b.Fatal(err)
		}
		if res[batchSize-1].Conflict {
			b.Fatal("unexpected conflict")
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "files/s")
}
