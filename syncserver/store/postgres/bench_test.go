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
// same workload as the sqlite store's benchmark of the same name; the target is
// files/s within 2× of the embedded store.
func BenchmarkApply4KiBBatch(b *testing.B) {
	const batch = 256
	s := openURL(b, testpg.URL(b))
	ctx := testCtx(b)
	changes := make([]store.Change, batch)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range changes {
			sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", i, j))
			h := hex.EncodeToString(sum[:])
			changes[j] = store.Change{
				Entry: proto.Entry{
					Path: fmt.Sprintf("dir%03d/file%05d.txt", i%100, i*batch+j), Type: proto.TypeFile,
					Size: 4096, Mode: 0o644, MTimeNs: 1, SHA256: h,
					Blocks: []proto.Block{{Hash: h, Size: 4096}},
				},
				Action: proto.ActionUpload,
			}
		}
		b.StartTimer()
		res, err := s.Apply(ctx, "bench", changes)
		if err != nil {
			b.Fatal(err)
		}
		if res[0].Conflict {
			b.Fatal("unexpected conflict")
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "files/s")
}
