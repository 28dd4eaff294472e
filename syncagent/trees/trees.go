// Package trees keeps an agent's image of a folder in memory: the Local, Remote and
// Synced trees the planner reads and the index cache the scanner keeps, all four in one
// map from path to one compact record.
//
// Four maps of full nodes cost a folder of 100,000 files about 60 MB: four map slots
// of ~100 bytes per path, while the four nodes of a path are nearly always the same
// content (the Seq aside). A record holds that content once, with each side's Seq, and
// bits saying which sides are present and which of them equal it; a side that differs
// (a change not synced yet, a symlink, an unusual type) is kept whole in a small
// overflow map of its own. The store keeps records in that shape as sides change: when
// no side is left on a record's content, one from the overflow takes its place.
// Records hold no pointers (a plan.Hash is bytes), so the collector does not scan them.
package trees

import (
	"iter"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// IndexEntry is the index cache's record of a path: its stat key and content hash.
type IndexEntry struct {
	Type    proto.EntryType
	SHA256  plan.Hash
	Target  string
	Mode    uint32
	Size    int64
	MTimeNs int64
	Ino     uint64
}

// Node returns the entry as a Local-tree node.
func (e IndexEntry) Node() plan.Node {
	return plan.Node{Type: e.Type, SHA256: e.SHA256, Target: e.Target, Mode: e.Mode, Size: e.Size, MTimeNs: e.MTimeNs}
}

// side names one of the four; as a bit it marks the side in a record's masks.
type side uint8

const (
	local side = 1 << iota
	remote
	synced
	index
	sides = 4
)

// slot is a side's position in the per-side arrays.
func (s side) slot() int {
	switch s {
	case local:
		return 0
	case remote:
		return 1
	case synced:
		return 2
	}
	return 3
}

// Type codes of a record's content; other types are kept in the overflow. (The snapshot
// file has codes of its own, equal today: a file format must not change with this
// package's memory layout.)
const (
	typeFile uint8 = iota
	typeDir
	typeSymlink
	typeOther
)

func typeCode(t proto.EntryType) uint8 {
	switch t {
	case proto.TypeFile:
		return typeFile
	case proto.TypeDir:
		return typeDir
	case proto.TypeSymlink:
		return typeSymlink
	}
	return typeOther
}

var typeOf = [...]proto.EntryType{typeFile: proto.TypeFile, typeDir: proto.TypeDir, typeSymlink: proto.TypeSymlink}

// record is one path: a content, and which sides are present (has) and which of those
// are that content (inBase; the others are in the overflow). 80 bytes.
type record struct {
	sha       plan.Hash
	size      int64
	mtime     int64
	ino       uint64 // the index's, while the index is in the base
	remoteSeq int64
	syncedSeq int64
	mode      uint32
	typ       uint8
	has       side
	inBase    side
}

// Trees is the store. Use it through a pointer (its sides point back to it); it is not
// safe for concurrent use, except for concurrent reads.
type Trees struct {
	// Local is the Local tree: the disk as last scanned.
	Local Side
	// Remote is the Remote tree: the server as the changes feed last told.
	Remote Side
	// Synced is the Synced tree: the merge base.
	Synced Side
	// Index is the index cache: the stat key and hash of every scanned path.
	Index IndexSide

	paths map[string]int32
	// recs holds the records in chunks of chunkLen: a large folder's records grow
	// without copies and without a doubled array's slack.
	recs  [][]record
	used  int32 // records handed out, free ones included
	free  []int32
	count [sides]int
	over  [3]map[string]plan.Node // the Local, Remote and Synced nodes not in the base
	// overIndex holds the index entries not in the base.
	overIndex map[string]IndexEntry
	// changes counts the calls of set and of delete that found something to delete.
	changes uint64
}

// New returns an empty store with room for about n paths.
func New(n int) *Trees {
	t := &Trees{paths: make(map[string]int32, n), overIndex: map[string]IndexEntry{}}
	for i := range t.over {
		t.over[i] = map[string]plan.Node{}
	}
	t.Local, t.Remote, t.Synced, t.Index = Side{t, local}, Side{t, remote}, Side{t, synced}, IndexSide{t}
	return t
}

// chunkLen is the number of records per chunk (256 KiB).
const chunkLen = 4096

// rec returns record i.
func (t *Trees) rec(i int32) *record { return &t.recs[i/chunkLen][i%chunkLen] }

// newRec hands out a zero record.
func (t *Trees) newRec() int32 {
	if n := len(t.free); n > 0 {
		i := t.free[n-1]
		t.free = t.free[:n-1]
		*t.rec(i) = record{}
		return i
	}
	i := t.used
	if int(i/chunkLen) == len(t.recs) {
		t.recs = append(t.recs, make([]record, chunkLen))
	}
	t.used++
	return i
}

// Changes counts the changes made to the store so far: while it stays the same, so do
// the trees and the index (a Set of what a path already holds counts too).
func (t *Trees) Changes() uint64 { return t.changes }

// Paths counts the paths present on any side.
func (t *Trees) Paths() int { return len(t.paths) }

// All yields every path present on any side, in no particular order.
func (t *Trees) All() iter.Seq[string] {
	return func(yield func(string) bool) {
		for p := range t.paths {
			if !yield(p) {
				return
			}
		}
	}
}

// entry is a side's state at one path, whatever the side: a node, and an inode for
// the index.
type entry struct {
	n   plan.Node
	ino uint64
}

func (t *Trees) get(s side, p string) (entry, bool) {
	i, ok := t.paths[p]
	if !ok {
		return entry{}, false
	}
	r := t.rec(i)
	if r.has&s == 0 {
		return entry{}, false
	}
	return t.at(s, p, r), true
}

// at returns side s, present in r, the record of p.
func (t *Trees) at(s side, p string, r *record) entry {
	if r.inBase&s == 0 {
		return t.overGet(s, p)
	}
	e := entry{n: plan.Node{Type: typeOf[r.typ], SHA256: r.sha, Mode: r.mode, Size: r.size, MTimeNs: r.mtime}}
	switch s {
	case remote:
		e.n.Seq = r.remoteSeq
	case synced:
		e.n.Seq = r.syncedSeq
	case index:
		e.ino = r.ino
	}
	return e
}

func (t *Trees) overGet(s side, p string) entry {
	if s == index {
		e := t.overIndex[p]
		return entry{n: e.Node(), ino: e.Ino}
	}
	return entry{n: t.over[s.slot()][p]}
}

func (t *Trees) overPut(s side, p string, e entry) {
	if s == index {
		n := e.n
		t.overIndex[p] = IndexEntry{Type: n.Type, SHA256: n.SHA256, Target: n.Target, Mode: n.Mode, Size: n.Size, MTimeNs: n.MTimeNs, Ino: e.ino}
		return
	}
	t.over[s.slot()][p] = e.n
}

func (t *Trees) overDelete(s side, p string) {
	if s == index {
		delete(t.overIndex, p)
		return
	}
	delete(t.over[s.slot()], p)
}

// fits reports whether e can be the base of a record: a type with a code, no link
// target (links are few), and no Seq on a side that has none.
func fits(s side, e entry) bool {
	return typeCode(e.n.Type) != typeOther && e.n.Target == "" && (e.n.Seq == 0 || s == remote || s == synced)
}

// matches reports whether e is the record's content.
func (r *record) matches(e entry) bool {
	n := &e.n
	return typeCode(n.Type) == r.typ && n.Target == "" && n.SHA256 == r.sha && n.Size == r.size &&
		n.MTimeNs == r.mtime && n.Mode == r.mode
}

// base makes e the record's content.
func (r *record) base(e entry) {
	n := &e.n
	r.typ, r.sha, r.size, r.mtime, r.mode = typeCode(n.Type), n.SHA256, n.Size, n.MTimeNs, n.Mode
}

// join puts side s, holding e, into the record's base (which it matches).
func (r *record) join(s side, e entry) {
	r.inBase |= s
	switch s {
	case remote:
		r.remoteSeq = e.n.Seq
	case synced:
		r.syncedSeq = e.n.Seq
	case index:
		r.ino = e.ino
	}
}

func (t *Trees) set(s side, p string, e entry) {
	t.changes++
	i, ok := t.paths[p]
	if !ok {
		i = t.newRec()
		t.paths[p] = i
	}
	r := t.rec(i)
	switch {
	case r.has&s == 0:
		t.count[s.slot()]++
		r.has |= s
	case r.inBase&s != 0:
		r.inBase &^= s
	default:
		t.overDelete(s, p)
	}
	if r.inBase == 0 && fits(s, e) {
		r.base(e)
	}
	if fits(s, e) && r.matches(e) {
		r.join(s, e)
	} else {
		t.overPut(s, p, e)
	}
	t.settle(p, r)
}

func (t *Trees) delete(s side, p string) {
	i, ok := t.paths[p]
	if !ok {
		return
	}
	r := t.rec(i)
	if r.has&s == 0 {
		return
	}
	t.changes++
	t.count[s.slot()]--
	r.has &^= s
	if r.inBase&s != 0 {
		r.inBase &^= s
	} else {
		t.overDelete(s, p)
	}
	if r.has == 0 {
		*r = record{}
		delete(t.paths, p)
		t.free = append(t.free, i)
		return
	}
	t.settle(p, r)
}

// settle moves sides from the overflow into the base where they match it, after giving
// a record whose base no side holds any more the content of one that fits.
func (t *Trees) settle(p string, r *record) {
	out := r.has &^ r.inBase
	if out == 0 {
		return
	}
	for s := side(1); s <= index; s <<= 1 {
		if out&s == 0 {
			continue
		}
		e := t.overGet(s, p)
		if !fits(s, e) {
			continue
		}
		if r.inBase == 0 {
			r.base(e)
		}
		if r.matches(e) {
			t.overDelete(s, p)
			r.join(s, e)
		}
	}
}

func (t *Trees) all(s side) iter.Seq2[string, entry] {
	return func(yield func(string, entry) bool) {
		for p, i := range t.paths {
			r := t.rec(i)
			if r.has&s == 0 {
				continue
			}
			if !yield(p, t.at(s, p, r)) {
				return
			}
		}
	}
}

func (t *Trees) clear(s side) {
	for p, i := range t.paths {
		if t.rec(i).has&s != 0 {
			t.delete(s, p)
		}
	}
}

// Side is one of the Local, Remote and Synced trees. It is a plan.View.
type Side struct {
	t *Trees
	s side
}

// Get returns the node at path, if any.
func (v Side) Get(path string) (plan.Node, bool) {
	e, ok := v.t.get(v.s, path)
	return e.n, ok
}

// Set puts n at path.
func (v Side) Set(path string, n plan.Node) { v.t.set(v.s, path, entry{n: n}) }

// Delete removes path.
func (v Side) Delete(path string) { v.t.delete(v.s, path) }

// Len counts the paths present.
func (v Side) Len() int { return v.t.count[v.s.slot()] }

// All yields every path present and its node, in no particular order. The side may be
// changed meanwhile, as a map may while it is ranged over.
func (v Side) All() iter.Seq2[string, plan.Node] {
	return func(yield func(string, plan.Node) bool) {
		for p, e := range v.t.all(v.s) {
			if !yield(p, e.n) {
				return
			}
		}
	}
}

// Clear removes every path.
func (v Side) Clear() { v.t.clear(v.s) }

// IndexSide is the index cache.
type IndexSide struct{ t *Trees }

// Get returns the entry of path, if any.
func (v IndexSide) Get(path string) (IndexEntry, bool) {
	e, ok := v.t.get(index, path)
	if !ok {
		return IndexEntry{}, false
	}
	return indexEntry(e), true
}

func indexEntry(e entry) IndexEntry {
	n := &e.n
	return IndexEntry{Type: n.Type, SHA256: n.SHA256, Target: n.Target, Mode: n.Mode, Size: n.Size, MTimeNs: n.MTimeNs, Ino: e.ino}
}

// Set puts e at path.
func (v IndexSide) Set(path string, e IndexEntry) {
	v.t.set(index, path, entry{n: e.Node(), ino: e.Ino})
}

// Delete removes path.
func (v IndexSide) Delete(path string) { v.t.delete(index, path) }

// Len counts the paths present.
func (v IndexSide) Len() int { return v.t.count[index.slot()] }

// All yields every path present and its entry, in no particular order.
func (v IndexSide) All() iter.Seq2[string, IndexEntry] {
	return func(yield func(string, IndexEntry) bool) {
		for p, e := range v.t.all(index) {
			if !yield(p, indexEntry(e)) {
				return
			}
		}
	}
}
