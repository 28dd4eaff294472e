package blobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/syncedfolder/synced-folder/internal/directio"
	"github.com/syncedfolder/synced-folder/internal/pagecache"
)

// Blocks of up to maxPackedBlock go into append-only pack files instead of one file
// each: creating, syncing and renaming a file per 4 KiB block was 45 % of the small-file
// commit's CPU. A PutMany batch is one write and one fsync; a streamed Put one write,
// synced with the other blocks of its commit (putstream.go).
//
// Layout: DIR/packs/<id>.pack, id 16 hex digits, increasing. A pack is a sequence of
// self-describing records:
//
//	magic "SFB1" | data length (uint32 LE) | SHA-256 (32 bytes) | data | CRC-32C (uint32 LE)
//
// where the CRC covers everything before it. There is no index file: Open rebuilds the
// in-memory index by scanning every pack and keeps only records whose CRC is right, so a
// torn write at the end of a pack (a crash in the middle of an append) is ignored, and a
// damaged record in the middle is skipped by searching for the next record. Appends only
// ever go to a pack created by the running process, after the last record Open found.
//
// GC does not rewrite a pack for every dead block: it lists the offsets of dead records
// in DIR/packs/<id>.dead (written atomically), and rewrites (compacts) a pack once most of
// its bytes are dead, by copying its live records into the current pack.
const (
	packDirName    = "packs"
	packExt        = ".pack"
	deadExt        = ".dead"
	packMagic      = "SFB1"
	recHeaderSize  = 4 + 4 + sha256.Size
	recTrailerSize = 4
	// maxPackedBlock is the largest block PutMany and Put pack (the chunker's largest);
	// larger ones get their own file, where one more file costs little next to the data.
	maxPackedBlock = 1 << 20
)

// packTargetSize is the size after which appends start a new pack (and the full one
// is sealed), so that compaction rewrites bounded files. A variable for tests.
var packTargetSize int64 = 64 << 20

