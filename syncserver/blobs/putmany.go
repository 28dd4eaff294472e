package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// BlockData is a block whose content is already in memory, for PutMany.
type BlockData struct {
	// Hash is the lowercase hex SHA-256 of Data.
	Hash string
	// Data is the block's content.
	Data []byte
}

// PutMany stores several blocks held in memory (small files inlined in a commit) with
// two filesystem syncs for the whole batch instead of two fsyncs per block. Every hash is
// verified before anything is written: one invalid hash or mismatched content
// (ErrInvalidHash, ErrHashMismatch) refuses the whole batch and stores nothing. Blocks
// already stored, or listed twice, are dedup hits. It returns how many blocks it created
// and their bytes; when it returns nil every block of the batch is stored durably.
func (s *Store) PutMany(blocks []BlockData) (created int, createdBytes int64, err error) {
	for _, b := range blocks {
		if err := checkHash(b.Hash); err != nil {
			return 0, 0, err
		}
		sum := sha256.Sum256(b.Data)
		if got := hex.EncodeToString(sum[:]); got != b.Hash {
			return 0, 0, fmt.Errorf("%w: block %q has SHA-256 %s", ErrHashMismatch, b.Hash, got)
		}
	}

	type pending struct {
		hash string
		tmp  string
		size int64
	}
	var todo []pending
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
		for _, p := range todo {
			os.Remove(p.tmp) // already renamed ones are gone: the error is expected
		}
	}()
	seen := make(map[string]struct{}, len(blocks))
	for _, b := range blocks {
		if _, dup := seen[b.Hash]; dup {
			continue
		}
		seen[b.Hash] = struct{}{}
		mu := s.lock(b.Hash)
		mu.Lock()
		present, err := s.hasLocked(b.Hash)
		mu.Unlock()
		if err != nil {
			return 0, 0, err
		}
		if present {
			continue
		}
		f, err := os.CreateTemp(s.tmpDir, b.Hash[:16]+".*")
		if err != nil {
			return 0, 0, fmt.Errorf("create temp file for block %q: %w", b.Hash, err)
		}
		files = append(files, f)
		todo = append(todo, pending{hash: b.Hash, tmp: f.Name(), size: int64(len(b.Data))})
		if _, err := f.Write(b.Data); err != nil {
			return 0, 0, fmt.Errorf("write block %q: %w", b.Hash, err)
		}
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	// The data must be durable before any rename: after a crash a block file must never
	// exist with content that does not match its name.
	if err := syncFiles(s.dir, files); err != nil {
		return 0, 0, err
	}
	dirs := map[string]struct{}{}
	for _, p := range todo {
		dst := s.path(p.hash)
		mu := s.lock(p.hash)
		mu.Lock()
		_, statErr := os.Stat(dst)
		if statErr == nil {
			mu.Unlock()
			continue // a concurrent Put stored it meanwhile
		}
		err := os.Rename(p.tmp, dst)
		if err == nil {
			created++
			createdBytes += p.size
			s.blocks.Add(1)
			s.bytes.Add(p.size)
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
		return created, createdBytes, err
	}
	return created, createdBytes, nil
}
