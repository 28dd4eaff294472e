package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func (s *suite) testAuditExact(t *testing.T) {
	st := s.fresh(t)
	if recs := audit(t, st, store.AuditQuery{}); len(recs) != 0 {
		t.Fatalf("Audit on an empty store returned %d rows", len(recs))
	}
	conflictCopy := proto.ConflictPath("x.txt", "ns/pod-b", time.Date(2026, 11, 22, 9, 8, 7, 0, time.UTC))
	e1 := commit(t, st, "ns/pod-a", upload(file("x.txt", "one"), 0))
	e2 := commit(t, st, "ns/pod-b", upload(file("x.txt", "two!"), e1.Seq))
	e3 := commit(t, st, "ns/pod-a", upload(dir("d"), 0))
	e4 := commit(t, st, "ns/pod-a", upload(symlink("d/l", "../x.txt"), 0))
	e5 := commit(t, st, "ns/pod-c", upload(tombstone("x.txt"), e2.Seq))
	e6 := commit(t, st, "ns/pod-c", store.Change{Entry: e1, BaseSeq: e5.Seq, Action: proto.ActionRestore})
	e7 := commit(t, st, "ns/pod-b", store.Change{Entry: file(conflictCopy, "mine"), Action: proto.ActionConflict})
	// Conflicting changes write no row.
	if r := apply(t, st, "ns/pod-z", upload(file("x.txt", "late"), e1.Seq))[0]; !r.Conflict {
		t.Fatal("stale upload accepted")
	}

	want := []proto.AuditRecord{
		{Action: proto.ActionConflict, Path: conflictCopy, Seq: e7.Seq, SHA256: sha("mine"), Size: 4, Agent: "ns/pod-b", Timestamp: e7.ModifiedAt},
		{Action: proto.ActionRestore, Path: "x.txt", Seq: e6.Seq, SHA256: sha("one"), Size: 3, Agent: "ns/pod-c", Timestamp: e6.ModifiedAt},
		{Action: proto.ActionDelete, Path: "x.txt", Seq: e5.Seq, PrevSHA: sha("two!"), Agent: "ns/pod-c", Timestamp: e5.ModifiedAt},
		{Action: proto.ActionSymlink, Path: "d/l", Seq: e4.Seq, Agent: "ns/pod-a", Timestamp: e4.ModifiedAt},
		{Action: proto.ActionMkdir, Path: "d", Seq: e3.Seq, Agent: "ns/pod-a", Timestamp: e3.ModifiedAt},
		{Action: proto.ActionUpload, Path: "x.txt", Seq: e2.Seq, SHA256: sha("two!"), PrevSHA: sha("one"), Size: 4, Agent: "ns/pod-b", Timestamp: e2.ModifiedAt},
		{Action: proto.ActionUpload, Path: "x.txt", Seq: e1.Seq, SHA256: sha("one"), Size: 3, Agent: "ns/pod-a", Timestamp: e1.ModifiedAt},
	}
	got := audit(t, st, store.AuditQuery{})
	if len(got) != len(want) {
		t.Fatalf("Audit returned %d rows; want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Action != w.Action || g.Path != w.Path || g.Seq != w.Seq || g.SHA256 != w.SHA256 || g.PrevSHA != w.PrevSHA || g.Size != w.Size || g.Agent != w.Agent {
			t.Errorf("row %d = %+v\n want %+v", i, g, w)
		}
		if !near(g.Timestamp, w.Timestamp) || g.Timestamp.IsZero() {
			t.Errorf("row %d timestamp %v; want the entry's ModifiedAt %v", i, g.Timestamp, w.Timestamp)
		}
		if i > 0 && g.ID >= got[i-1].ID {
			t.Errorf("row %d has ID %d after ID %d; want newest first with decreasing IDs", i, g.ID, got[i-1].ID)
		}
	}
}