// ErrCorrupt means a stored block no longer has the content its hash names (a damaged
// disk or a file changed behind the store's back). The block must be uploaded again.
var ErrCorrupt = errors.New("stored block is corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pack is one pack file. size, live and dead change under Store.pmu (written) and
// Store.wmu (appends), see Store.
type pack struct {
	id   uint64
	path string
	f    *os.File
	// direct is a second handle on the file, for direct I/O (packdirect.go); nil without
	// WithDirectIO, when the system refuses it, or when the pack was not created by this
	// process.
	direct *os.File
	// size is where the next record goes: the end of the last valid record for a pack
	// this process appends to, the file size otherwise.
	size int64
	// synced is how much of the pack is known durable (fsynced by this process); the
	// records Put appends without an fsync lie beyond it until Sync.
	synced int64
	// entryMu guards entrySynced, which says the pack's directory entry is known
	// durable (fsyncPack).
	entryMu     sync.Mutex
	entrySynced bool
	// syncErr, guarded by entryMu, is the pack's first failed fsync. The kernel reports
	// a failed writeback once and may then count the pages clean, so a later fsync of
	// the same file can succeed without the bytes lost: every later fsync of the pack
	// fails with it, nothing more is appended to it, and the blocks not known durable
	// are dropped from the index (forgetUnsynced) to be uploaded again.
	syncErr error
	// recs lists every record appended to the pack by this process, from its first
	// (for the .idx written when it is sealed); nil for a pack found at Open.
	recs []idxEntry
	// live is the bytes of the records the index points to.
	live int64
	// dead holds the offsets of valid records that the index does not point to (GC'd or
	// duplicates); deadDirty says the .dead file does not list them all yet.
	dead      map[int64]struct{}
	deadDirty bool
}

// packed locates one block in a pack.
type packed struct {
	pack *pack
	off  int64 // of the record
	size int64 // of the data
	// lastUse is when the block was written or last confirmed present (unix ns); GC's
	// grace period counts from it. It is not persisted: Open sets it to the open time,
	// so a restart only delays collection by one grace period.
	lastUse atomic.Int64
}

func recordSize(dataSize int64) int64 { return recHeaderSize + dataSize + recTrailerSize }

func (p *packed) recordSize() int64 { return recordSize(p.size) }

// appendRecord appends the record of a block to buf.
func appendRecord(buf []byte, sum [sha256.Size]byte, data []byte) []byte {
	start := len(buf)
	buf = appendRecordHead(buf, sum, len(data))
	buf = append(buf, data...)
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// appendRecordHead appends the header of a record of n bytes of data to buf.
func appendRecordHead(buf []byte, sum [sha256.Size]byte, n int) []byte {
	buf = append(buf, packMagic...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
	return append(buf, sum[:]...)
}

// parseRecord checks the record at the start of b and returns its hash and data length.
// ok is false when b does not start with a complete record whose CRC is right.
func parseRecord(b []byte) (sum [sha256.Size]byte, size int64, ok bool) {
	if len(b) < recHeaderSize+recTrailerSize || string(b[:4]) != packMagic {
		return sum, 0, false
	}
	size = int64(binary.LittleEndian.Uint32(b[4:8]))
	end := recordSize(size)
	if size > maxPackedBlock || end > int64(len(b)) {
		return sum, 0, false
	}
	if crc32.Checksum(b[:end-recTrailerSize], castagnoli) != binary.LittleEndian.Uint32(b[end-recTrailerSize:end]) {
		return sum, 0, false
	}
	copy(sum[:], b[8:recHeaderSize])
	return sum, size, true
}

// scanPack calls fn for every valid record of a pack's content. After a damaged record
// it searches for the next one; a record found that way must also match its SHA-256,
// so that bytes inside a block that look like a record are not taken for one. It
// returns the end of the last valid record.
func scanPack(b []byte, fn func(off int64, sum [sha256.Size]byte, size int64)) (end int64) {
	off := 0
	resynced := false
	for off < len(b) {
		if pad := int(directio.Up(int64(off))) - off; pad > 0 && off+pad <= len(b) && allZero(b[off:off+pad]) {
			off += pad // the padding after a record written directly (packdirect.go)
			end = int64(off)
			continue
		}
		sum, size, ok := parseRecord(b[off:])
		if ok && resynced {
			data := b[off+recHeaderSize : off+recHeaderSize+int(size)]
			ok = sha256.Sum256(data) == sum
		}
		if !ok {
			i := bytes.Index(b[off+1:], []byte(packMagic))
			if i < 0 {
				break
			}
			off += 1 + i
			resynced = true
			continue
		}
		resynced = false
		fn(int64(off), sum, size)
		off += int(recordSize(size))
		end = int64(off)
	}
	return end
}

func packName(id uint64) string { return fmt.Sprintf("%016x", id) }

// parsePackName returns the id of a pack file name.
func parsePackName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, packExt)
	if !ok || len(base) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(base, 16, 64)
	return id, err == nil
}

// openPacks loads every pack of the store into the index; loose holds the blocks
// stored as files. Called by Open only.
func (s *Store) openPacks(loose map[[sha256.Size]byte]struct{}) error {
	ents, err := os.ReadDir(s.packDir)
	if err != nil {
		return fmt.Errorf("list packs in %q: %w", s.packDir, err)
	}
	now := s.now().UnixNano()
	if err := s.removeOrphans(ents); err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			// A .dead file being written when the process stopped.
			if err := os.Remove(filepath.Join(s.packDir, name)); err != nil {
				return fmt.Errorf("remove stale %q: %w", name, err)
			}
			continue
		}
		id, ok := parsePackName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		s.nextPack = max(s.nextPack, id+1)
		if err := s.loadPack(id, now, loose); err != nil {
			return err
		}
	}
	return nil
}

