package storetest

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func (s *suite) testRestore(t *testing.T) {
	st := s.fresh(t)
	v1 := commit(t, st, "a", upload(file("doc.txt", "first draft"), 0))
	v2 := commit(t, st, "b", upload(file("doc.txt", "second draft, worse"), v1.Seq))

	old, err := st.Version(ctxFor(t), "doc.txt", v1.Seq)
	if err != nil {
		t.Fatal(err)
	}
	restore := store.Change{Entry: old, BaseSeq: v2.Seq, Action: proto.ActionRestore}
	// A restore on a stale base is a conflict like any change.
	stale := restore
	stale.BaseSeq = v1.Seq
	if r := apply(t, st, "c", stale)[0]; !r.Conflict {
		t.Fatal("a restore on a stale base was accepted")
	}
	v3 := commit(t, st, "c", restore)
	expectEntry(t, "restored entry", v3, withMeta(file("doc.txt", "first draft"), 3, "c", time.Time{}))
	expectEntry(t, "Get after restore", get(t, st, "doc.txt"), v3)
	vs := versions(t, st, "doc.txt")
	if fmt.Sprint(seqsOf(vs)) != "[3 2 1]" {
		t.Fatalf("Versions after restore = %v; want [3 2 1]: history keeps everything", seqsOf(vs))
	}
	expectEntry(t, "version 2 kept", vs[1], v2)
	expectEntry(t, "version 1 kept", vs[2], v1)
	recs := audit(t, st, store.AuditQuery{Limit: 1})
	if len(recs) != 1 || recs[0].Action != proto.ActionRestore || recs[0].Seq != 3 || recs[0].SHA256 != sha("first draft") || recs[0].PrevSHA != sha("second draft, worse") {
		t.Fatalf("audit row of the restore = %+v", recs)
	}

	// Restoring a deleted file: the tombstone's seq is the base.
	del := commit(t, st, "a", upload(tombstone("doc.txt"), v3.Seq))
	back, err := st.Version(ctxFor(t), "doc.txt", v2.Seq)
	if err != nil {
		t.Fatal(err)
	}
	v5 := commit(t, st, "a", store.Change{Entry: back, BaseSeq: del.Seq, Action: proto.ActionRestore})
	expectEntry(t, "restored over a tombstone", get(t, st, "doc.txt"), withMeta(file("doc.txt", "second draft, worse"), 5, "a", time.Time{}))
	if v5.Deleted {
		t.Fatal("restored entry is still deleted")
	}
	if n := len(versions(t, st, "doc.txt")); n != 5 {
		t.Fatalf("%d versions; want 5", n)
	}
}

// history commits n versions of path (contents "path vK") and returns them oldest first.
func history(t *testing.T, st store.Store, path string, n int) []proto.Entry {
	t.Helper()
	var out []proto.Entry
	base := int64(0)
	for k := 1; k <= n; k++ {
		e := commit(t, st, "a", upload(file(path, fmt.Sprintf("%s v%d", path, k)), base))
		out = append(out, e)
		base = e.Seq
	}
	return out
}

func prune(t *testing.T, st store.Store, r store.Retention, now time.Time) int {
	t.Helper()
	n, err := st.Prune(ctxFor(t), r, now)
	if err != nil {
		t.Fatalf("Prune(%+v): %v", r, err)
	}
	return n
}

func expectVersions(t *testing.T, st store.Store, path string, want ...proto.Entry) {
	t.Helper()
	got := versions(t, st, path)
	if fmt.Sprint(seqsOf(got)) != fmt.Sprint(seqsOf(want)) {
		t.Fatalf("Versions(%q) seqs %v; want %v", path, seqsOf(got), seqsOf(want))
	}
	for i := range want {
		expectEntry(t, fmt.Sprintf("Versions(%q)[%d]", path, i), got[i], want[i])
	}
}

