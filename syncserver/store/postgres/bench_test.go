package postgres

import (
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncserver/store/storetest"
)

// BenchmarkApply4KiBBatch is the stores' shared workload; the target is files/s
// within 2× of the embedded store.
func BenchmarkApply4KiBBatch(b *testing.B) {
	storetest.BenchmarkApply4KiBBatch(b, openURL(b, testpg.URL(b)))
}