// removeOrphans removes the .dead and .idx files, among ents, of packs that are gone:
// left by a crash while a pack was compacted, they would be taken for those of a later
// pack given the same id (its records counted dead, or indexed from another list).
func (s *Store) removeOrphans(ents []os.DirEntry) error {
	packs := map[uint64]bool{}
	for _, e := range ents {
		if id, ok := parsePackName(e.Name()); ok {
			packs[id] = true
		}
	}
	removed := false
	for _, e := range ents {
		for _, ext := range []string{deadExt, idxExt} {
			base, ok := strings.CutSuffix(e.Name(), ext)
			if !ok {
				continue
			}
			if id, ok := parsePackName(base + packExt); ok && !packs[id] {
				if err := os.Remove(filepath.Join(s.packDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("remove %q of a pack that is gone: %w", e.Name(), err)
				}
				removed = true
			}
		}
	}
	if removed {
		return syncDir(s.packDir)
	}
	return nil
}

// loadPack reads one pack, checks every record and indexes the live ones.
func (s *Store) loadPack(id uint64, now int64, loose map[[sha256.Size]byte]struct{}) error {
	p := &pack{id: id, path: filepath.Join(s.packDir, packName(id)+packExt), dead: map[int64]struct{}{}}
	f, err := os.Open(p.path)
	if err != nil {
		return fmt.Errorf("open pack %q: %w", p.path, err)
	}
	if fi, err := f.Stat(); err == nil {
		if recs, ok := s.readIdx(id, fi.Size()); ok {
			p.f, p.size, p.synced = f, fi.Size(), fi.Size() // sealed: fsynced before its .idx
			s.indexPack(p, now, loose, func(fn func(off int64, sum [sha256.Size]byte, size int64)) {
				for _, r := range recs {
					fn(r.off, r.sum, r.size)
				}
			})
			return nil
		}
	}
	content, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("read pack %q: %w", p.path, err)
	}
	p.f = f
	p.size = int64(len(content))
	// p.synced stays 0: a process that stopped without syncing may have left records
	// that are only in the page cache; the first Sync that needs the pack fsyncs it.
	var end int64
	s.indexPack(p, now, loose, func(fn func(off int64, sum [sha256.Size]byte, size int64)) {
		end = scanPack(content, fn)
	})
	if tail := p.size - end; tail > 0 {
		// A crash in the middle of an append; appends go to a new pack from now on.
		s.log("pack ends in a torn or damaged record, ignored", "pack", p.path, "bytes", tail)
	}
	return nil
}

// indexPack indexes the records each yields (a scan of the pack, or its .idx) and
// registers the pack.
func (s *Store) indexPack(p *pack, now int64, loose map[[sha256.Size]byte]struct{}, each func(fn func(off int64, sum [sha256.Size]byte, size int64))) {
	dead, err := readDeadList(s.deadPath(p.id))
	if err != nil {
		// Losing the list only brings back blocks GC had removed: valid content, and
		// unreferenced, so the next GC removes them again.
		s.log("ignoring a damaged dead-record list", "pack", p.path, "err", err)
		p.deadDirty = true
	}
	each(func(off int64, sum [sha256.Size]byte, size int64) {
		if _, isDead := dead[off]; isDead {
			p.dead[off] = struct{}{}
			return
		}
		_, dup := s.index[sum]
		if _, isFile := loose[sum]; dup || isFile {
			// Left by a compaction that stopped before it removed the old pack, or by
			// a PutMany that raced a Put of the same block and lost.
			p.dead[off] = struct{}{}
			p.deadDirty = true
			return
		}
		loc := &packed{pack: p, off: off, size: size}
		loc.lastUse.Store(now)
		s.index[sum] = loc
		p.live += loc.recordSize()
		s.blocks.Add(1)
		s.bytes.Add(size)
	})
	s.packs[p.id] = p
}

func (s *Store) deadPath(id uint64) string {
	return filepath.Join(s.packDir, packName(id)+deadExt)
}

// readDeadList reads a .dead file: offsets (uint64 LE) followed by the CRC-32C of them.
// A missing file is an empty list.
func readDeadList(path string) (map[int64]struct{}, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", path, err)
	}
	if len(b) < 4 || (len(b)-4)%8 != 0 ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("read %q: bad length or checksum", path)
	}
	out := make(map[int64]struct{}, (len(b)-4)/8)
	for i := 0; i+8 <= len(b)-4; i += 8 {
		out[int64(binary.LittleEndian.Uint64(b[i:]))] = struct{}{}
	}
	return out, nil
}

// writeDeadList replaces a pack's .dead file atomically and durably.
func (s *Store) writeDeadList(id uint64, offs []int64) error {
	b := make([]byte, 0, len(offs)*8+4)
	for _, o := range offs {
		b = binary.LittleEndian.AppendUint64(b, uint64(o))
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := replaceFile(s.deadPath(id), b); err != nil {
		return err
	}
	return syncDir(s.packDir)
}

// replaceFile replaces path with a file holding b, written to path+".tmp" first (Open
// removes what a crash leaves of such files); see pagecache.ReplaceWith.
func replaceFile(path string, b []byte) error {
	tmp, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %q: %w", path+".tmp", err)
	}
	return pagecache.ReplaceWith(tmp, path, b)
}

