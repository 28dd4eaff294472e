package state

import (
	"context"
	"fmt"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// BenchmarkRecordFiles records what a reader writes for each file of a first sync
// (remote entry, synced node, index entry with its one block), 1,000 files per
// transaction.
func BenchmarkRecordFiles(b *testing.B) {
	const perTx, txs = 1000, 10
	ctx := context.Background()
	n := 0
	for b.Loop() {
		b.StopTimer()
		db, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for range txs {
			err := db.Update(ctx, func(tx *Tx) error {
				for range perTx {
					n++
					p := fmt.Sprintf("w1/d%03d/f%06d.bin", n%100, n)
					h := plan.HashOf([]byte(p))
					node := plan.Node{Type: proto.TypeFile, SHA256: h, Mode: 0o644, Size: 8192, MTimeNs: int64(n), Seq: int64(n)}
					if err := tx.PutRemote(proto.Entry{Path: p, Type: proto.TypeFile, SHA256: h.String(), Mode: 0o644, Size: 8192, MTimeNs: int64(n), Seq: int64(n)}); err != nil {
						return err
					}
					if err := tx.PutSynced(p, node); err != nil {
						return err
					}
					e := trees.IndexEntry{Type: proto.TypeFile, SHA256: h, Mode: 0o644, Size: 8192, MTimeNs: int64(n), Ino: uint64(n)}
					if err := tx.PutIndex(p, e, []proto.Block{{Hash: h.String(), Size: 8192}}, chunk.Sums{}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/file")
}
