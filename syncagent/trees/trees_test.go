package trees

import (
	"fmt"
	"maps"
	"testing"

	"pgregory.net/rapid"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// model is the store as four plain maps: what every sequence of changes must read back.
type model struct {
	local, remote, synced plan.Tree
	index                 map[string]IndexEntry
}

var hashA, hashB = plan.HashOf([]byte("a")), plan.HashOf([]byte("b"))

// drawNode draws nodes that are often equal to each other apart from the Seq (the
// store's common case) and sometimes not: other contents, links, unusual types, a
// Local node with a Seq.
func drawNode(t *rapid.T, label string, seqs bool) plan.Node {
	n := plan.Node{
		Type:    rapid.SampledFrom([]proto.EntryType{proto.TypeFile, proto.TypeFile, proto.TypeDir, proto.TypeSymlink, "fifo"}).Draw(t, label+"Type"),
		SHA256:  rapid.SampledFrom([]plan.Hash{{}, hashA, hashB}).Draw(t, label+"SHA"),
		Mode:    rapid.SampledFrom([]uint32{0o644, 0o755}).Draw(t, label+"Mode"),
		Size:    rapid.Int64Range(0, 2).Draw(t, label+"Size"),
		MTimeNs: rapid.Int64Range(0, 1).Draw(t, label+"MTime"),
	}
	if n.Type == proto.TypeSymlink && rapid.Bool().Draw(t, label+"HasTarget") {
		n.Target = "t"
	}
	if seqs || rapid.IntRange(0, 9).Draw(t, label+"OddSeq") == 0 {
		n.Seq = rapid.Int64Range(0, 3).Draw(t, label+"Seq")
	}
	return n
}

func TestTreesReadBackAsFourMaps(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := New(rapid.IntRange(0, 4).Draw(t, "hint"))
		m := model{plan.Tree{}, plan.Tree{}, plan.Tree{}, map[string]IndexEntry{}}
		path := rapid.SampledFrom([]string{"a", "b", "d/c", "e"})
		for step := range rapid.IntRange(1, 60).Draw(t, "steps") {
			p := path.Draw(t, "path")
			label := fmt.Sprint(step)
			before, changes := m.clone(), s.Changes()
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0:
				n := drawNode(t, label, false)
				s.Local.Set(p, n)
				m.local[p] = n
			case 1:
				n := drawNode(t, label, true)
				s.Remote.Set(p, n)
				m.remote[p] = n
			case 2:
				n := drawNode(t, label, true)
				s.Synced.Set(p, n)
				m.synced[p] = n
			case 3:
				n := drawNode(t, label, false)
				e := IndexEntry{Type: n.Type, SHA256: n.SHA256, Target: n.Target, Mode: n.Mode, Size: n.Size,
					MTimeNs: n.MTimeNs, Ino: rapid.Uint64Range(0, 2).Draw(t, label+"ino")}
				s.Index.Set(p, e)
				m.index[p] = e
			case 4:
				// The agent's usual step: one content lands on every side at once.
				n := drawNode(t, label, false)
				n.Seq = 0
				e := IndexEntry{Type: n.Type, SHA256: n.SHA256, Target: n.Target, Mode: n.Mode, Size: n.Size, MTimeNs: n.MTimeNs, Ino: 7}
				s.Index.Set(p, e)
				s.Local.Set(p, n)
				m.index[p], m.local[p] = e, n
				n.Seq = int64(step)
				s.Synced.Set(p, n)
				s.Remote.Set(p, n)
				m.synced[p], m.remote[p] = n, n
			case 5:
				s.Local.Delete(p)
				delete(m.local, p)
			case 6:
				s.Remote.Delete(p)
				delete(m.remote, p)
			case 7:
				s.Synced.Delete(p)
				delete(m.synced, p)
			case 8:
				s.Index.Delete(p)
				delete(m.index, p)
			case 9:
				if rapid.Bool().Draw(t, label+"which") {
					s.Remote.Clear()
					clear(m.remote)
				} else {
					s.Synced.Clear()
					clear(m.synced)
				}
			}
			check(t, s, &m)
			// A change of any side moves the count (the agent trusts a verdict on the
			// trees while it stays).
			if !m.equal(before) && s.Changes() == changes {
				t.Fatalf("the step changed the store; its change count stayed %d", changes)
			}
		}
	})
}

func (m *model) clone() model {
	return model{maps.Clone(m.local), maps.Clone(m.remote), maps.Clone(m.synced), maps.Clone(m.index)}
}

func (m *model) equal(o model) bool {
	return maps.Equal(m.local, o.local) && maps.Equal(m.remote, o.remote) && maps.Equal(m.synced, o.synced) &&
		maps.Equal(m.index, o.index)
}

