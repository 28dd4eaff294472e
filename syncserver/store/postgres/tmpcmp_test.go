package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

func BenchmarkTmpSqliteApply4KiBBatch(b *testing.B) {
	const batchSize = 256
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
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
	for n := 0; b.Loop(); n++ {
		if _, err := st.Apply(ctx, "bench", batch(n)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "files/s")
}
