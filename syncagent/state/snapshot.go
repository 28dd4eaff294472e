package state

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/syncedfolder/synced-folder/internal/pagecache"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// The snapshot is the three trees (without block lists) in one compact blob, so that an
// agent starts by reading one file instead of decoding 300,000 rows of a 100,000-file
// folder. It is a cache of the tables, never the truth:
//
//   - it is written (SaveSnapshot) from the tables themselves, read in the same
//     transaction that stores it, never from the agent's memory;
//   - the blob is a file beside the database (SnapshotFileName), and the row of the
//     snapshot table holds a reference to it: a random id that the file starts with. The
//     file is written (and synced) under a temporary name and renamed before the row is
//     committed; a file whose id is not the row's is not used;
//   - while the row is present, triggers on the tables delete it in the transaction of
//     any insert, update or delete of a row of synced, remote or local, whoever writes
//     (an older agent binary too, as the triggers live in the database file), which
//     orphans the file. The row and the triggers come and go together: SaveSnapshot
//     writes the row and creates the triggers in one transaction, and this agent's first
//     transaction that writes those tables after it deletes the row and drops the
//     triggers (disarmSnapshotSQL), so that its own writes do not run a trigger for every
//     row (a fifth of what it costs to record a file). A crash in between leaves neither;
//     Open creates the triggers again;
//   - Trees uses it only when the row is present, the file holds the row's id, has this
//     format's magic and its checksum matches; otherwise it reads the rows, as before.
//
// The file spares reading 14.5 MB (at 100,000 files) through SQLite's overflow pages and
// database/sql's copies. A row that holds a whole blob (the format before the file) is
// still read.
var snapshotSchema = `
CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL);
` + snapshotTriggers

// snapshotTriggers drop the snapshot row when a row of the trees' tables changes, and
// disarmSnapshotSQL deletes the row and drops them (see above): both made from one list.
var snapshotTriggers, disarmSnapshotSQL = snapshotTriggerSQL()

func snapshotTriggerSQL() (create, disarm string) {
	var c, d strings.Builder
	d.WriteString("DELETE FROM snapshot;\n")
	for _, table := range []string{"synced", "remote", "local"} {
		for _, op := range []struct{ suffix, event string }{{"ins", "INSERT"}, {"upd", "UPDATE"}, {"del", "DELETE"}} {
			name := "snapshot_" + table + "_" + op.suffix
			fmt.Fprintf(&c, "CREATE TRIGGER IF NOT EXISTS %s AFTER %s ON %s BEGIN DELETE FROM snapshot; END;\n", name, op.event, table)
			fmt.Fprintf(&d, "DROP TRIGGER IF EXISTS %s;\n", name)
		}
	}
	return c.String(), d.String()
}

// snapshotMagic starts a snapshot of this format; another format is ignored (rows).
const snapshotMagic = "sfsnap1\n"

// snapshotRefMagic starts a snapshot row that refers to the file: the magic, then the
// file's id.
const snapshotRefMagic = "sfsnapref1\n"

// SnapshotFileName is the snapshot file's name in the state dir: the id of the row
// that refers to it, then a snapshot (snapshotMagic …).
const SnapshotFileName = "trees.snap"

// snapshotIDLen is the length of a snapshot file's random id.
const snapshotIDLen = 16

// Presence bits of a path record.
const (
	inSynced = 1 << iota
	inRemote
	inIndex
)

// Hash references of a node: none, the previous hash of the same path, or the hash:
// written as its 32 bytes (hashBytes); snapshots of earlier agents spell it in hex
// (hashLiteral), which is still read.
const (
	hashEmpty = iota
	hashSame
	hashLiteral
	hashBytes
)

// Type codes; typeOther is followed by the type string.
const (
	typeFile = iota
	typeDir
	typeSymlink
	typeOther
)