func check(t *rapid.T, s *Trees, m *model) {
	for _, c := range []struct {
		name string
		v    Side
		want plan.Tree
	}{{"local", s.Local, m.local}, {"remote", s.Remote, m.remote}, {"synced", s.Synced, m.synced}} {
		if got := maps.Collect(c.v.All()); !maps.Equal(got, c.want) {
			t.Fatalf("%s tree: got %v, want %v", c.name, got, c.want)
		}
		if c.v.Len() != len(c.want) {
			t.Fatalf("%s tree: Len %d, want %d", c.name, c.v.Len(), len(c.want))
		}
		for _, p := range []string{"a", "b", "d/c", "e", "zz"} {
			got, ok := c.v.Get(p)
			want, wok := c.want[p]
			if ok != wok || got != want {
				t.Fatalf("%s tree: Get(%q) = %v %v, want %v %v", c.name, p, got, ok, want, wok)
			}
		}
	}
	if got := maps.Collect(s.Index.All()); !maps.Equal(got, m.index) || s.Index.Len() != len(m.index) {
		t.Fatalf("index: got %v (Len %d), want %v", got, s.Index.Len(), m.index)
	}
	for p, want := range m.index {
		if got, ok := s.Index.Get(p); !ok || got != want {
			t.Fatalf("index: Get(%q) = %v %v, want %v", p, got, ok, want)
		}
	}
	// The shape: one record per path present anywhere, and nothing in the overflow that
	// the base could hold.
	union := map[string]bool{}
	for _, t := range []map[string]plan.Node{m.local, m.remote, m.synced} {
		for p := range t {
			union[p] = true
		}
	}
	for p := range m.index {
		union[p] = true
	}
	if len(s.paths) != len(union) || int(s.used)-len(s.free) != len(union) {
		t.Fatalf("%d paths, %d records in use, want %d", len(s.paths), int(s.used)-len(s.free), len(union))
	}
	for p, i := range s.paths {
		r := s.rec(i)
		for sd := side(1); sd <= index; sd <<= 1 {
			if r.has&sd == 0 || r.inBase&sd != 0 {
				continue
			}
			if e := s.overGet(sd, p); fits(sd, e) && (r.inBase == 0 || r.matches(e)) {
				t.Fatalf("path %q: side %d is in the overflow but the base could hold it", p, sd)
			}
		}
	}
	overflow := len(s.overIndex)
	for _, o := range s.over {
		overflow += len(o)
	}
	held := 0
	for _, i := range s.paths {
		held += popcount(s.rec(i).has &^ s.rec(i).inBase)
	}
	if overflow != held {
		t.Fatalf("%d overflow entries, %d sides out of the base", overflow, held)
	}
}

func popcount(s side) int {
	n := 0
	for ; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// TestTreesSharedContent checks the point of the store: a path synced everywhere is one
// record and no overflow, and an edit not yet uploaded sends only the changed sides out.
func TestTreesSharedContent(t *testing.T) {
	s := New(0)
	n := plan.Node{Type: proto.TypeFile, SHA256: hashA, Mode: 0o644, Size: 3, MTimeNs: 5}
	s.Index.Set("f", IndexEntry{Type: n.Type, SHA256: n.SHA256, Mode: n.Mode, Size: n.Size, MTimeNs: n.MTimeNs, Ino: 9})
	s.Local.Set("f", n)
	n.Seq = 4
	s.Synced.Set("f", n)
	s.Remote.Set("f", n)
	if r := s.rec(s.paths["f"]); r.inBase != local|remote|synced|index || len(s.overIndex)+len(s.over[0])+len(s.over[1])+len(s.over[2]) != 0 {
		t.Fatalf("a synced path: base sides %b, overflow %d", r.inBase, len(s.overIndex))
	}
	edit := plan.Node{Type: proto.TypeFile, SHA256: hashB, Mode: 0o644, Size: 4, MTimeNs: 6}
	s.Local.Set("f", edit)
	s.Index.Set("f", IndexEntry{Type: edit.Type, SHA256: edit.SHA256, Mode: edit.Mode, Size: edit.Size, MTimeNs: edit.MTimeNs, Ino: 9})
	if len(s.over[0]) != 1 || len(s.overIndex) != 1 {
		t.Fatalf("an edit: overflow local %d, index %d, want 1 and 1", len(s.over[0]), len(s.overIndex))
	}
	edit.Seq = 8
	s.Synced.Set("f", edit)
	s.Remote.Set("f", edit)
	if r := s.rec(s.paths["f"]); r.inBase != local|remote|synced|index || r.sha != hashB || len(s.over[0])+len(s.overIndex) != 0 {
		t.Fatalf("the edit uploaded: base sides %b, content %q, overflow %d", r.inBase, r.sha, len(s.over[0])+len(s.overIndex))
	}
	if got, _ := s.Remote.Get("f"); got != edit {
		t.Fatalf("remote: %v, want %v", got, edit)
	}
}

// TestTreesManyPaths crosses several chunks of records and reuses freed ones.
func TestTreesManyPaths(t *testing.T) {
	s := New(0)
	const n = 3*chunkLen + 5
	node := func(i int) plan.Node {
		return plan.Node{Type: proto.TypeFile, SHA256: plan.HashOf(fmt.Append(nil, i)), Size: int64(i), Seq: int64(i + 1)}
	}
	for i := range n {
		s.Synced.Set(fmt.Sprint("p", i), node(i))
	}
	for i := 0; i < n; i += 2 {
		s.Synced.Delete(fmt.Sprint("p", i))
	}
	for i := 0; i < n; i += 4 {
		s.Remote.Set(fmt.Sprint("q", i), node(i))
	}
	if int(s.used) > n+1 {
		t.Fatalf("%d records handed out for at most %d paths at once", s.used, n)
	}
	for i := range n {
		got, ok := s.Synced.Get(fmt.Sprint("p", i))
		if ok != (i%2 == 1) || ok && got != node(i) {
			t.Fatalf("p%d: %v %v", i, got, ok)
		}
		got, ok = s.Remote.Get(fmt.Sprint("q", i))
		if ok != (i%4 == 0) || ok && got != node(i) {
			t.Fatalf("q%d: %v %v", i, got, ok)
		}
	}
	if s.Synced.Len() != n/2 || s.Remote.Len() != (n+3)/4 {
		t.Fatalf("Len: synced %d, remote %d", s.Synced.Len(), s.Remote.Len())
	}
}