// activePack returns the pack appends go to, creating one when there is none or the
// current one is full. The caller holds wmu.
func (s *Store) activePack() (*pack, error) {
	if s.active != nil && s.active.size < packTargetSize && s.active.failed() == nil {
		return s.active, nil
	}
	if s.active != nil {
		s.sealInBackground(s.active)
	}
	id := s.nextPack
	p := &pack{id: id, path: filepath.Join(s.packDir, packName(id)+packExt), dead: map[int64]struct{}{}}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create pack %q: %w", p.path, err)
	}
	// The new file's directory entry is made durable by the pack's first fsync
	// (fsyncPack), before any record in it counts as durable: a sync of the dir here,
	// under wmu, held up every upload for 0.15–0.2 s per pack (docs/benchmarks.md).
	s.nextPack++
	p.f = f
	if s.directIO {
		p.direct = openDirect(p.path, os.O_RDWR)
	}
	p.recs = []idxEntry{}
	s.pmu.Lock()
	s.packs[id] = p
	s.pmu.Unlock()
	s.active = p
	return p, nil
}

// fsyncPack makes what p holds durable: its data and, the first time, its directory
// entry (which activePack leaves to this). Every record counted as durable (synced)
// passed through it.
func (s *Store) fsyncPack(p *pack) error {
	if err := p.failed(); err != nil {
		return err
	}
	if err := p.f.Sync(); err != nil {
		p.entryMu.Lock()
		first := p.syncErr == nil
		if first {
			p.syncErr = err
		}
		p.entryMu.Unlock()
		if first {
			s.forgetUnsynced(p)
		}
		return err
	}
	p.entryMu.Lock()
	defer p.entryMu.Unlock()
	if p.entrySynced {
		return nil
	}
	if err := syncDir(s.packDir); err != nil {
		return err
	}
	p.entrySynced = true
	return nil
}

// failed returns the error of p's first failed fsync, if any (see syncErr).
func (p *pack) failed() error {
	p.entryMu.Lock()
	defer p.entryMu.Unlock()
	if p.syncErr != nil {
		return fmt.Errorf("pack %q: an earlier fsync failed: %w", p.path, p.syncErr)
	}
	return nil
}

// forgetUnsynced drops from the index the blocks of p's records that are not known
// durable (past p.synced), after an fsync of p failed: a client then finds them
// missing and uploads them again, into another pack.
func (s *Store) forgetUnsynced(p *pack) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for _, e := range p.recs {
		if e.off+recordSize(e.size) <= p.synced {
			continue
		}
		if loc := s.index[e.sum]; loc != nil && loc.pack == p && loc.off == e.off {
			s.forget(e.sum, loc)
			s.log("dropped a block whose pack failed to sync; it must be uploaded again",
				"hash", hex.EncodeToString(e.sum[:]), "pack", p.path, "offset", e.off)
		}
	}
}

// appendRecords writes records (built by appendRecord) at the end of the active pack
// and, when durable, fsyncs the pack (which makes every earlier record of it durable
// too); otherwise it only starts the writeback of the new pages, and Sync makes them
// durable later. It returns the pack and the offset of the first record. On failure the
// pack is abandoned: its tail may hold a partial write, which a later Open ignores, and
// the next append starts a new pack. The caller holds wmu.
func (s *Store) appendRecords(buf []byte, durable bool) (*pack, int64, error) {
	return s.appendWith(recordBuf(buf), durable)
}

// records are pack records to write: their bytes in total, how to write them at an
// offset of a pack, and their index entries once written there.
type records interface {
	size() int64
	writeAt(f *os.File, off int64) error
	entries(base int64) []idxEntry
}

// recordBuf is records built in one buffer (appendRecord).
type recordBuf []byte

func (b recordBuf) size() int64 { return int64(len(b)) }

func (b recordBuf) writeAt(f *os.File, off int64) error {
	_, err := pagecache.WriteAt(f, b, off)
	return err
}

func (b recordBuf) entries(base int64) []idxEntry { return packRecords(b, base) }

