package postgres

import (
	"testing"

	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/storetest"
)

// TestConformance runs the suite every store passes, on a fresh database per subtest.
func TestConformance(t *testing.T) {
	open := func(t *testing.T) store.Store {
		st, err := Open(testCtx(t), testpg.URL(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return st
	}
	reopenable := func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
		url := testpg.URL(t)
		st, err := Open(testCtx(t), url)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return st, func(t *testing.T) store.Store {
			st, err := Open(testCtx(t), url)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			return st
		}
	}
	storetest.Run(t, open, storetest.WithReopen(reopenable))
}