func (s *suite) testPruneKeep(t *testing.T) {
	st := s.fresh(t)
	p := history(t, st, "p", 5)
	q := history(t, st, "q", 2)
	qDel := commit(t, st, "a", upload(tombstone("q"), q[1].Seq))
	r := history(t, st, "r", 1)
	auditRows := len(audit(t, st, store.AuditQuery{Limit: 1000}))
	now := time.Now()

	if n := prune(t, st, store.Retention{Keep: 10}, now); n != 0 {
		t.Fatalf("Prune(Keep 10) removed %d; want 0", n)
	}
	if n := prune(t, st, store.Retention{Keep: 2}, now); n != 2 {
		t.Fatalf("Prune(Keep 2) removed %d; want 2", n)
	}
	expectVersions(t, st, "p", p[4], p[3], p[2])
	expectVersions(t, st, "q", qDel, q[1], q[0])
	for _, gone := range p[:2] {
		if _, err := st.Version(ctxFor(t), "p", gone.Seq); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Version(p, %d) after prune: %v; want store.ErrNotFound", gone.Seq, err)
		}
	}
	if n := prune(t, st, store.Retention{Keep: 0}, now); n != 4 {
		t.Fatalf("Prune(Keep 0) removed %d; want 4", n)
	}
	expectVersions(t, st, "p", p[4])
	// A tombstone is a current entry: never pruned, so agents still hear of the delete.
	expectVersions(t, st, "q", qDel)
	expectEntry(t, "q after prune", get(t, st, "q"), qDel)
	expectVersions(t, st, "r", r[0])
	if n := prune(t, st, store.Retention{}, now.Add(1000*time.Hour)); n != 0 {
		t.Fatalf("a second Prune removed %d; want 0", n)
	}
	if n := len(audit(t, st, store.AuditQuery{Limit: 1000})); n != auditRows {
		t.Fatalf("Prune changed the audit log: %d rows, was %d", n, auditRows)
	}
	// Pruning frees no seq: the next change still takes the next one.
	if e := commit(t, st, "a", upload(file("p", "after"), p[4].Seq)); e.Seq != r[0].Seq+1 {
		t.Fatalf("change after prune has seq %d; want %d", e.Seq, r[0].Seq+1)
	}
}

func (s *suite) testPruneMaxAge(t *testing.T) {
	st := s.fresh(t)
	old := history(t, st, "p", 2)
	time.Sleep(1500 * time.Millisecond)
	mid := time.Now()
	young := make([]proto.Entry, 0, 3)
	base := old[1].Seq
	for k := 3; k <= 5; k++ {
		e := commit(t, st, "a", upload(file("p", fmt.Sprintf("p v%d", k)), base))
		young = append(young, e)
		base = e.Seq
	}
	// Everything is younger than an hour.
	if n := prune(t, st, store.Retention{MaxAge: time.Hour}, time.Now()); n != 0 {
		t.Fatalf("Prune(MaxAge 1h) removed %d; want 0", n)
	}
	// The cutoff falls between the old versions and the young ones.
	now := time.Now()
	maxAge := now.Sub(mid) + 750*time.Millisecond
	if n := prune(t, st, store.Retention{MaxAge: maxAge}, now); n != 2 {
		t.Fatalf("Prune(MaxAge) removed %d; want the 2 old versions", n)
	}
	expectVersions(t, st, "p", young[2], young[1], young[0])
	// Keep and MaxAge together: a version stays when either keeps it.
	if n := prune(t, st, store.Retention{Keep: 1, MaxAge: time.Hour}, now.Add(2*time.Hour)); n != 1 {
		t.Fatalf("Prune(Keep 1, MaxAge 1h) two hours later removed %d; want 1", n)
	}
	expectVersions(t, st, "p", young[2], young[1])
	// The current entry is never pruned, however old.
	if n := prune(t, st, store.Retention{MaxAge: time.Hour}, now.Add(2*time.Hour)); n != 1 {
		t.Fatalf("Prune(MaxAge 1h) two hours later removed %d; want 1", n)
	}
	expectVersions(t, st, "p", young[2])
}

func (s *suite) testBlockRefs(t *testing.T) {
	st := s.fresh(t)
	if refs := blockRefs(t, st); len(refs) != 0 {
		t.Fatalf("BlockRefs on an empty store: %v", refs)
	}
	hA, hB, hC, hD := sha("aaaa"), sha("bbbb"), sha("cccc"), sha("dddd")
	f1 := commit(t, st, "a", upload(file("f1", "aaaabbbb"), 0))
	f2 := commit(t, st, "a", upload(file("f2", "aaaacccc"), 0))
	commit(t, st, "a", upload(dir("d"), 0))
	commit(t, st, "a", upload(symlink("l", "f1"), 0))
	expectRefs(t, st, hA, hB, hC)

	commit(t, st, "a", upload(file("f1", "dddd"), f1.Seq))
	expectRefs(t, st, hA, hB, hC, hD) // the old version of f1 is retained
	commit(t, st, "a", upload(tombstone("f2"), f2.Seq))
	expectRefs(t, st, hA, hB, hC, hD) // so is the deleted f2

	if n := prune(t, st, store.Retention{Keep: 0}, time.Now()); n != 2 {
		t.Fatalf("Prune removed %d; want 2", n)
	}
	expectRefs(t, st, hD)

	stop := errors.New("stop")
	if err := st.BlockRefs(ctxFor(t), func(string) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("BlockRefs with a failing fn: %v; want the fn's error", err)
	}
}

// expectRefs checks that BlockRefs names exactly want, each once.
func expectRefs(t *testing.T, st store.Store, want ...string) {
	t.Helper()
	refs := blockRefs(t, st)
	var got []string
	for h, n := range refs {
		if n != 1 {
			t.Fatalf("BlockRefs named %s %d times; want once", h[:8], n)
		}
		got = append(got, h)
	}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("BlockRefs = %v; want %v", got, want)
	}
}
