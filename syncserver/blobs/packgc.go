package blobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// gcPacked removes from the index the packed blocks that referenced does not name and
// whose lastUse is before olderThan, records them in their packs' dead lists, and
// compacts the packs that are mostly dead.
func (s *Store) gcPacked(ctx context.Context, referenced func(hash string) bool, olderThan time.Time) (removed int, freed int64, err error) {
	limit := olderThan.UnixNano()
	type cand struct {
		sum  [sha256.Size]byte
		hash string
	}
	var cands []cand
	s.pmu.RLock()
	for sum, loc := range s.index {
		if loc.lastUse.Load() >= limit {
			continue
		}
		h := fmt.Sprintf("%x", sum[:])
		if !referenced(h) {
			cands = append(cands, cand{sum, h})
		}
	}
	s.pmu.RUnlock()

	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return removed, freed, err
		}
		mu := s.lock(c.hash)
		mu.Lock()
		s.pmu.Lock()
		// Check again under the locks: a Has or Missing may have refreshed it since.
		if loc := s.index[c.sum]; loc != nil && loc.lastUse.Load() < limit {
			delete(s.index, c.sum)
			p := loc.pack
			p.dead[loc.off] = struct{}{}
			p.deadDirty = true
			p.live -= loc.recordSize()
			removed++
			freed += loc.size
			s.blocks.Add(-1)
			s.bytes.Add(-loc.size)
		}
		s.pmu.Unlock()
		mu.Unlock()
	}
	return removed, freed, s.persistPackGC(ctx)
}

// persistPackGC compacts the packs that are mostly dead and writes the dead lists of
// the others, so that what GC removed stays removed after a restart.
func (s *Store) persistPackGC(ctx context.Context) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	type job struct {
		id      uint64
		compact bool
		dead    []int64
	}
	var jobs []job
	s.pmu.RLock()
	for id, p := range s.packs {
		switch {
		case p.live*2 < p.size && (p != s.active || p.size >= packTargetSize/2 || p.live == 0):
			jobs = append(jobs, job{id: id, compact: true})
		case p.deadDirty:
			dead := make([]int64, 0, len(p.dead))
			for o := range p.dead {
				dead = append(dead, o)
			}
			slices.Sort(dead)
			jobs = append(jobs, job{id: id, dead: dead})
		}
	}
	s.pmu.RUnlock()
	slices.SortFunc(jobs, func(a, b job) int { return int(a.id) - int(b.id) })
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if j.compact {
			err = s.compact(j.id)
		} else if err = s.writeDeadList(j.id, j.dead); err == nil {
			s.pmu.Lock()
			if p := s.packs[j.id]; p != nil && len(p.dead) == len(j.dead) {
				p.deadDirty = false
			}
			s.pmu.Unlock()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// compact copies the live records of a pack into the active pack, points the index at
// the copies and removes the old pack. A crash in between leaves a block in two packs;
// Open keeps one and counts the other dead. The caller holds wmu.
func (s *Store) compact(id uint64) error {
	s.sealing.Wait()
	s.pmu.RLock()
	p := s.packs[id]
	s.pmu.RUnlock()
	if p == nil {
		return nil
	}
	if p == s.active {
		s.active = nil // never copy a pack into itself
	}
	content := make([]byte, p.size)
	if _, err := p.f.ReadAt(content, 0); err != nil && err != io.EOF {
		return fmt.Errorf("read pack %q: %w", p.path, err)
	}
	type move struct {
		sum        [sha256.Size]byte
		oldOff     int64
		newRelOff  int64
		recordSize int64
	}
	var moves []move
	var buf []byte
	s.pmu.RLock()
	scanPack(content, func(off int64, sum [sha256.Size]byte, size int64) {
		if loc := s.index[sum]; loc != nil && loc.pack == p && loc.off == off {
			end := off + recordSize(size)
			moves = append(moves, move{sum: sum, oldOff: off, newRelOff: int64(len(buf)), recordSize: end - off})
			buf = append(buf, content[off:end]...)
		}
	})
	s.pmu.RUnlock()

	var np *pack
	var base int64
	if len(buf) > 0 {
		var err error
		if np, base, err = s.appendRecords(buf, true); err != nil {
			return err
		}
	}
	s.pmu.Lock()
	for _, m := range moves {
		// GC holds the hash's stripe lock while it removes from the index, and checks
		// the index again under pmu, so a block GC'd meanwhile is simply not found here.
		if loc := s.index[m.sum]; loc != nil && loc.pack == p && loc.off == m.oldOff {
			nl := &packed{pack: np, off: base + m.newRelOff, size: loc.size}
			nl.lastUse.Store(loc.lastUse.Load())
			s.index[m.sum] = nl
			np.live += m.recordSize
			p.live -= loc.recordSize()
		} else {
			np.dead[base+m.newRelOff] = struct{}{}
			np.deadDirty = true
		}
	}
	if p.live > 0 {
		// Blocks the index holds in p that the scan did not find whole (damaged since
		// they were indexed, as from the .idx at start-up): they go with the pack, and
		// are reported missing, so that they are uploaded again, instead of pointing
		// into a removed file.
		for sum, loc := range s.index {
			if loc.pack == p {
				s.forget(sum, loc)
				s.log("dropped a damaged block; it must be uploaded again", "hash", hex.EncodeToString(sum[:]),
					"pack", p.path, "offset", loc.off)
			}
		}
	}
	delete(s.packs, id)
	s.pmu.Unlock()

	p.closeDirect()
	p.f.Close()
	// The pack's own files go before it: one left behind by a crash would otherwise be
	// taken for a later pack's of the same id (openPacks also removes them).
	if err := s.removeIdx(id); err != nil {
		return err
	}
	if err := os.Remove(s.deadPath(id)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %q: %w", s.deadPath(id), err)
	}
	if err := os.Remove(p.path); err != nil {
		return fmt.Errorf("remove compacted pack %q: %w", p.path, err)
	}
	return syncDir(s.packDir)
}
