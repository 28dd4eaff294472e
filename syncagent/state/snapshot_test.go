package state

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// randomTrees returns trees with every shape the tables can hold: paths in one, two or
// all three trees, equal and different hashes, empty hashes, symlink targets, an unknown
// type, extreme sizes, mtimes, seqs and inodes.
func randomTrees(r *rand.Rand, n int) (synced, remote plan.Tree, index map[string]trees.IndexEntry) {
	synced, remote, index = plan.Tree{}, plan.Tree{}, map[string]trees.IndexEntry{}
	types := []proto.EntryType{proto.TypeFile, proto.TypeDir, proto.TypeSymlink, "fifo"}
	pick := func(vs ...int64) int64 { return vs[r.IntN(len(vs))] }
	hashes := []plan.Hash{{}, hashOf("aa"), hashOf("bb"), hashOf(fmt.Sprint(r.Uint64()))}
	node := func() plan.Node {
		return plan.Node{Type: types[r.IntN(len(types))], SHA256: hashes[r.IntN(len(hashes))],
			Target: []string{"", "../x", "ü/ÿ"}[r.IntN(3)], Mode: uint32(pick(0, 0o644, 0o7777, math.MaxUint32)),
			Size: pick(0, 1, -1, math.MaxInt64, math.MinInt64, r.Int64()), MTimeNs: pick(0, -1, math.MinInt64, r.Int64()),
			Seq: pick(0, 1, math.MaxInt64, r.Int64N(1000))}
	}
	for i := range n {
		p := fmt.Sprintf("d%d/f%d ü", r.IntN(5), i)
		bits := 1 + r.IntN(7)
		if bits&1 != 0 {
			synced[p] = node()
		}
		if bits&2 != 0 {
			remote[p] = node()
		}
		if bits&4 != 0 {
			e := node()
			index[p] = trees.IndexEntry{Type: e.Type, SHA256: e.SHA256, Target: e.Target, Mode: e.Mode, Size: e.Size,
				MTimeNs: e.MTimeNs, Ino: []uint64{0, 1, math.MaxUint64, r.Uint64()}[r.IntN(4)]}
		}
	}
	return synced, remote, index
}

func TestSnapshotEncodingRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		s, rm, ix := randomTrees(r, round%50)
		gs, gr, gi, err := decodeMaps(encodeSnapshot(storeOf(s, rm, ix)))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !reflect.DeepEqual(gs, s) || !reflect.DeepEqual(gr, rm) || !reflect.DeepEqual(gi, ix) {
			t.Fatalf("round %d: decoded trees differ", round)
		}
	}
}

// A snapshot larger than the pieces it is written in (snapshotPiece) is the same bytes
// however it is cut, and round-trips; a failing write ends the encoding with its error.
func TestLargeSnapshotIsWrittenInPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	s, rm, ix := randomTrees(r, 4000)
	st := storeOf(s, rm, ix)
	data := encodeSnapshot(st)
	if len(data) < 3*snapshotPiece {
		t.Fatalf("the test's snapshot is %d bytes, want more than three pieces", len(data))
	}
	gs, gr, gi, err := decodeMaps(data)
	if err != nil || !reflect.DeepEqual(gs, s) || !reflect.DeepEqual(gr, rm) || !reflect.DeepEqual(gi, ix) {
		t.Fatalf("decoded trees differ (%v)", err)
	}
	var pieces [][]byte
	if err := encodeSnapshotTo(writerFunc(func(p []byte) (int, error) {
		pieces = append(pieces, append([]byte(nil), p...))
		return len(p), nil
	}), st); err != nil {
		t.Fatal(err)
	}
	if len(pieces) < 3 || !bytes.Equal(bytes.Join(pieces, nil), data) {
		t.Fatalf("written in %d pieces, %d bytes; want the %d bytes of encodeSnapshot in several", len(pieces), len(bytes.Join(pieces, nil)), len(data))
	}
	boom := errors.New("disk full")
	written := 0
	err = encodeSnapshotTo(writerFunc(func(p []byte) (int, error) {
		if written > snapshotPiece {
			return 0, boom
		}
		written += len(p)
		return len(p), nil
	}), st)
	if !errors.Is(err, boom) {
		t.Fatalf("a failing writer: %v, want %v", err, boom)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestSnapshotOfAnEarlierAgentIsRead: earlier agents spelled hashes in hex
// (hashLiteral); their snapshot still loads, and a bad hex hash drops it.
func TestSnapshotOfAnEarlierAgentIsRead(t *testing.T) {
	legacy := func(sha string) []byte {
		b := []byte(snapshotMagic)
		b = binary.AppendUvarint(b, 1) // synced
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, 1)
		b = append(b, 'f', inSynced, typeFile, hashLiteral)
		b = binary.AppendUvarint(b, uint64(len(sha)))
		b = append(b, sha...)
		b = binary.AppendUvarint(b, 0)     // target
		b = binary.AppendUvarint(b, 0o644) // mode
		b = binary.AppendVarint(b, 3)      // size
		b = binary.AppendVarint(b, 5)      // mtime
		b = binary.AppendVarint(b, 7)      // seq
		return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	}
	synced, _, _, err := decodeMaps(legacy(hexOf("x")))
	want := plan.Node{Type: proto.TypeFile, SHA256: hashOf("x"), Mode: 0o644, Size: 3, MTimeNs: 5, Seq: 7}
	if err != nil || synced["f"] != want {
		t.Fatalf("legacy snapshot: %v, %v; want %v", synced, err, want)
	}
	if _, _, _, err := decodeMaps(legacy(strings.ToUpper(hexOf("x")))); err == nil {
		t.Fatal("a legacy snapshot with an upper-case hash was read")
	}
}