// appendWith is appendRecords of any records.
func (s *Store) appendWith(recs records, durable bool) (*pack, int64, error) {
	p, err := s.activePack()
	if err != nil {
		return nil, 0, err
	}
	off := p.size
	err = recs.writeAt(p.f, off)
	if err == nil && durable {
		err = s.fsyncPack(p)
	}
	if err != nil {
		s.active = nil
		return nil, 0, fmt.Errorf("append to pack %q: %w", p.path, err)
	}
	n := recs.size()
	if !durable {
		startWriteback(p.f, off, n)
	}
	s.pmu.Lock()
	if p.recs != nil {
		p.recs = append(p.recs, recs.entries(off)...)
	}
	p.size += n
	if durable {
		p.synced = p.size
	}
	s.pmu.Unlock()
	return p, off, nil
}

// blockRecords are the records of blocks[i] (hash sums[i]) for each i of todo, written
// without copying the blocks into one buffer: the records' heads and tails are made
// apart, and each piece of at most pagecache.MaxWrite bytes goes out in one vectored
// write where the system has one (writev.go). Copying a batch of 1,000 small files into
// one buffer of 9 MB first cost the server a tenth of its CPU in W1, half of it in page
// faults on the fresh buffer.
type blockRecords struct {
	blocks []BlockData
	sums   [][sha256.Size]byte
	todo   []int
	// heads and tails hold each record's header (magic, size, hash) and its CRC-32C.
	heads []byte
	tails []byte
	total int64
}

func newBlockRecords(blocks []BlockData, sums [][sha256.Size]byte, todo []int) *blockRecords {
	r := &blockRecords{blocks: blocks, sums: sums, todo: todo,
		heads: make([]byte, 0, len(todo)*recHeaderSize), tails: make([]byte, 0, len(todo)*recTrailerSize)}
	for _, i := range todo {
		data := blocks[i].Data
		start := len(r.heads)
		r.heads = appendRecordHead(r.heads, sums[i], len(data))
		crc := crc32.Update(crc32.Checksum(r.heads[start:], castagnoli), castagnoli, data)
		r.tails = binary.LittleEndian.AppendUint32(r.tails, crc)
		r.total += recordSize(int64(len(data)))
	}
	return r
}

func (r *blockRecords) size() int64 { return r.total }

