package scan

import (
	"fmt"
	"os"
	"time"
)

// RacyWindow is the Scanner's RacyWindow where timestamps are coarse: a file whose
// mtime lies less than this before the read that hashed it is hashed again when a scan
// passes it, until a hash starts this long after its mtime. A file system whose
// timestamps move by the kernel's tick (Linux before 6.13's multigrain timestamps,
// ramfs; 1–10 ms) gives a second write in the same tick the mtime of the first: read
// between the two, the file would keep the stat key the first content was indexed
// under, and the second write would never be sent (git's "racy clean" entries). File
// systems coarser than this (FAT's 2 s) are not covered.
const RacyWindow = 50 * time.Millisecond

// noteRacy records whether the file p, hashed with mtime mtimeNs by a read that started
// at readStart, is to be hashed again when a scan passes it (s.racy: path → the mtime
// it was hashed with).
func (s *Scanner) noteRacy(p string, mtimeNs int64, readStart time.Time) {
	s.racyMu.Lock()
	defer s.racyMu.Unlock()
	if s.RacyWindow > 0 && mtimeNs > readStart.Add(-s.RacyWindow).UnixNano() {
		if s.racy == nil || len(s.racy) >= racyMax {
			s.racy = map[string]int64{}
		}
		s.racy[p] = mtimeNs
	} else {
		delete(s.racy, p)
	}
}

// racyMax bounds the files held as racy: past it the older ones are forgotten (a file
// hashed racy stays so until a scan passes it again, which a path written once and
// never again may never see).
const racyMax = 100_000

// forgetRacy drops p from the racy files: it left the index.
func (s *Scanner) forgetRacy(p string) {
	s.racyMu.Lock()
	delete(s.racy, p)
	s.racyMu.Unlock()
}

// isRacy reports whether the file p, whose stat key (with mtime mtimeNs) is the
// index's, is to be hashed again (noteRacy).
func (s *Scanner) isRacy(p string, mtimeNs int64) bool {
	s.racyMu.Lock()
	defer s.racyMu.Unlock()
	m, ok := s.racy[p]
	return ok && m == mtimeNs
}

// CoarseTimestamps reports whether the file system holding dir may leave a file's
// mtime as it was across a write that follows a stat of it (see RacyWindow): it writes,
// stats and writes again a file of its own in dir, a few times (a coarse clock shows
// it most times), and removes it. Linux from 6.13 gives such a write a finer mtime
// (multigrain timestamps) on ext4, XFS, btrfs and tmpfs.
func CoarseTimestamps(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, TempPrefix+"mtime-")
	if err != nil {
		return true, fmt.Errorf("probe timestamps: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	for range 16 {
		if _, err := f.WriteAt([]byte{1}, 0); err != nil {
			return true, fmt.Errorf("probe timestamps: %w", err)
		}
		before, err := f.Stat()
		if err != nil {
			return true, fmt.Errorf("probe timestamps: %w", err)
		}
		if _, err := f.WriteAt([]byte{2}, 0); err != nil {
			return true, fmt.Errorf("probe timestamps: %w", err)
		}
		after, err := f.Stat()
		if err != nil {
			return true, fmt.Errorf("probe timestamps: %w", err)
		}
		if after.ModTime().Equal(before.ModTime()) {
			return true, nil
		}
	}
	return false, nil
}