// A damaged snapshot is refused (never a panic, never trees that differ): every
// truncation and every single-byte change.
func TestSnapshotRefusesDamage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s, rm, ix := randomTrees(r, 20)
	data := encodeSnapshot(storeOf(s, rm, ix))
	for n := range len(data) {
		if _, _, _, err := decodeMaps(append([]byte(nil), data[:n]...)); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(data))
		}
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 1 << r.IntN(8)
		if _, _, _, err := decodeMaps(bad); err == nil {
			t.Fatalf("byte %d changed: accepted", i)
		}
	}
}

func fillRandom(t *testing.T, db *DB, s, rm plan.Tree, ix map[string]trees.IndexEntry) {
	t.Helper()
	err := db.Update(context.Background(), func(tx *Tx) error {
		for p, n := range s {
			if err := tx.PutSynced(p, n); err != nil {
				return err
			}
		}
		for p, n := range rm {
			e := proto.Entry{Path: p, Type: n.Type, SHA256: n.SHA256.String(), Target: n.Target, Mode: n.Mode, Size: n.Size,
				MTimeNs: n.MTimeNs, Seq: n.Seq, Blocks: []proto.Block{{Hash: hexOf("aa"), Size: 1}}}
			if err := tx.PutRemote(e); err != nil {
				return err
			}
		}
		for p, e := range ix {
			if err := tx.PutIndex(p, e, nil, chunk.Sums{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkTrees asserts that Trees (snapshot or rows) gives exactly what the rows hold.
func checkTrees(t *testing.T, db *DB, what string) {
	t.Helper()
	rows, err := loadRows(db.db)
	if err != nil {
		t.Fatal(err)
	}
	ws, wr, wi := mapsOf(rows)
	gs, gr, gi, err := treeMaps(db)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gs, ws) || !reflect.DeepEqual(gr, wr) || !reflect.DeepEqual(gi, wi) {
		t.Fatalf("%s: Trees differs from the rows", what)
	}
}

func TestSnapshotIsDroppedByEveryTreeWrite(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(5, 6))
	s, rm, ix := randomTrees(r, 40)
	fillRandom(t, db, s, rm, ix)
	ctx := context.Background()
	writes := []struct {
		name string
		fn   func(tx *Tx) error
	}{
		{"PutSynced", func(tx *Tx) error { return tx.PutSynced("new", plan.Node{Type: proto.TypeDir}) }},
		{"DeleteSynced", func(tx *Tx) error { return tx.DeleteSynced("new") }},
		{"PutRemote", func(tx *Tx) error { return tx.PutRemote(proto.Entry{Path: "new", Type: proto.TypeDir, Seq: 3}) }},
		{"PutRemote again", func(tx *Tx) error {
			return tx.PutRemote(proto.Entry{Path: "new", Type: proto.TypeFile, SHA256: hexOf("cc"), Seq: 4, BlocksOmitted: true})
		}},
		{"SetRemoteBlocks", func(tx *Tx) error { return tx.SetRemoteBlocks("new", 4, []proto.Block{{Hash: hexOf("cc"), Size: 2}}) }},
		{"DeleteRemote", func(tx *Tx) error { return tx.DeleteRemote("new") }},
		{"PutIndex", func(tx *Tx) error {
			return tx.PutIndex("new", trees.IndexEntry{Type: proto.TypeFile, SHA256: hashOf("cc"), Size: 2}, []proto.Block{{Hash: hexOf("cc"), Size: 2}}, chunk.Sums{})
		}},
		{"DeleteIndex", func(tx *Tx) error { return tx.DeleteIndex("new") }},
		{"raw SQL of another build", func(tx *Tx) error {
			_, err := tx.tx.Exec(`UPDATE local SET mtime = mtime + 1`)
			return err
		}},
		{"ResetTrees", func(tx *Tx) error { return tx.ResetTrees() }},
	}
	for _, w := range writes {
		wrote, err := db.SaveSnapshot()
		if err != nil || !wrote {
			t.Fatalf("before %s: SaveSnapshot = %v, %v", w.name, wrote, err)
		}
		if wrote, err := db.SaveSnapshot(); err != nil || wrote {
			t.Fatalf("SaveSnapshot over a valid one = %v, %v; want nothing written", wrote, err)
		}
		checkTrees(t, db, "snapshot before "+w.name)
		// The cursor is not part of the trees: it leaves the snapshot in place.
		if err := db.Update(ctx, func(tx *Tx) error { return tx.SetCursor("f", 9) }); err != nil {
			t.Fatal(err)
		}
		if has, _ := db.HasSnapshot(); !has {
			t.Fatalf("SetCursor dropped the snapshot")
		}
		// A failed transaction keeps it.
		_ = db.Update(ctx, func(tx *Tx) error {
			if err := w.fn(tx); err != nil {
				return err
			}
			return context.Canceled
		})
		if has, _ := db.HasSnapshot(); !has {
			t.Fatalf("%s rolled back: the snapshot is gone", w.name)
		}
		if err := db.Update(ctx, w.fn); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if has, _ := db.HasSnapshot(); has {
			t.Fatalf("%s kept the snapshot", w.name)
		}
		checkTrees(t, db, "rows after "+w.name)
	}
}

func TestTreesFallBackToRowsOnADamagedSnapshot(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	s, rm, ix := randomTrees(r, 30)
	fillRandom(t, db, s, rm, ix)
	if _, err := db.SaveSnapshot(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Reopened (the schema and triggers are created again, IF NOT EXISTS), the snapshot
	// serves the trees.
	if db, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok := db.loadSnapshot(); !ok {
		t.Fatal("no snapshot after reopening")
	}
	checkTrees(t, db, "reopened")
	file := filepath.Join(dir, SnapshotFileName)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var goodRow []byte
	if err := db.db.QueryRow(`SELECT data FROM snapshot`).Scan(&goodRow); err != nil {
		t.Fatal(err)
	}
	refused := func(what string) {
		t.Helper()
		if _, ok := db.loadSnapshot(); ok {
			t.Fatalf("%s: the snapshot was used", what)
		}
		checkTrees(t, db, what)
	}
	setRow := func(data []byte) {
		t.Helper()
		if _, err := db.db.Exec(`UPDATE snapshot SET data = ?`, data); err != nil {
			t.Fatal(err)
		}
	}
	writeFile := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(good[:len(good)-1])
	refused("truncated file")
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 4
	writeFile(bad)
	refused("changed byte in the file")
	writeFile(good)
	other := append([]byte(nil), goodRow...)
	other[len(other)-1] ^= 1
	setRow(other)
	refused("the file of another snapshot")
	setRow(goodRow[:len(goodRow)-1])
	refused("truncated reference")
	setRow(goodRow)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	refused("no file")
	// A row holding the whole snapshot (the format before the file) is still read, and
	// refused when damaged.
	setRow(good[snapshotIDLen:])
	if _, ok := db.loadSnapshot(); !ok {
		t.Fatal("a snapshot held in its row was not used")
	}
	checkTrees(t, db, "snapshot in its row")
	setRow(good[snapshotIDLen : len(good)-10])
	refused("truncated row")
}

// TestSnapshotFileIsOrphanedByATreeWrite checks that a tree write leaves the file of
// the dropped snapshot unused even though it is still on disk and intact, and that the
// next SaveSnapshot replaces it.
func TestSnapshotFileIsOrphanedByATreeWrite(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(9, 10))
	s, rm, ix := randomTrees(r, 30)
	fillRandom(t, db, s, rm, ix)
	if _, err := db.SaveSnapshot(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, SnapshotFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(context.Background(), func(tx *Tx) error { return tx.DeleteSynced(firstKey(s)) }); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.loadSnapshot(); ok {
		t.Fatal("the snapshot outlived a tree write")
	}
	checkTrees(t, db, "after the write")
	if wrote, err := db.SaveSnapshot(); err != nil || !wrote {
		t.Fatalf("SaveSnapshot = %v, %v", wrote, err)
	}
	after, err := os.ReadFile(filepath.Join(dir, SnapshotFileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, after) || bytes.Equal(before[:snapshotIDLen], after[:snapshotIDLen]) {
		t.Fatal("the new snapshot's file kept the old content or id")
	}
	checkTrees(t, db, "new snapshot")
	if names, _ := filepath.Glob(filepath.Join(dir, SnapshotFileName+".tmp-*")); len(names) != 0 {
		t.Fatalf("temp files left: %v", names)
	}
}

func firstKey(t plan.Tree) string {
	for k := range t {
		return k
	}
	return ""
}

// TestSnapshotVerdictIsQuiet checks the decoder's verdict against plan.Quiet over the
// decoded trees (the index cache's nodes as the Local tree), on trees that agree
// everywhere but for a random difference, or a file where a path's parent dir was.
func TestSnapshotVerdictIsQuiet(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	quiets := 0
	for round := range 3000 {
		s, rm, ix := randomTrees(r, round%40)
		if round%4 != 0 { // agreeing trees, then maybe one difference
			rm, ix = plan.Tree{}, map[string]trees.IndexEntry{}
			for p, n := range s {
				if r.IntN(3) == 0 {
					n.Type = proto.TypeDir
				}
				s[p] = n
				rm[p] = n
				ix[p] = trees.IndexEntry{Type: n.Type, SHA256: n.SHA256, Target: n.Target, Mode: n.Mode,
					Size: r.Int64(), MTimeNs: r.Int64(), Ino: r.Uint64()}
			}
			for _, d := range []string{"d0", "d1", "d2"} {
				n := plan.Node{Type: proto.TypeDir, Mode: 0o755, Seq: 4}
				if r.IntN(8) == 0 {
					n = plan.Node{Type: proto.TypeFile, SHA256: hashOf("ff"), Mode: 0o644, Seq: 5}
				}
				if r.IntN(2) == 0 {
					s[d], rm[d] = n, n
					ix[d] = trees.IndexEntry{Type: n.Type, SHA256: n.SHA256, Mode: n.Mode}
				}
			}
			if p := firstKey(s); p != "" {
				switch r.IntN(8) {
				case 0:
					delete(rm, p)
				case 1:
					delete(ix, p)
				case 2:
					n := rm[p]
					n.Seq++
					rm[p] = n
				case 3:
					e := ix[p]
					e.Mode ^= 0o100
					ix[p] = e
				case 4:
					n := rm[p]
					n.SHA256[0]++
					rm[p] = n
				}
			}
		}
		gs, gr, gi, quiet, err := decodeMapsQuiet(encodeSnapshot(storeOf(s, rm, ix)))
		if err != nil {
			t.Fatal(err)
		}
		local := plan.Tree{}
		for p, e := range gi {
			local[p] = e.Node()
		}
		if want := plan.Quiet(local, gr, gs); quiet != want {
			t.Fatalf("round %d: verdict %v, plan.Quiet %v", round, quiet, want)
		}
		if quiet {
			quiets++
		}
	}
	if quiets < 500 || quiets > 2500 {
		t.Fatalf("%d of 3000 rounds quiet: the cases do not cover both answers well", quiets)
	}
}

// storeOf puts three maps into a store.
func storeOf(synced, remote plan.Tree, index map[string]trees.IndexEntry) *trees.Trees {
	t := trees.New(len(synced))
	for p, n := range synced {
		t.Synced.Set(p, n)
	}
	for p, n := range remote {
		t.Remote.Set(p, n)
	}
	for p, e := range index {
		t.Index.Set(p, e)
	}
	return t
}

// mapsOf takes a store's synced and remote trees and index out as maps.
func mapsOf(t *trees.Trees) (synced, remote plan.Tree, index map[string]trees.IndexEntry) {
	return maps.Collect(t.Synced.All()), maps.Collect(t.Remote.All()), maps.Collect(t.Index.All())
}

func decodeMaps(data []byte) (synced, remote plan.Tree, index map[string]trees.IndexEntry, err error) {
	synced, remote, index, _, err = decodeMapsQuiet(data)
	return synced, remote, index, err
}

func decodeMapsQuiet(data []byte) (synced, remote plan.Tree, index map[string]trees.IndexEntry, quiet bool, err error) {
	t, quiet, err := decodeSnapshotQuiet(data)
	if err != nil {
		return nil, nil, nil, false, err
	}
	synced, remote, index = mapsOf(t)
	return synced, remote, index, quiet, nil
}

func treeMaps(db *DB) (synced, remote plan.Tree, index map[string]trees.IndexEntry, err error) {
	t, err := db.Trees()
	if err != nil {
		return nil, nil, nil, err
	}
	synced, remote, index = mapsOf(t)
	return synced, remote, index, nil
}

// The snapshot row and its triggers come and go together: SaveSnapshot makes both, the
// agent's next tree write drops both (its own writes then run no trigger per row), a
// meta write keeps both, and whatever state a stop leaves (after SaveSnapshot, or a
// crash after a tree write), a writer that knows nothing of this (an older agent, here
// plain SQL) never leaves a snapshot that differs from the rows.
func TestSnapshotTriggersComeAndGoWithTheRow(t *testing.T) {
	triggers := func(t *testing.T, db *sql.DB) int {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'snapshot_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctx := context.Background()
	for _, stop := range []string{"after SaveSnapshot", "after a tree write"} {
		t.Run(stop, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(11, 12))
			s, rm, ix := randomTrees(r, 30)
			fillRandom(t, db, s, rm, ix)
			if n := triggers(t, db.db); n != 0 {
				t.Errorf("%d snapshot triggers after a tree write, want 0", n)
			}
			if wrote, err := db.SaveSnapshot(); err != nil || !wrote {
				t.Fatalf("SaveSnapshot = %v, %v", wrote, err)
			}
			if n := triggers(t, db.db); n != 9 {
				t.Errorf("%d snapshot triggers with a snapshot, want 9", n)
			}
			if err := db.Update(ctx, func(tx *Tx) error { return tx.SetCursor("f", 3) }); err != nil {
				t.Fatal(err)
			}
			if has, _ := db.HasSnapshot(); !has || triggers(t, db.db) != 9 {
				t.Fatalf("a meta write dropped the snapshot (%v) or its triggers", has)
			}
			if stop == "after a tree write" {
				if err := db.Update(ctx, func(tx *Tx) error { return tx.PutSynced("mine", plan.Node{Type: proto.TypeDir}) }); err != nil {
					t.Fatal(err)
				}
				if has, _ := db.HasSnapshot(); has || triggers(t, db.db) != 0 {
					t.Fatalf("a tree write kept the snapshot (%v) or its triggers", has)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// Another writer of the file, without this package's code.
			raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(`INSERT INTO synced (path, type, sha256, target, mode, size, mtime, seq) VALUES ('theirs', 'dir', '', '', 0, 0, 0, 0)`); err != nil {
				t.Fatal(err)
			}
			if err := raw.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if has, _ := db.HasSnapshot(); has {
				t.Error("the snapshot outlived another writer's tree write")
			}
			if n := triggers(t, db.db); n != 9 {
				t.Errorf("%d snapshot triggers after Open, want 9", n)
			}
			got, err := db.Trees()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got.Synced.Get("theirs"); !ok {
				t.Error("the other writer's row is not in the trees")
			}
			checkTrees(t, db, "after the other writer")
		})
	}
}
