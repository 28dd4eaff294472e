package blobs

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// A pack that appends have left (it reached packTargetSize) is sealed: fsynced, then
// described by DIR/packs/<id>.idx, written atomically, which lists its records (offset,
// length, SHA-256) and the pack's size, followed by the CRC-32C of all that. Open
// then indexes a sealed pack from its .idx without reading the pack, so that start-up
// does not read every stored byte now that large blocks live in packs too. An .idx
// whose CRC is wrong or whose size is not the pack's is ignored and the pack is
// scanned as before. A record's own CRC is still checked on every read.
const idxExt = ".idx"

// idxRecordSize is the size of one record's entry in an .idx file.
const idxRecordSize = 8 + 4 + sha256.Size

// idxEntry is one record of a sealed pack.
type idxEntry struct {
	off  int64
	size int64
	sum  [sha256.Size]byte
}

func (s *Store) idxPath(id uint64) string {
	return filepath.Join(s.packDir, packName(id)+idxExt)
}

// packRecords lists the records of buf, a run of records built by appendRecord that
// starts at offset base of a pack.
func packRecords(buf []byte, base int64) []idxEntry {
	var out []idxEntry
	for off := 0; off+recHeaderSize <= len(buf); {
		size := int64(binary.LittleEndian.Uint32(buf[off+4 : off+8]))
		var e idxEntry
		e.off, e.size = base+int64(off), size
		copy(e.sum[:], buf[off+8:off+recHeaderSize])
		out = append(out, e)
		off += int(recordSize(size))
	}
	return out
}

// sealInBackground seals a pack that takes no more appends without holding up the
// appends to the next one: sealing waits for the disk (the pack's fsync, the .idx's,
// the dir's), which took about 0.2 s per full pack while every upload waited on wmu
// (docs/benchmarks.md). The caller holds wmu.
func (s *Store) sealInBackground(p *pack) {
	s.sealing.Add(1)
	go func() {
		defer s.sealing.Done()
		s.seal(p)
	}()
}

// seal makes a pack that takes no more appends durable and writes its .idx. A failure
// only costs the scan at the next Open. Nothing appends to p any more; compaction and
// Close wait for the seal before they touch p.
func (s *Store) seal(p *pack) {
	if err := s.fsyncPack(p); err != nil {
		s.log("sealing a pack: sync failed; it will be scanned at the next open", "pack", p.path, "err", err)
		return
	}
	s.pmu.Lock()
	p.synced = p.size
	recs, size := p.recs, p.size
	p.recs = nil
	s.pmu.Unlock()
	if recs == nil {
		return // not appended to by this process from its start: no complete list
	}
	b := make([]byte, 0, len(recs)*idxRecordSize+12)
	for _, e := range recs {
		b = binary.LittleEndian.AppendUint64(b, uint64(e.off))
		b = binary.LittleEndian.AppendUint32(b, uint32(e.size))
		b = append(b, e.sum[:]...)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(size))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	err := replaceFile(s.idxPath(p.id), b)
	if err == nil {
		err = syncDir(s.packDir)
	}
	if err != nil {
		s.log("sealing a pack: writing its index failed; it will be scanned at the next open", "pack", p.path, "err", err)
	}
}

// readIdx reads the .idx of a pack of size bytes; ok is false when there is none or it
// does not describe the pack as it is.
func (s *Store) readIdx(id uint64, size int64) (recs []idxEntry, ok bool) {
	b, err := os.ReadFile(s.idxPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil || len(b) < 12 || (len(b)-12)%idxRecordSize != 0 ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) ||
		int64(binary.LittleEndian.Uint64(b[len(b)-12:])) != size {
		s.log("ignoring a pack index that does not match its pack; scanning the pack", "pack", packName(id), "err", err)
		return nil, false
	}
	n := (len(b) - 12) / idxRecordSize
	recs = make([]idxEntry, n)
	for i := range recs {
		r := b[i*idxRecordSize:]
		recs[i].off = int64(binary.LittleEndian.Uint64(r))
		recs[i].size = int64(binary.LittleEndian.Uint32(r[8:]))
		copy(recs[i].sum[:], r[12:idxRecordSize])
		if recs[i].size > maxPackedBlock || recs[i].off < 0 || recs[i].off+recordSize(recs[i].size) > size {
			s.log("ignoring a pack index with a record out of range; scanning the pack", "pack", packName(id))
			return nil, false
		}
	}
	return recs, true
}

// removeIdx removes a pack's .idx (before the pack itself, so that an .idx never
// outlives its pack by a crash).
func (s *Store) removeIdx(id uint64) error {
	if err := os.Remove(s.idxPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %q: %w", s.idxPath(id), err)
	}
	return nil
}