// SaveSnapshot stores a snapshot of the trees, read from the tables in the same
// transaction, unless a valid one is already stored. It reports whether it wrote one.
func (d *DB) SaveSnapshot() (bool, error) {
	tx, err := d.db.Begin()
	if err != nil {
		return false, fmt.Errorf("begin snapshot: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM snapshot`).Scan(&n); err != nil {
		return false, fmt.Errorf("snapshot: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	t, err := loadRows(tx)
	if err != nil {
		return false, err
	}
	id := make([]byte, snapshotIDLen)
	if _, err := rand.Read(id); err != nil {
		return false, fmt.Errorf("snapshot id: %w", err)
	}
	err = writeFileAtomic(filepath.Join(d.dir, SnapshotFileName), func(w io.Writer) error {
		if _, err := w.Write(id); err != nil {
			return err
		}
		return encodeSnapshotTo(w, t)
	})
	if err != nil {
		return false, err
	}
	if _, err := tx.Exec(`INSERT INTO snapshot (id, data) VALUES (1, ?)`, append([]byte(snapshotRefMagic), id...)); err != nil {
		return false, fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := tx.Exec(snapshotTriggers); err != nil {
		return false, fmt.Errorf("write snapshot: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit snapshot: %w", err)
	}
	d.armed.Store(true)
	return true, nil
}

// writeFileAtomic replaces name with a file holding what write writes, written to a
// temp file in name's dir first (see pagecache.ReplaceWithFunc).
func writeFileAtomic(name string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write snapshot file: %w", err)
	}
	if err := pagecache.ReplaceWithFunc(f, name, write); err != nil {
		return fmt.Errorf("write snapshot file: %w", err)
	}
	return nil
}

// HasSnapshot reports whether a snapshot is stored (valid or not).
func (d *DB) HasSnapshot() (bool, error) {
	var n int
	if err := d.db.QueryRow(`SELECT COUNT(*) FROM snapshot`).Scan(&n); err != nil {
		return false, fmt.Errorf("snapshot: %w", err)
	}
	return n > 0, nil
}

// loadSnapshot returns the trees of the stored snapshot; ok is false when there is none
// or it cannot be used.
func (d *DB) loadSnapshot() (t *trees.Trees, ok bool) {
	t, _, ok = d.loadSnapshotQuiet()
	return t, ok
}

// loadSnapshotQuiet is loadSnapshot that also reports whether the trees are quiet (see
// decodeSnapshotQuiet).
func (d *DB) loadSnapshotQuiet() (t *trees.Trees, quiet, ok bool) {
	var row []byte
	if err := d.db.QueryRow(`SELECT data FROM snapshot WHERE id = 1`).Scan(&row); err != nil {
		return nil, false, false
	}
	ref, isRef := bytes.CutPrefix(row, []byte(snapshotRefMagic))
	if !isRef {
		t, quiet, err := decodeSnapshotQuiet(row)
		return t, quiet, err == nil
	}
	// The file is decoded as it is read: the trees' strings are their own, not parts of
	// a 14.5 MB buffer (at 100,000 files) held as long as the agent runs.
	f, err := os.Open(filepath.Join(d.dir, SnapshotFileName))
	if err != nil {
		return nil, false, false
	}
	defer f.Close()
	fi, err := f.Stat()
	id := make([]byte, snapshotIDLen)
	if err != nil || len(ref) != snapshotIDLen || fi.Size() < snapshotIDLen {
		return nil, false, false
	}
	if _, err := io.ReadFull(f, id); err != nil || !bytes.Equal(id, ref) {
		return nil, false, false
	}
	t, quiet, err = decodeSnapshotFrom(f, fi.Size()-snapshotIDLen)
	if err != nil {
		return nil, false, false
	}
	return t, quiet, true
}

func typeCode(t proto.EntryType) byte {
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

// encodeSnapshot is encodeSnapshotTo's bytes.
func encodeSnapshot(t *trees.Trees) []byte {
	var buf bytes.Buffer
	_ = encodeSnapshotTo(&buf, t) // a bytes.Buffer takes every write
	return buf.Bytes()
}

// snapshotPiece is how many bytes encodeSnapshotTo gathers before it writes them: the
// snapshot of a 100,000-file folder (≈ 10 MB) was made whole in memory, then copied
// behind the file's id, which raised an agent's memory by 11 MiB as it stopped.
const snapshotPiece = 64 << 10

// encodeSnapshotTo writes to w, a piece at a time: magic, the three counts, then one
// record per distinct path in path order (path, presence bits, then the synced, remote
// and index nodes present), and a CRC-32 (Castagnoli) of everything before it.
func encodeSnapshotTo(w io.Writer, t *trees.Trees) error {
	synced, remote, index := t.Synced, t.Remote, t.Index
	paths := make([]string, 0, t.Paths())
	for p := range t.All() {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	sum := crc32.New(castagnoli)
	b := make([]byte, 0, snapshotPiece+512)
	flush := func() error {
		sum.Write(b) //nolint:errcheck // a hash.Hash takes every write
		_, err := w.Write(b)
		b = b[:0]
		return err
	}
	b = append(b, snapshotMagic...)
	b = binary.AppendUvarint(b, uint64(synced.Len()))
	b = binary.AppendUvarint(b, uint64(remote.Len()))
	b = binary.AppendUvarint(b, uint64(index.Len()))
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, p := range paths {
		s, sok := synced.Get(p)
		r, rok := remote.Get(p)
		e, eok := index.Get(p)
		var bits byte
		if sok {
			bits |= inSynced
		}
		if rok {
			bits |= inRemote
		}
		if eok {
			bits |= inIndex
		}
		if bits == 0 {
			continue // on the Local tree only
		}
		str(p)
		b = append(b, bits)
		var prev plan.Hash
		node := func(typ proto.EntryType, sha plan.Hash, target string, mode uint32, size, mtime int64) {
			c := typeCode(typ)
			b = append(b, c)
			if c == typeOther {
				str(string(typ))
			}
			switch {
			case sha.IsZero():
				b = append(b, hashEmpty)
			case sha == prev:
				b = append(b, hashSame)
			default:
				b = append(b, hashBytes)
				b = append(b, sha[:]...)
				prev = sha
			}
			str(target)
			b = binary.AppendUvarint(b, uint64(mode))
			b = binary.AppendVarint(b, size)
			b = binary.AppendVarint(b, mtime)
		}
		if sok {
			node(s.Type, s.SHA256, s.Target, s.Mode, s.Size, s.MTimeNs)
			b = binary.AppendVarint(b, s.Seq)
		}
		if rok {
			node(r.Type, r.SHA256, r.Target, r.Mode, r.Size, r.MTimeNs)
			b = binary.AppendVarint(b, r.Seq)
		}
		if eok {
			node(e.Type, e.SHA256, e.Target, e.Mode, e.Size, e.MTimeNs)
			b = binary.AppendUvarint(b, e.Ino)
		}
		if len(b) >= snapshotPiece {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.LittleEndian.AppendUint32(b, sum.Sum32()))
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadSnapshot = errors.New("malformed snapshot")

// decodeSnapshotQuiet decodes encodeSnapshot's data (see decodeSnapshotFrom).
func decodeSnapshotQuiet(data []byte) (t *trees.Trees, quiet bool, err error) {
	return decodeSnapshotFrom(bytes.NewReader(data), int64(len(data)))
}

// decodeSnapshotFrom decodes the size bytes of encodeSnapshot's data that r holds. It
// also reports whether the trees, with the index cache's nodes as the Local tree, are
// quiet (plan.Quiet): checked record by record as they are decoded, each path's three
// nodes side by side, without a lookup per path (the records come in path order, so a
// path's ancestors are decoded before it and one lookup per parent dir checks them).
// The checksum is checked at the end: trees decoded from damaged data are dropped.
func decodeSnapshotFrom(r io.Reader, size int64) (t *trees.Trees, quiet bool, err error) {
	if size < int64(len(snapshotMagic))+4 {
		return nil, false, errBadSnapshot
	}
	sum := crc32.New(castagnoli)
	d := snapDecoder{r: bufio.NewReaderSize(io.TeeReader(io.LimitReader(r, size-4), sum), 64<<10), left: size - 4}
	if magic := d.bytes(len(snapshotMagic)); d.bad || string(magic) != snapshotMagic {
		return nil, false, errBadSnapshot
	}
	ns, nr, ni := d.count(), d.count(), d.count()
	if d.bad {
		return nil, false, errBadSnapshot
	}
	t = trees.New(max(ns, nr, ni))
	synced, remote, index := t.Synced, t.Remote, t.Index
	quiet = true
	lastParent := "" // the parent dir whose ancestors were checked last ("" : none yet)
	for d.left > 0 && !d.bad {
		p := d.str()
		bits := d.byte()
		var prev plan.Hash
		node := func() (n plan.Node) {
			switch d.byte() {
			case typeFile:
				n.Type = proto.TypeFile
			case typeDir:
				n.Type = proto.TypeDir
			case typeSymlink:
				n.Type = proto.TypeSymlink
			case typeOther:
				n.Type = proto.EntryType(d.str())
			default:
				d.bad = true
			}
			switch d.byte() {
			case hashEmpty:
			case hashSame:
				n.SHA256 = prev
			case hashLiteral:
				h, err := plan.ParseHash(d.str())
				n.SHA256, d.bad = h, d.bad || err != nil
			case hashBytes:
				d.read(n.SHA256[:])
			default:
				d.bad = true
			}
			if !n.SHA256.IsZero() {
				prev = n.SHA256
			}
			n.Target = d.str()
			mode := d.uvarint()
			if mode > math.MaxUint32 {
				d.bad = true
			}
			n.Mode, n.Size, n.MTimeNs = uint32(mode), d.varint(), d.varint()
			return n
		}
		if bits&^(inSynced|inRemote|inIndex) != 0 || bits == 0 {
			d.bad = true
		}
		var sn, rn, ln plan.Node
		if bits&inSynced != 0 {
			sn = node()
			sn.Seq = d.varint()
			synced.Set(p, sn)
		}
		if bits&inRemote != 0 {
			rn = node()
			rn.Seq = d.varint()
			remote.Set(p, rn)
		}
		if bits&inIndex != 0 {
			ln = node()
			index.Set(p, trees.IndexEntry{Type: ln.Type, SHA256: ln.SHA256, Target: ln.Target, Mode: ln.Mode,
				Size: ln.Size, MTimeNs: ln.MTimeNs, Ino: d.uvarint()})
		}
		if quiet {
			quiet = bits == inSynced|inRemote|inIndex && rn.Seq == sn.Seq && plan.Same(&ln, &sn) && plan.Same(&rn, &sn)
			if i := strings.LastIndexByte(p, '/'); quiet && i >= 0 && p[:i] != lastParent {
				lastParent = p[:i]
				quiet = nearestIsDir(remote, lastParent)
			}
		}
	}
	if d.bad || synced.Len() != ns || remote.Len() != nr || index.Len() != ni {
		return nil, false, errBadSnapshot
	}
	var stored [4]byte
	if _, err := io.ReadFull(r, stored[:]); err != nil || binary.LittleEndian.Uint32(stored[:]) != sum.Sum32() {
		return nil, false, errBadSnapshot
	}
	return t, quiet, nil
}

// nearestIsDir reports whether the nearest of dir and its ancestors that t holds, if
// any, is a dir.
func nearestIsDir(t plan.View, dir string) bool {
	for {
		if n, ok := t.Get(dir); ok {
			return n.Type == proto.TypeDir
		}
		i := strings.LastIndexByte(dir, '/')
		if i < 0 {
			return true
		}
		dir = dir[:i]
	}
}

// snapDecoder reads a snapshot of left bytes; a read past the end or a failed read sets
// bad and returns zero values.
type snapDecoder struct {
	r    *bufio.Reader
	left int64
	bad  bool
}

func (d *snapDecoder) byte() byte {
	if d.left <= 0 {
		d.bad = true
		return 0
	}
	c, err := d.r.ReadByte()
	if err != nil {
		d.bad = true
		return 0
	}
	d.left--
	return c
}

// bytes reads n bytes into a new slice.
func (d *snapDecoder) bytes(n int) []byte {
	if d.bad || int64(n) > d.left {
		d.bad = true
		return nil
	}
	b := make([]byte, n)
	d.read(b)
	if d.bad {
		return nil
	}
	return b
}

// read fills b.
func (d *snapDecoder) read(b []byte) {
	if d.bad || int64(len(b)) > d.left {
		d.bad = true
		return
	}
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.bad = true
		return
	}
	d.left -= int64(len(b))
}

func (d *snapDecoder) uvarint() uint64 {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c := d.byte()
		if d.bad {
			return 0
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x
		}
	}
	d.bad = true
	return 0
}

func (d *snapDecoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (d *snapDecoder) count() int {
	n := d.uvarint()
	// Every entry takes at least 8 bytes (a node's type, hash, target, mode, size, mtime,
	// seq or inode): a damaged count must not size the trees before the checksum tells.
	if n > uint64(d.left)/8 {
		d.bad = true
		return 0
	}
	return int(n)
}

// str reads a string of its own (one allocation; the empty string none).
func (d *snapDecoder) str() string {
	n := d.uvarint()
	if d.bad || n > uint64(d.left) {
		d.bad = true
		return ""
	}
	if n == 0 {
		return ""
	}
	b := d.bytes(int(n))
	if d.bad {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// queryer is a *sql.DB or a *sql.Tx.
type queryer interface {
	Query(query string, args ...any) (*sql.Rows, error)
	QueryRow(query string, args ...any) *sql.Row
}