// pieces calls put with the records' bytes, in order, as slices of the heads, the
// blocks' data and the tails.
func (r *blockRecords) pieces(put func([]byte) error) error {
	for k, i := range r.todo {
		for _, b := range [][]byte{r.heads[k*recHeaderSize : (k+1)*recHeaderSize], r.blocks[i].Data, r.tails[k*recTrailerSize : (k+1)*recTrailerSize]} {
			if err := put(b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *blockRecords) entries(base int64) []idxEntry {
	out := make([]idxEntry, len(r.todo))
	off := base
	for k, i := range r.todo {
		size := int64(len(r.blocks[i].Data))
		out[k] = idxEntry{off: off, size: size, sum: r.sums[i]}
		off += recordSize(size)
	}
	return out
}

// putPacked stores blocks (verified, distinct, none over maxPackedBlock) in the active
// pack with one write, and starts its writeback; the caller makes them durable with Sync
// (one fsync), after wmu is released, so that the next batch's write does not wait for
// this one's fsync and concurrent batches share their fsyncs. It returns how many it
// created and their bytes.
func (s *Store) putPacked(blocks []BlockData, sums [][sha256.Size]byte) (created int, createdBytes int64, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Checked under wmu: no other append can store one of these meanwhile, so a block
	// is packed once. Nor can a concurrent Put store one as a file (see hasSmallLocked).
	var todo []int
	for i, b := range blocks {
		mu := s.lock(b.Hash)
		mu.Lock()
		present, err := s.hasSmallLocked(b.Hash)
		mu.Unlock()
		if err != nil {
			return 0, 0, err
		}
		if !present {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	p, off, err := s.appendWith(newBlockRecords(blocks, sums, todo), false)
	if err != nil {
		return 0, 0, err
	}
	now := s.now().UnixNano()
	for _, i := range todo {
		b := blocks[i]
		loc := &packed{pack: p, off: off, size: int64(len(b.Data))}
		off += loc.recordSize()
		loc.lastUse.Store(now)
		mu := s.lock(b.Hash)
		mu.Lock()
		s.pmu.Lock()
		s.index[sums[i]] = loc
		p.live += loc.recordSize()
		s.pmu.Unlock()
		mu.Unlock()
		created++
		createdBytes += loc.size
		s.blocks.Add(1)
		s.bytes.Add(loc.size)
	}
	return created, createdBytes, nil
}

// lookupPacked returns where a block is packed, or nil. It refreshes the block's
// lastUse when it is older than touchAfter, like hasLocked does for a file's mtime.
func (s *Store) lookupPacked(hash string, touch bool) *packed {
	sum, ok := hashKey(hash)
	if !ok {
		return nil
	}
	s.pmu.RLock()
	loc := s.index[sum]
	s.pmu.RUnlock()
	if loc != nil && touch {
		if now := s.now().UnixNano(); now-loc.lastUse.Load() > int64(touchAfter) {
			loc.lastUse.Store(now)
		}
	}
	return loc
}

func hashKey(hash string) (sum [sha256.Size]byte, ok bool) {
	n, err := hex.Decode(sum[:], []byte(hash))
	return sum, err == nil && n == sha256.Size
}

// openPacked reads a packed block and checks its record (hash, length, CRC-32C), so a
// damaged disk yields ErrCorrupt and never wrong bytes. ok is false when the block is not packed.
func (s *Store) openPacked(hash string) (rc io.ReadSeekCloser, size int64, ok bool, err error) {
	sum, valid := hashKey(hash)
	if !valid {
		return nil, 0, false, nil
	}
	s.pmu.RLock()
	loc := s.index[sum]
	if loc == nil {
		s.pmu.RUnlock()
		return nil, 0, false, nil
	}
	// A pooled buffer: the commit's verification and the downloads read every block of
	// a large file, and fresh 1 MiB buffers cost more than the read.
	bp := recBufs.Get().(*[]byte)
	// Read under the lock: compaction swaps and closes packs under the write lock.
	rec, err := readRecord(loc, *bp)
	path := loc.pack.path
	s.pmu.RUnlock()
	if err != nil {
		recBufs.Put(bp)
		return nil, 0, true, fmt.Errorf("read block %q from %q: %w", hash, path, err)
	}
	data := rec[recHeaderSize : recHeaderSize+loc.size]
	// The record's CRC-32C covers its header and data: a damaged disk is caught at a
	// fraction of a SHA-256 pass (every record's SHA-256 was checked when it was
	// written, or when a resyncing scan found it), which matters for large blocks that
	// the commit's verification and the downloads read again.
	end := len(rec) - recTrailerSize
	if string(rec[:4]) != packMagic || !bytes.Equal(rec[8:recHeaderSize], sum[:]) ||
		int64(binary.LittleEndian.Uint32(rec[4:8])) != loc.size ||
		crc32.Checksum(rec[:end], castagnoli) != binary.LittleEndian.Uint32(rec[end:]) {
		recBufs.Put(bp)
		s.dropCorrupt(hash, sum, loc)
		return nil, 0, true, fmt.Errorf("%w: block %q in %q at offset %d", ErrCorrupt, hash, path, loc.off)
	}
	return &pooledReader{Reader: bytes.NewReader(data), buf: bp, data: data}, loc.size, true, nil
}

// dropCorrupt removes a damaged block from the index, so that Has and Missing report
// it missing and clients upload it again. The damaged record is left in its pack, dead.
func (s *Store) dropCorrupt(hash string, sum [sha256.Size]byte, loc *packed) {
	mu := s.lock(hash)
	mu.Lock()
	defer mu.Unlock()
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.index[sum] != loc {
		return // already dropped, or stored again
	}
	s.forget(sum, loc)
	s.log("dropped a damaged block; it must be uploaded again", "hash", hash, "pack", loc.pack.path, "offset", loc.off)
}

// forget removes the block sum, packed at loc, from the index and counts its record
// dead. The caller holds pmu.
func (s *Store) forget(sum [sha256.Size]byte, loc *packed) {
	delete(s.index, sum)
	loc.pack.dead[loc.off] = struct{}{}
	loc.pack.deadDirty = true
	loc.pack.live -= loc.recordSize()
	s.blocks.Add(-1)
	s.bytes.Add(-loc.size)
}

// pooledReader is a packed block read into a pooled buffer, which Close gives back; the
// reader must not be used after Close.
type pooledReader struct {
	*bytes.Reader
	buf  *[]byte
	data []byte
}

// Bytes returns the whole block, wherever the reader stands; it is valid until Close.
func (r *pooledReader) Bytes() []byte { return r.data }

func (r *pooledReader) Close() error {
	if r.buf != nil {
		r.Reset(nil)
		recBufs.Put(r.buf)
		r.buf, r.data = nil, nil
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
