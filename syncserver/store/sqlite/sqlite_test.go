package sqlite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/storetest"
)

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t,
		func(t *testing.T) store.Store {
			return openAt(t, filepath.Join(t.TempDir(), "meta.db"))
		},
		storetest.WithReopen(func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
			path := filepath.Join(t.TempDir(), "sub", "meta.db")
			return openAt(t, path), func(t *testing.T) store.Store { return openAt(t, path) }
		}),
	)
}

func BenchmarkApply4KiBBatch(b *testing.B) {
	const batch = 256
	s, err := Open(filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
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
