package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// BenchmarkApply4KiBBatch measures one workload on any store, so that the stores' figures
// compare: new 4 KiB files (one block each) committed in batches of 256, reported as
// files/s. s must be empty and is not closed.
func BenchmarkApply4KiBBatch(b *testing.B, s store.Store) {
	const batch = 256
	ctx := context.Background()
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
