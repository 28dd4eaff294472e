package blobs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/syncedfolder/synced-folder/internal/directio"
)

// A streamed block (Put) of up to maxPackedBlock bytes is appended to the active pack
// like PutMany's, but without an fsync of its own: Put answers once the record is
// written, and Sync makes the blocks a commit names durable, with one fsync per pack
// touched, before the commit's metadata is applied. A crash before that Sync may lose
// such a block (a torn or missing record is ignored when the packs are read again), but
// then no metadata refers to it, and the missing-blocks query reports it missing, so the
// client uploads it again. On Linux every append also starts the writeback of its pages
// (sync_file_range), so that Sync mostly waits for the last few blocks.

// recBufs holds record buffers big enough for the largest packed block, aligned for
// direct I/O with room for the padding and for a read that starts on the alignment
// before the record.
var recBufs = sync.Pool{New: func() any {
	b := directio.Buffer(int(directio.Up(recordSize(maxPackedBlock)+1) + directio.Align))
	return &b
}}

// putStreamed reads r into a record buffer when its content is at most maxPackedBlock
// (and maxSize) bytes, verifies it and appends it to the active pack without an fsync.
// handled is false when the content is larger: the bytes read so far are then returned
// in head, and the caller stores head followed by the rest of r as a file.
func (s *Store) putStreamed(hash string, r io.Reader, maxSize int64) (n int64, created, handled bool, head []byte, err error) {
	limit := int64(maxPackedBlock)
	if maxSize > 0 {
		limit = min(limit, maxSize)
	}
	bp := recBufs.Get().(*[]byte)
	defer recBufs.Put(bp)
	rec := *bp
	data := rec[recHeaderSize : recHeaderSize+limit+1]
	m, err := io.ReadFull(r, data)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	case err != nil:
		return int64(m), false, true, nil, fmt.Errorf("write block %q: %w", hash, err)
	default:
		// More than limit bytes: too large to pack (or too large at all).
		return 0, false, false, append([]byte(nil), data...), nil
	}
	data = data[:m]
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != hash {
		return int64(m), false, true, nil, fmt.Errorf("%w: block %q has SHA-256 %s", ErrHashMismatch, hash, got)
	}
	rec = rec[:recordSize(int64(m))]
	copy(rec, packMagic)
	binary.LittleEndian.PutUint32(rec[4:8], uint32(m))
	copy(rec[8:recHeaderSize], sum[:])
	end := len(rec) - recTrailerSize
	binary.LittleEndian.PutUint32(rec[end:], crc32.Checksum(rec[:end], castagnoli))
	created, err = s.appendStreamed(hash, sum, rec, int64(m))
	return int64(m), created, true, nil, err
}

// appendStreamed appends one verified record to the active pack, unsynced, unless the
// block is stored meanwhile.
func (s *Store) appendStreamed(hash string, sum [sha256.Size]byte, rec []byte, size int64) (bool, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	mu := s.lock(hash)
	mu.Lock()
	present, err := s.hasLocked(hash)
	mu.Unlock()
	if err != nil || present {
		return false, err
	}
	p, off, err := s.appendStreamedRecord(rec, size)
	if err != nil {
		return false, err
	}
	loc := &packed{pack: p, off: off, size: size}
	loc.lastUse.Store(s.now().UnixNano())
	// Under wmu no other append stores the hash; only a file written by a concurrent
	// large Put could, and it cannot be this block (it is at most maxPackedBlock bytes,
	// and such blocks are never written as files by Put).
	mu.Lock()
	s.pmu.Lock()
	s.index[sum] = loc
	p.live += loc.recordSize()
	s.pmu.Unlock()
	mu.Unlock()
	s.blocks.Add(1)
	s.bytes.Add(size)
	return true, nil
}

// Sync makes the named blocks durable: those Put appended to a pack without an fsync
// (one fsync per pack concerned) and those PutMany renamed into place whose directory
// entries are not synced yet. Hashes that are not stored, or already durable, cost a
// lookup. A commit calls it before it applies metadata that refers to the blocks.
func (s *Store) Sync(hashes []string) error {
	var todo []*pack
	seen := map[*pack]struct{}{}
	var loose []string
	s.pmu.RLock()
	for _, h := range hashes {
		sum, ok := hashKey(h)
		if !ok {
			continue
		}
		if loc := s.index[sum]; loc != nil {
			if p := loc.pack; loc.off+loc.recordSize() > p.synced {
				if _, dup := seen[p]; !dup {
					seen[p] = struct{}{}
					todo = append(todo, p)
				}
			}
			continue
		}
		loose = append(loose, h)
	}
	s.pmu.RUnlock()
	for _, p := range todo {
		if err := s.syncPack(p); err != nil {
			return err
		}
	}
	if len(loose) == 0 {
		return nil
	}
	s.unsyncedMu.Lock()
	var dirty []string
	for _, h := range loose {
		if _, ok := s.unsynced[h]; ok {
			dirty = append(dirty, h)
		}
	}
	s.unsyncedMu.Unlock()
	if len(dirty) == 0 {
		return nil
	}
	dirs := make([]string, 0, len(dirty))
	for _, h := range dirty {
		dirs = append(dirs, s.path(h)[:len(s.path(h))-len(h)-1])
	}
	if err := syncDirs(s.dir, dirs); err != nil {
		return err
	}
	s.unsyncedMu.Lock()
	for _, h := range dirty {
		delete(s.unsynced, h)
	}
	s.unsyncedMu.Unlock()
	return nil
}

// syncPack fsyncs a pack and records how much of it is durable.
func (s *Store) syncPack(p *pack) error {
	s.pmu.RLock()
	size := p.size
	s.pmu.RUnlock()
	if err := s.fsyncPack(p); err != nil {
		s.pmu.RLock()
		_, open := s.packs[p.id]
		s.pmu.RUnlock()
		if !open {
			// Compacted meanwhile: its live records were copied to a pack that was
			// fsynced before the index pointed at them.
			return nil
		}
		return fmt.Errorf("sync pack %q: %w", p.path, err)
	}
	s.pmu.Lock()
	p.synced = max(p.synced, size)
	s.pmu.Unlock()
	return nil
}
