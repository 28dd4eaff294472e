package storetest

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func (s *suite) testApplyAndGet(t *testing.T) {
	st := s.fresh(t)
	if _, err := st.Get(ctxFor(t), "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(absent) error %v; want store.ErrNotFound", err)
	}
	before := time.Now()
	f := file("docs/ünï côdé.txt", "hello, world")
	d := dir("docs")
	l := symlink("docs/link", "ünï côdé.txt")
	// The store sets Seq, ModifiedBy and ModifiedAt itself, whatever the caller says.
	lying := f
	lying.Seq, lying.ModifiedBy, lying.ModifiedAt = 999, "liar", time.Unix(1, 0)
	res := apply(t, st, "ns/pod-a", upload(d, 0), upload(lying, 0), upload(l, 0))
	after := time.Now()
	want := []proto.Entry{withMeta(d, 1, "ns/pod-a", time.Time{}), withMeta(f, 2, "ns/pod-a", time.Time{}), withMeta(l, 3, "ns/pod-a", time.Time{})}
	for i, r := range res {
		if r.Conflict {
			t.Fatalf("result %d: unexpected conflict", i)
		}
		expectEntry(t, fmt.Sprintf("result %d", i), r.Entry, want[i])
		if r.Entry.ModifiedAt.Before(before.Add(-timeSlack)) || r.Entry.ModifiedAt.After(after.Add(timeSlack)) {
			t.Fatalf("result %d: ModifiedAt %v not within the Apply call [%v, %v]", i, r.Entry.ModifiedAt, before, after)
		}
		expectEntry(t, "Get "+want[i].Path, get(t, st, want[i].Path), r.Entry)
	}
	if got := stats(t, st).Seq; got != 3 {
		t.Fatalf("Stats.Seq = %d; want 3", got)
	}
}

func (s *suite) testEmptyBatch(t *testing.T) {
	st := s.fresh(t)
	res, err := st.Apply(ctxFor(t), "a", nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("Apply(nil) = %v, %v; want no results", res, err)
	}
	if e := commit(t, st, "a", upload(file("x", "x"), 0)); e.Seq != 1 {
		t.Fatalf("first change after an empty batch has Seq %d; want 1", e.Seq)
	}
}

func (s *suite) testCancelledContext(t *testing.T) {
	st := s.fresh(t)
	commit(t, st, "a", upload(file("x", "1"), 0))
	if _, err := st.Apply(cancelledCtx(), "a", []store.Change{upload(file("y", "2"), 0), upload(file("x", "3"), 1)}); err == nil {
		t.Fatal("Apply with a cancelled context succeeded")
	}
	if _, err := st.Get(ctxFor(t), "y"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(y) after a failed Apply: %v; want store.ErrNotFound", err)
	}
	expectEntry(t, "x after a failed Apply", get(t, st, "x"), withMeta(file("x", "1"), 1, "a", time.Time{}))
	if n := len(audit(t, st, store.AuditQuery{})); n != 1 {
		t.Fatalf("%d audit rows after a failed Apply; want 1", n)
	}
	if e := commit(t, st, "a", upload(file("z", "z"), 0)); e.Seq != 2 {
		t.Fatalf("next change has Seq %d; want 2 (a failed Apply consumes none)", e.Seq)
	}
}

