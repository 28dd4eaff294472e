package storetest

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver/proto"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

func (s *suite) testChangesPaging(t *testing.T) {
	st := s.fresh(t)
	if es := changes(t, st, 0, 10); len(es) != 0 {
		t.Fatalf("Changes on an empty store returned %d entries", len(es))
	}
	var cs []store.Change
	for i := range 10 {
		cs = append(cs, upload(file(fmt.Sprintf("f%02d", i), fmt.Sprint(i)), 0))
	}
	res := apply(t, st, "a", cs...)
	var pages [][]int64
	for cursor := int64(0); ; {
		es := changes(t, st, cursor, 3)
		if len(es) == 0 {
			break
		}
		if len(es) > 3 {
			t.Fatalf("Changes(%d, 3) returned %d entries", cursor, len(es))
		}
		pages = append(pages, seqsOf(es))
		for _, e := range es {
			expectEntry(t, fmt.Sprintf("Changes entry seq %d", e.Seq), e, res[e.Seq-1].Entry)
		}
		cursor = es[len(es)-1].Seq
	}
	if got := fmt.Sprint(pages); got != "[[1 2 3] [4 5 6] [7 8 9] [10]]" {
		t.Fatalf("pages %s; want [[1 2 3] [4 5 6] [7 8 9] [10]]", got)
	}
	// The feed holds current entries: a superseded version leaves it, its successor
	// appears at the end.
	commit(t, st, "b", upload(file("f03", "changed"), 4))
	commit(t, st, "b", upload(tombstone("f05"), 6))
	all := changes(t, st, 0, 100)
	if got := fmt.Sprint(seqsOf(all)); got != "[1 2 3 5 7 8 9 10 11 12]" {
		t.Fatalf("Changes(0) seqs %s; want [1 2 3 5 7 8 9 10 11 12]", got)
	}
	if all[8].Path != "f03" || all[9].Path != "f05" || !all[9].Deleted {
		t.Fatalf("tail of the feed = %+v, %+v; want f03 then the tombstone of f05", all[8], all[9])
	}
	if got := fmt.Sprint(seqsOf(changes(t, st, 10, 100))); got != "[11 12]" {
		t.Fatalf("Changes(10) seqs %s; want [11 12]", got)
	}
	if es := changes(t, st, 12, 100); len(es) != 0 {
		t.Fatalf("Changes(12) returned %d entries; want none", len(es))
	}
}

func (s *suite) testTombstones(t *testing.T) {
	st := s.fresh(t)
	f := commit(t, st, "a", upload(file("gone.txt", "soon gone"), 0))
	commit(t, st, "a", upload(file("stays.txt", "stays"), 0))
	// A delete on a stale base conflicts and deletes nothing.
	if r := apply(t, st, "b", upload(tombstone("gone.txt"), f.Seq+5))[0]; !r.Conflict {
		t.Fatal("a delete on a stale base was accepted")
	}
	del := commit(t, st, "b", store.Change{Entry: tombstone("gone.txt"), BaseSeq: f.Seq, Action: proto.ActionDelete})
	if !del.Deleted || del.Seq != 3 || del.ModifiedBy != "b" {
		t.Fatalf("delete result = %+v; want a tombstone with seq 3 by b", del)
	}
	g := get(t, st, "gone.txt")
	if !g.Deleted || g.Seq != 3 {
		t.Fatalf("Get after delete = %+v; want the tombstone with seq 3", g)
	}
	for _, e := range live(t, st) {
		if e.Path == "gone.txt" {
			t.Fatal("Live lists a deleted path")
		}
	}
	if n := len(live(t, st)); n != 1 {
		t.Fatalf("Live lists %d entries; want 1", n)
	}
	feed := changes(t, st, 2, 10)
	if len(feed) != 1 || feed[0].Path != "gone.txt" || !feed[0].Deleted || feed[0].Seq != 3 {
		t.Fatalf("Changes(2) = %+v; want only the tombstone", feed)
	}
	vs := versions(t, st, "gone.txt")
	if len(vs) != 2 || !vs[0].Deleted || vs[1].Seq != f.Seq {
		t.Fatalf("Versions = %+v; want the tombstone then the file", vs)
	}
	if got := stats(t, st); got.Files != 1 || got.Bytes != int64(len("stays")) || got.Seq != 3 {
		t.Fatalf("Stats after delete = %+v; want 1 file of 5 bytes, seq 3", got)
	}
}

func (s *suite) testLiveOrder(t *testing.T) {
	st := s.fresh(t)
	paths := []string{"b", "a/b", "a-b", "a.b", "B", "a", "a/b/c", "Z/ä", "z", "a/B", "é", "ab"}
	var cs []store.Change
	for _, p := range paths {
		cs = append(cs, upload(file(p, p), 0))
	}
	cs = append(cs, upload(dir("dir"), 0), upload(symlink("link", "a"), 0))
	apply(t, st, "a", cs...)
	commit(t, st, "a", upload(tombstone("ab"), int64(len(paths))))
	want := append([]string{"dir", "link"}, paths...)
	want = want[:len(want)-1] // "ab" was deleted
	sort.Strings(want)
	var got []string
	for _, e := range live(t, st) {
		got = append(got, e.Path)
		if e.Deleted {
			t.Fatalf("Live passed a tombstone: %+v", e)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Live order %q; want %q (byte order)", got, want)
	}
	// An error from fn stops the walk and comes back.
	stop := errors.New("stop here")
	calls := 0
	err := st.Live(ctxFor(t), func(proto.Entry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Live with a failing fn = %v after %d calls; want the fn's error after 1 call", err, calls)
	}
}

func (s *suite) testVersions(t *testing.T) {
	st := s.fresh(t)
	if _, err := st.Versions(ctxFor(t), "nothing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Versions(absent): %v; want store.ErrNotFound", err)
	}
	v1 := commit(t, st, "a", upload(file("p", "one"), 0))
	commit(t, st, "a", upload(file("q", "other path"), 0))
	v2 := commit(t, st, "b", upload(file("p", "two"), v1.Seq))
	v3 := commit(t, st, "c", upload(file("p", "three"), v2.Seq))
	del := commit(t, st, "c", upload(tombstone("p"), v3.Seq))
	vs := versions(t, st, "p")
	want := []proto.Entry{del, v3, v2, v1}
	if len(vs) != len(want) {
		t.Fatalf("Versions returned seqs %v; want %v", seqsOf(vs), seqsOf(want))
	}
	for i := range want {
		expectEntry(t, fmt.Sprintf("version %d", i), vs[i], want[i])
	}
	for _, v := range want {
		got, err := st.Version(ctxFor(t), "p", v.Seq)
		if err != nil {
			t.Fatalf("Version(p, %d): %v", v.Seq, err)
		}
		expectEntry(t, fmt.Sprintf("Version(p, %d)", v.Seq), got, v)
	}
	for _, probe := range []struct {
		path string
		seq  int64
	}{{"p", 2}, {"q", v2.Seq}, {"p", 99}, {"absent", 1}, {"p", 0}} {
		if _, err := st.Version(ctxFor(t), probe.path, probe.seq); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Version(%q, %d): %v; want store.ErrNotFound", probe.path, probe.seq, err)
		}
	}
}