func (s *suite) testAuditFilters(t *testing.T) {
	st := s.fresh(t)
	var cs []store.Change
	for i := range 50 {
		cs = append(cs, upload(file(fmt.Sprintf("a/%d", i), "a"), 0)) // seqs 1..50
	}
	apply(t, st, "alice", cs...)
	cs = cs[:0]
	for i := range 50 {
		cs = append(cs, upload(file(fmt.Sprintf("b/%d", i), "b"), 0)) // seqs 51..100
	}
	apply(t, st, "bob", cs...)
	cs = cs[:0]
	base := int64(1)
	for i := range 20 { // 20 updates of a/0 in one batch: seqs 101..120
		cs = append(cs, upload(file("a/0", fmt.Sprint("edit ", i)), base))
		base = 101 + int64(i)
	}
	for _, r := range apply(t, st, "alice", cs...) {
		if r.Conflict {
			t.Fatal("chained updates within one batch conflicted")
		}
	}

	span := func(hi, lo int64) []int64 {
		var out []int64
		for s := hi; s >= lo; s-- {
			out = append(out, s)
		}
		return out
	}
	seqs := func(recs []proto.AuditRecord) []int64 {
		out := make([]int64, len(recs))
		for i, r := range recs {
			out[i] = r.Seq
		}
		return out
	}
	check := func(q store.AuditQuery, want []int64) []proto.AuditRecord {
		t.Helper()
		got := audit(t, st, q)
		if fmt.Sprint(seqs(got)) != fmt.Sprint(want) {
			t.Fatalf("Audit(%+v) seqs %v; want %v", q, seqs(got), want)
		}
		return got
	}
	check(store.AuditQuery{}, span(120, 21)) // default limit 100
	check(store.AuditQuery{Limit: 5}, span(120, 116))
	check(store.AuditQuery{Limit: 500}, span(120, 1))
	check(store.AuditQuery{Path: "a/0"}, append(span(120, 101), 1))
	check(store.AuditQuery{Agent: "bob", Limit: 10}, span(100, 91))
	check(store.AuditQuery{Path: "a/0", Agent: "bob"}, nil)
	check(store.AuditQuery{Path: "a"}, nil) // exact path, not a prefix

	// Paging through alice's rows with Before.
	var all []int64
	q := store.AuditQuery{Agent: "alice", Limit: 30}
	for page := 0; ; page++ {
		recs := audit(t, st, q)
		if len(recs) == 0 {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
		all = append(all, seqs(recs)...)
		q.Before = recs[len(recs)-1].ID
	}
	if fmt.Sprint(all) != fmt.Sprint(append(span(120, 101), span(50, 1)...)) {
		t.Fatalf("paged alice rows %v; want 120..101 then 50..1", all)
	}
	row3 := check(store.AuditQuery{Path: "a/2"}, []int64{3})
	check(store.AuditQuery{Before: row3[0].ID}, []int64{2, 1})
}

func (s *suite) testStats(t *testing.T) {
	st := s.fresh(t)
	if got := stats(t, st); got != (store.Stats{}) {
		t.Fatalf("Stats of an empty store = %+v; want zero", got)
	}
	conflictFile := proto.ConflictPath("a/report.txt", "laptop", time.Date(2026, 11, 22, 9, 8, 7, 0, time.UTC))
	conflictDir := proto.ConflictPath("a/photos", "laptop", time.Date(2026, 11, 22, 9, 8, 7, 0, time.UTC))
	gone := commit(t, st, "a", upload(file("gone", "a hundred bytes? no, fewer"), 0))
	apply(t, st, "a",
		upload(file("a/report.txt", "abc"), 0),
		upload(file("b", "hello"), 0),
		upload(dir("a"), 0),
		upload(dir(conflictDir), 0),
		upload(symlink("l", "b"), 0),
		upload(file(conflictFile, "abcd"), 0),
	)
	last := commit(t, st, "a", upload(tombstone("gone"), gone.Seq))
	want := store.Stats{Files: 3, Dirs: 2, Symlinks: 1, Bytes: 3 + 5 + 4, Seq: 8, Conflicts: 2}
	got := stats(t, st)
	lastChange := got.LastChange
	got.LastChange = time.Time{}
	if got != want {
		t.Fatalf("Stats = %+v; want %+v", got, want)
	}
	if !near(lastChange, last.ModifiedAt) || lastChange.IsZero() {
		t.Fatalf("Stats.LastChange = %v; want the last change's time %v", lastChange, last.ModifiedAt)
	}
	// Resolving the conflict copies brings the count down.
	c := get(t, st, conflictFile)
	cd := get(t, st, conflictDir)
	apply(t, st, "a", upload(tombstone(conflictFile), c.Seq), upload(tombstone(conflictDir), cd.Seq))
	got = stats(t, st)
	if got.Conflicts != 0 || got.Files != 2 || got.Dirs != 1 || got.Bytes != 8 || got.Seq != 10 {
		t.Fatalf("Stats after resolving conflicts = %+v", got)
	}
}

func (s *suite) testFolderID(t *testing.T) {
	a, b := s.fresh(t), s.fresh(t)
	id := a.FolderID()
	if id == "" {
		t.Fatal("FolderID is empty")
	}
	commit(t, a, "x", upload(file("f", "f"), 0))
	if again := a.FolderID(); again != id {
		t.Fatalf("FolderID changed from %q to %q", id, again)
	}
	if b.FolderID() == id {
		t.Fatalf("two stores share FolderID %q", id)
	}
}

func (s *suite) testReopen(t *testing.T) {
	st, reopen := s.cfg.reopenable(t)
	if st == nil || reopen == nil {
		t.Fatal("the reopenable opener returned nil")
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			st.Close()
		}
	})
	id := st.FolderID()
	v1 := commit(t, st, "a", upload(file("p", "one"), 0))
	v2 := commit(t, st, "a", upload(file("p", "two"), v1.Seq))
	del := commit(t, st, "b", upload(tombstone("p"), v2.Seq))
	rows := audit(t, st, store.AuditQuery{})
	before := stats(t, st)
	closed = true
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	st2 := reopen(t)
	t.Cleanup(func() {
		if err := st2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if got := st2.FolderID(); got != id {
		t.Fatalf("FolderID after reopen = %q; want %q", got, id)
	}
	expectVersions(t, st2, "p", del, v2, v1)
	if got := stats(t, st2); got.Seq != before.Seq || !near(got.LastChange, before.LastChange) {
		t.Fatalf("Stats after reopen = %+v; want %+v", got, before)
	}
	got := audit(t, st2, store.AuditQuery{})
	if len(got) != len(rows) {
		t.Fatalf("%d audit rows after reopen; want %d", len(got), len(rows))
	}
	for i := range rows {
		g, w := got[i], rows[i]
		if !near(g.Timestamp, w.Timestamp) {
			t.Fatalf("audit row %d timestamp after reopen %v; want %v", i, g.Timestamp, w.Timestamp)
		}
		g.Timestamp, w.Timestamp = time.Time{}, time.Time{}
		if g != w {
			t.Fatalf("audit row %d after reopen = %+v; want %+v", i, g, w)
		}
	}
	if e := commit(t, st2, "c", upload(file("p", "three"), del.Seq)); e.Seq != del.Seq+1 {
		t.Fatalf("first change after reopen has seq %d; want %d", e.Seq, del.Seq+1)
	}
}
