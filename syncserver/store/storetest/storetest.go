// Package storetest is the conformance suite of store.Store: every implementation (the
// embedded sqlite store, the PostgreSQL store) runs it and must pass all of it.
//
// Beyond the doc comments of store.Store, the suite pins down these details:
//   - Seq values are contiguous: the N-th committed change of a store has Seq N, and a
//     conflicting change or an empty batch consumes none.
//   - Items of one batch are checked in batch order, each against the state the items
//     before it left (two items on one path with BaseSeq 0: the second conflicts).
//   - A BaseSeq that is not 0 must equal the current Seq, a tombstone's included.
//   - The store ignores Seq, ModifiedBy and ModifiedAt of a Change's Entry.
//   - An audit row's SHA256 and Size are the new entry's (empty and 0 for a tombstone or
//     a dir), PrevSHA is the SHA256 of the entry it replaced (empty when there was none),
//     its Timestamp is the new entry's ModifiedAt and its Seq the new entry's Seq.
//   - Live and Changes order paths and seqs as Go compares strings and integers (bytes,
//     not a locale collation).
//   - Prune measures a version's age from its ModifiedAt; it never touches audit rows.
//   - Errors wrap store.ErrNotFound where the interface says so.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// OpenFunc opens a fresh, empty store. It registers with t.Cleanup whatever lies behind
// the store (a temp dir, a database) but does not close the store: Run closes every store
// it opens.
type OpenFunc func(t *testing.T) store.Store

// ReopenableFunc opens a fresh, empty store like OpenFunc and also returns reopen, which
// opens the same underlying database again after the suite has closed the first store.
type ReopenableFunc func(t *testing.T) (s store.Store, reopen func(t *testing.T) store.Store)

// Option configures Run.
type Option func(*config)

type config struct {
	reopenable ReopenableFunc
}

// WithReopen lets Run test what must survive closing and reopening a store: FolderID,
// entries, history, audit rows and the Seq counter.
func WithReopen(open ReopenableFunc) Option {
	return func(c *config) { c.reopenable = open }
}

// suite carries what every subtest needs.
type suite struct {
	open OpenFunc
	cfg  config
}

// Run runs the conformance suite against the stores that open makes.
func Run(t *testing.T, open OpenFunc, opts ...Option) {
	s := &suite{open: open}
	for _, o := range opts {
		o(&s.cfg)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"ApplyAndGet", s.testApplyAndGet},
		{"EmptyBatch", s.testEmptyBatch},
		{"CancelledContextChangesNothing", s.testCancelledContext},
		{"BatchChecksEachItem", s.testBatchChecksEachItem},
		{"BaseSeqZero", s.testBaseSeqZero},
		{"BaseSeqNonZero", s.testBaseSeqNonZero},
		{"ConcurrentCommitsOnOnePath", s.testConcurrentCommitsOnOnePath},
		{"SeqStrictlyIncreasing", s.testSeqStrictlyIncreasing},
		{"ChangesFeedNeverSkipsUnderConcurrency", s.testChangesFeedNoGap},
		{"ChangesPaging", s.testChangesPaging},
		{"Tombstones", s.testTombstones},
		{"LiveOrder", s.testLiveOrder},
		{"VersionsAndVersion", s.testVersions},
		{"Restore", s.testRestore},
		{"PruneKeep", s.testPruneKeep},
		{"PruneMaxAge", s.testPruneMaxAge},
		{"BlockRefs", s.testBlockRefs},
		{"AuditExact", s.testAuditExact},
		{"AuditFilters", s.testAuditFilters},
		{"Stats", s.testStats},
		{"FolderID", s.testFolderID},
		{"LargeBlockList", s.testLargeBlockList},
		{"BatchesOfAnySize", s.testBatchesOfAnySize},
		{"Ping", s.testPing},
	}
	if s.cfg.reopenable != nil {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T)
		}{"Reopen", s.testReopen})
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

// fresh opens a store for one subtest and closes it when the subtest ends.
func (s *suite) fresh(t *testing.T) store.Store {
	t.Helper()
	st := s.open(t)
	if st == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
