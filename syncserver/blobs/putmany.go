package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/syncedfolder/synced-folder/internal/pagecache"
	"golang.org/x/sync/errgroup"
)

// putManyWriters is how many temp files PutMany writes at once.
const putManyWriters = 4

// BlockData is a block whose content is already in memory, for PutMany.
type BlockData struct {
	// Hash is the lowercase hex SHA-256 of Data.
	Hash string
	// Data is the block's content.
	Data []byte
	// Sum, when set, is the SHA-256 of Data as the caller computed it (to check content
	// it received): PutMany then checks Hash against it instead of hashing Data again.
	Sum *[sha256.Size]byte
}

// PutMany stores several blocks held in memory (small files inlined in a commit) with
// one write and one fsync of a pack file for the blocks up to maxPackedBlock, and two
// filesystem syncs for the larger ones (a file each). Every hash is verified before
// anything is written: one invalid hash or mismatched content (ErrInvalidHash,
// ErrHashMismatch) refuses the whole batch and stores nothing. Blocks already stored, or
// listed twice, are dedup hits. It returns how many blocks it created and their bytes;
// when it returns nil every block of the batch is stored durably.
func (s *Store) PutMany(blocks []BlockData) (created int, createdBytes int64, err error) {
	sums := make([][sha256.Size]byte, len(blocks))
	for i, b := range blocks {
		if err := checkHash(b.Hash); err != nil {
			return 0, 0, err
		}
		if b.Sum != nil {
			sums[i] = *b.Sum
		} else {
			sums[i] = sha256.Sum256(b.Data)
		}
		if got := hex.EncodeToString(sums[i][:]); got != b.Hash {
			return 0, 0, fmt.Errorf("%w: block %q has SHA-256 %s", ErrHashMismatch, b.Hash, got)
		}
	}
	var small, large []BlockData
	var smallSums [][sha256.Size]byte
	seen := make(map[string]struct{}, len(blocks))
	for i, b := range blocks {
		if _, dup := seen[b.Hash]; dup {
			continue
		}
		seen[b.Hash] = struct{}{}
		if len(b.Data) <= maxPackedBlock {
			small = append(small, b)
			smallSums = append(smallSums, sums[i])
		} else {
			large = append(large, b)
		}
	}
	if len(small) > 0 {
		created, createdBytes, err = s.putPacked(small, smallSums)
		if err != nil {
			return created, createdBytes, err
		}
	}
	if len(large) > 0 {
		c, cb, err := s.putManyFiles(large)
		created += c
		createdBytes += cb
		if err != nil {
			return created, createdBytes, err
		}
	}
	// The packed blocks were written without an fsync (see putPacked), and a dedup hit
	// may be a block that Put appended and nothing has synced yet: one Sync for all.
	hashes := make([]string, 0, len(seen))
	for h := range seen {
		hashes = append(hashes, h)
	}
	return created, createdBytes, s.Sync(hashes)
}

// putManyFiles stores verified, distinct blocks as one file each, with two filesystem
// syncs for the batch.
func (s *Store) putManyFiles(blocks []BlockData) (created int, createdBytes int64, err error) {

	type pending struct {
		hash string
		data []byte
		tmp  string
	}
	var todo []pending
	defer func() {
		for _, p := range todo {
			if p.tmp != "" {
				os.Remove(p.tmp) // already renamed ones are gone: the error is expected
			}
		}
	}()
	for _, b := range blocks {
		mu := s.lock(b.Hash)
		mu.Lock()
		present, err := s.hasLocked(b.Hash)
		mu.Unlock()
		if err != nil {
			return 0, 0, err
		}
		if !present {
			todo = append(todo, pending{hash: b.Hash, data: b.Data})
		}
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	// Creating files is the slow part (a few thousand a second on a busy disk), and
	// several in flight overlap their waits.
	var g errgroup.Group
	g.SetLimit(putManyWriters)
	for i := range todo {
		g.Go(func() error {
			p := &todo[i]
			f, err := os.CreateTemp(s.tmpDir, p.hash[:16]+".*")
			if err != nil {
				return fmt.Errorf("create temp file for block %q: %w", p.hash, err)
			}
			p.tmp = f.Name()
			_, err = pagecache.Write(f, p.data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write block %q: %w", p.hash, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	tmps := make([]string, len(todo))
	for i, p := range todo {
		tmps[i] = p.tmp
	}
	// The data must be durable before any rename: after a crash a block file must never
	// exist with content that does not match its name.
	if err := syncFiles(s.dir, tmps); err != nil {
		return 0, 0, err
	}
	dirs := map[string]struct{}{}
	var renamed []string
	for _, p := range todo {
		dst := s.path(p.hash)
		mu := s.lock(p.hash)
		mu.Lock()
		present, err := s.hasLocked(p.hash)
		if err != nil || present {
			mu.Unlock()
			if err != nil {
				return created, createdBytes, err
			}
			continue // a concurrent Put stored it meanwhile
		}
		err = os.Rename(p.tmp, dst)
		if err == nil {
			s.unsyncedMu.Lock()
			s.unsynced[p.hash] = struct{}{}
			s.unsyncedMu.Unlock()
			renamed = append(renamed, p.hash)
			created++
			createdBytes += int64(len(p.data))
			s.blocks.Add(1)
			s.bytes.Add(int64(len(p.data)))
		}
		mu.Unlock()
		if err != nil {
			return created, createdBytes, fmt.Errorf("store block %q: %w", p.hash, err)
		}
		dirs[filepath.Dir(dst)] = struct{}{}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	if err := syncDirs(s.dir, dirList); err != nil {
		return created, createdBytes, err // the blocks stay unsynced: a Has will retry
	}
	s.unsyncedMu.Lock()
	for _, h := range renamed {
		delete(s.unsynced, h)
	}
	s.unsyncedMu.Unlock()
	return created, createdBytes, nil
}