func (s *suite) testBatchChecksEachItem(t *testing.T) {
	st := s.fresh(t)
	a := commit(t, st, "setup", upload(file("a", "a1"), 0)) // seq 1
	b := commit(t, st, "setup", upload(file("b", "b1"), 0)) // seq 2
	res := apply(t, st, "agent",
		upload(file("a", "a2"), a.Seq),   // ok: seq 3
		upload(file("b", "b2"), b.Seq+7), // conflict: stale base
		upload(file("c", "c1"), 0),       // ok: seq 4
		upload(file("c", "c2"), 0),       // conflict: c is live now (batch order)
		upload(file("d", "d1"), 42),      // conflict: d does not exist
		upload(tombstone("b"), b.Seq),    // ok: seq 5
	)
	wantConflict := []bool{false, true, false, true, true, false}
	wantSeq := []int64{3, 2, 4, 4, 0, 5}
	for i, r := range res {
		if r.Conflict != wantConflict[i] || r.Entry.Seq != wantSeq[i] {
			t.Errorf("result %d = conflict %v, seq %d; want conflict %v, seq %d", i, r.Conflict, r.Entry.Seq, wantConflict[i], wantSeq[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	expectEntry(t, "conflict on b returns b's current entry", res[1].Entry, b)
	expectEntry(t, "conflict on c returns c as just committed", res[3].Entry, res[2].Entry)
	if res[4].Entry.Path != "" || res[4].Entry.Seq != 0 {
		t.Fatalf("conflict on an absent path returned entry %+v; want the zero entry", res[4].Entry)
	}
	expectEntry(t, "a", get(t, st, "a"), withMeta(file("a", "a2"), 3, "agent", time.Time{}))
	expectEntry(t, "c", get(t, st, "c"), withMeta(file("c", "c1"), 4, "agent", time.Time{}))
	if e := get(t, st, "b"); !e.Deleted || e.Seq != 5 {
		t.Fatalf("b = deleted %v seq %d; want a tombstone with seq 5", e.Deleted, e.Seq)
	}
	if _, err := st.Get(ctxFor(t), "d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(d): %v; want store.ErrNotFound", err)
	}
	recs := audit(t, st, store.AuditQuery{})
	var seqs []int64
	for _, r := range recs {
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[5 4 3 2 1]" {
		t.Fatalf("audit seqs %v; want [5 4 3 2 1]: one row per committed change, none for conflicts", seqs)
	}
	if got := stats(t, st).Seq; got != 5 {
		t.Fatalf("Stats.Seq = %d; want 5", got)
	}
}

func (s *suite) testBaseSeqZero(t *testing.T) {
	st := s.fresh(t)
	// Against an absent path: accepted.
	first := commit(t, st, "a", upload(file("p", "v1"), 0))
	// Against a live entry: conflict, and the current entry comes back.
	r := apply(t, st, "b", upload(file("p", "other"), 0))[0]
	if !r.Conflict {
		t.Fatal("BaseSeq 0 against a live entry was accepted")
	}
	expectEntry(t, "conflict entry", r.Entry, first)
	expectEntry(t, "p after the conflict", get(t, st, "p"), first)
	// Against a tombstone: accepted, as a new change.
	del := commit(t, st, "a", upload(tombstone("p"), first.Seq))
	again := commit(t, st, "b", upload(file("p", "reborn"), 0))
	if again.Seq != del.Seq+1 || again.Deleted {
		t.Fatalf("recreate over a tombstone = seq %d deleted %v; want seq %d live", again.Seq, again.Deleted, del.Seq+1)
	}
	expectEntry(t, "p recreated", get(t, st, "p"), withMeta(file("p", "reborn"), 3, "b", time.Time{}))
}

func (s *suite) testBaseSeqNonZero(t *testing.T) {
	st := s.fresh(t)
	v1 := commit(t, st, "a", upload(file("p", "v1"), 0))
	v2 := commit(t, st, "a", upload(file("p", "v2"), v1.Seq))
	// A stale base conflicts.
	r := apply(t, st, "b", upload(file("p", "stale"), v1.Seq))[0]
	if !r.Conflict {
		t.Fatal("a stale BaseSeq was accepted")
	}
	expectEntry(t, "conflict entry", r.Entry, v2)
	// A base from the future conflicts.
	if r := apply(t, st, "b", upload(file("p", "future"), v2.Seq+100))[0]; !r.Conflict {
		t.Fatal("a BaseSeq above the current seq was accepted")
	}
	// A tombstone's own seq is a valid base.
	del := commit(t, st, "a", upload(tombstone("p"), v2.Seq))
	if r := apply(t, st, "b", upload(file("p", "stale again"), v2.Seq))[0]; !r.Conflict || !r.Entry.Deleted {
		t.Fatalf("a base older than the tombstone = conflict %v, entry %+v; want a conflict returning the tombstone", r.Conflict, r.Entry)
	}
	back := commit(t, st, "b", upload(file("p", "v3"), del.Seq))
	expectEntry(t, "p", get(t, st, "p"), back)
}

func (s *suite) testConcurrentCommitsOnOnePath(t *testing.T) {
	st := s.fresh(t)
	const rounds, writers = 5, 6
	base := int64(0)
	for round := range rounds {
		var wg sync.WaitGroup
		results := make([]store.Result, writers)
		errs := make([]error, writers)
		start := make(chan struct{})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := st.Apply(ctxFor(t), fmt.Sprintf("agent-%d", w), []store.Change{
					upload(file("contended", fmt.Sprintf("round %d writer %d", round, w)), base),
				})
				errs[w] = err
				if err == nil && len(res) == 1 {
					results[w] = res[0]
				}
			}()
		}
		close(start)
		wg.Wait()
		var winner *store.Result
		for w := range writers {
			if errs[w] != nil {
				t.Fatalf("round %d writer %d: %v", round, w, errs[w])
			}
			if !results[w].Conflict {
				if winner != nil {
					t.Fatalf("round %d: writers won twice on one base (seqs %d and %d)", round, winner.Entry.Seq, results[w].Entry.Seq)
				}
				winner = &results[w]
			}
		}
		if winner == nil {
			t.Fatalf("round %d: no writer won", round)
		}
		for w := range writers {
			if results[w].Conflict && results[w].Entry.Seq != winner.Entry.Seq {
				t.Fatalf("round %d: a loser was shown seq %d; want the winner's %d", round, results[w].Entry.Seq, winner.Entry.Seq)
			}
		}
		expectEntry(t, fmt.Sprintf("round %d: stored entry", round), get(t, st, "contended"), winner.Entry)
		if winner.Entry.Seq != int64(round+1) {
			t.Fatalf("round %d: winner has seq %d; want %d", round, winner.Entry.Seq, round+1)
		}
		base = winner.Entry.Seq
	}
	if n := len(audit(t, st, store.AuditQuery{Path: "contended"})); n != rounds {
		t.Fatalf("%d audit rows; want %d, one per winner", n, rounds)
	}
	if n := len(versions(t, st, "contended")); n != rounds {
		t.Fatalf("%d versions; want %d", n, rounds)
	}
}

func (s *suite) testSeqStrictlyIncreasing(t *testing.T) {
	st := s.fresh(t)
	last := int64(0)
	for i := range 5 {
		var cs []store.Change
		for j := range i + 1 {
			cs = append(cs, upload(file(fmt.Sprintf("seq/%d-%d", i, j), "x"), 0))
		}
		for _, r := range apply(t, st, "a", cs...) {
			if r.Entry.Seq != last+1 {
				t.Fatalf("seq %d after %d; want %d", r.Entry.Seq, last, last+1)
			}
			last = r.Entry.Seq
		}
	}
	// Concurrent batches: every seq is handed out exactly once, with no hole.
	const writers, batches, size = 4, 5, 3
	var mu sync.Mutex
	var seen []int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var cs []store.Change
				for i := range size {
					cs = append(cs, upload(file(fmt.Sprintf("conc/%d/%d/%d", w, b, i), "y"), 0))
				}
				res, err := st.Apply(ctxFor(t), "w", cs)
				if err != nil {
					errs <- err
					return
				}
				for i := 1; i < len(res); i++ {
					if res[i].Entry.Seq != res[i-1].Entry.Seq+1 {
						errs <- fmt.Errorf("one batch got seqs %d then %d; want consecutive", res[i-1].Entry.Seq, res[i].Entry.Seq)
						return
					}
				}
				mu.Lock()
				for _, r := range res {
					seen = append(seen, r.Entry.Seq)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sort.Slice(seen, func(i, j int) bool { return seen[i] < seen[j] })
	for i, seq := range seen {
		if seq != last+1+int64(i) {
			t.Fatalf("concurrent batches got seqs %v; want %d..%d each once", seen, last+1, last+int64(len(seen)))
		}
	}
	if got := stats(t, st).Seq; got != last+int64(len(seen)) {
		t.Fatalf("Stats.Seq = %d; want %d", got, last+int64(len(seen)))
	}
}

// testChangesFeedNoGap catches a later seq becoming visible before an earlier one has
// committed: a reader that advanced its cursor past the later seq would never see the
// earlier one.
func (s *suite) testChangesFeedNoGap(t *testing.T) {
	st := s.fresh(t)
	ctx := ctxFor(t)
	const writers, batches = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	var total int64
	var totalMu sync.Mutex
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				size := 1 + (w+b)%3
				var cs []store.Change
				for i := range size {
					cs = append(cs, upload(file(fmt.Sprintf("feed/%d/%d/%d", w, b, i), "z"), 0))
				}
				if _, err := st.Apply(ctx, fmt.Sprintf("w%d", w), cs); err != nil {
					errs <- err
					return
				}
				totalMu.Lock()
				total += int64(size)
				totalMu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[int64]bool{}
	cursor := int64(0)
	poll := func() error {
		es, err := st.Changes(ctx, cursor, 7)
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.Seq <= cursor {
				return fmt.Errorf("Changes(%d) returned seq %d, not above the cursor", cursor, e.Seq)
			}
			seen[e.Seq] = true
			cursor = e.Seq
		}
		return nil
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		if err := poll(); err != nil {
			t.Fatal(err)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Drain what committed after the last poll.
	for {
		before := cursor
		if err := poll(); err != nil {
			t.Fatal(err)
		}
		if cursor == before {
			break
		}
	}
	if cursor != total {
		t.Fatalf("cursor ended at %d; want %d", cursor, total)
	}
	var gaps []int64
	for seq := int64(1); seq <= total; seq++ {
		if !seen[seq] {
			gaps = append(gaps, seq)
		}
	}
	if len(gaps) > 0 {
		t.Fatalf("the feed skipped %d of %d committed seqs, e.g. %v", len(gaps), total, gaps[:min(len(gaps), 10)])
	}
}

func (s *suite) testLargeBlockList(t *testing.T) {
	st := s.fresh(t)
	e := proto.Entry{Path: "big.iso", Type: proto.TypeFile, Mode: 0o600, MTimeNs: 1, SHA256: sha("big")}
	for i := range 20000 {
		size := int64(1<<20 + i)
		e.Blocks = append(e.Blocks, proto.Block{Hash: sha(fmt.Sprint(i)), Size: size})
		e.Size += size
	}
	got := commit(t, st, "a", upload(e, 0))
	expectEntry(t, "committed", got, withMeta(e, 1, "a", time.Time{}))
	expectEntry(t, "Get", get(t, st, "big.iso"), withMeta(e, 1, "a", time.Time{}))
	if refs := blockRefs(t, st); len(refs) != 20000 {
		t.Fatalf("BlockRefs listed %d hashes; want 20000", len(refs))
	}
}

func (s *suite) testPing(t *testing.T) {
	st := s.fresh(t)
	if err := st.Ping(ctxFor(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// testBatchesOfAnySize commits batches of sizes around the ones a store may cut its
// writes at (multi-row statements, round trips): every item of each batch must be stored,
// in order, once, with its audit row and the counters, and the items that replace an
// earlier version must replace it.
func (s *suite) testBatchesOfAnySize(t *testing.T) {
	st := s.fresh(t)
	var seq int64
	var all []proto.Entry
	for _, n := range []int{1, 2, 3, 5, 17, 63, 64, 65, 255, 256, 257, 349, 1000} {
		batch := make([]store.Change, n)
		want := make([]proto.Entry, n)
		for i := range n {
			e := file(fmt.Sprintf("batch%04d/f%04d", n, i), fmt.Sprint(n, "/", i))
			base := int64(0)
			if i%7 == 3 && i < len(all) {
				// A new version of a path an earlier batch wrote.
				prev := all[i]
				e = file(prev.Path, fmt.Sprint("again ", n, "/", i))
				base = prev.Seq
			}
			batch[i] = upload(e, base)
			want[i] = withMeta(e, seq+int64(i)+1, "a", time.Time{})
		}
		res := apply(t, st, "a", batch...)
		for i, r := range res {
			if r.Conflict {
				t.Fatalf("batch of %d, item %d: unexpected conflict", n, i)
			}
			expectEntry(t, fmt.Sprintf("batch of %d, result %d", n, i), r.Entry, want[i])
		}
		got := changes(t, st, seq, n+1)
		if len(got) != n {
			t.Fatalf("batch of %d: the feed lists %d entries after seq %d", n, len(got), seq)
		}
		for i := range got {
			expectEntry(t, fmt.Sprintf("batch of %d, feed entry %d", n, i), got[i], res[i].Entry)
		}
		for i, r := range res {
			if batch[i].BaseSeq != 0 {
				all[i] = r.Entry
			}
		}
		for i, r := range res {
			if batch[i].BaseSeq == 0 {
				all = append(all, r.Entry)
			}
		}
		seq += int64(n)
		if recs := audit(t, st, store.AuditQuery{Limit: 1000}); len(recs) != min(int(seq), 1000) || recs[0].Seq != seq {
			t.Fatalf("after a batch of %d: %d audit rows, the newest of seq %d; want %d rows, the newest of seq %d", n, len(recs), recs[0].Seq, min(int(seq), 1000), seq)
		}
	}
	if got := stats(t, st); got.Seq != seq || got.Files != int64(len(all)) {
		t.Fatalf("Stats: seq %d, %d files; want seq %d, %d files", got.Seq, got.Files, seq, len(all))
	}
	for _, e := range all {
		expectEntry(t, "Get "+e.Path, get(t, st, e.Path), e)
	}
}
