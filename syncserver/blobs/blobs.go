// Package blobs is the sync server's content-addressed block store on disk: every block
// is named by the SHA-256 of its bytes, verified while it is written, and stored once
// however many files and versions share it.
//
// Blocks of up to 1 MiB (PutMany's, and streamed ones from Put) live in append-only pack
// files under DIR/packs/ (see pack.go); larger ones are files DIR/<hh>/<hash>, where hh
// is the first two hex digits of the hash (256 fan-out directories, made on Open), with
// DIR/tmp/ for uploads in progress. PutMany and large Puts are durable when they return;
// a streamed Put of a small block is durable once Sync names it (see putstream.go). One
// process at a time owns a directory: Open removes whatever it finds in DIR/tmp/.
package blobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncedfolder/synced-folder/internal/dirsync"
	"github.com/syncedfolder/synced-folder/internal/pagecache"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Errors of the store; every error it returns for these conditions wraps one of them.
var (
	// ErrNotFound means no block with that hash is stored.
	ErrNotFound = errors.New("block not found")
	// ErrHashMismatch means the bytes given to Put do not have the hash they were given as.
	ErrHashMismatch = errors.New("block content does not match its hash")
	// ErrTooLarge means the bytes given to Put exceed its size limit.
	ErrTooLarge = errors.New("block too large")
	// ErrInvalidHash means a hash is not 64 lowercase hex digits.
	ErrInvalidHash = errors.New("invalid block hash")
)

// tmpDirName holds uploads in progress; it cannot be mistaken for a fan-out directory
// because those are two hex digits.
const tmpDirName = "tmp"

// touchAfter is how old a stored block's mtime must be before Has, Missing or a dedup
// hit of Put refreshes it. GC only removes blocks older than its grace period, so a block
// that a client was just told is present cannot vanish before the client commits a
// version that refers to it — as long as the grace period is well above touchAfter.
const touchAfter = time.Minute

// lockStripes guard the check-then-act steps on one hash (dedup check and rename in Put,
// stat and remove in GC, stat and touch in Has) against each other.
const lockStripes = 256

// copyBufSize is the buffer Put streams through; large enough that a typical block is
// written in a few system calls.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Store is a content-addressed block store rooted at one directory. Every method is safe
// for concurrent use.
type Store struct {
	dir    string
	tmpDir string
	locks  [lockStripes]sync.Mutex
	blocks atomic.Int64
	bytes  atomic.Int64
	now    func() time.Time

	// unsynced holds blocks that PutMany renamed into place but whose directory entry is
	// not durable yet; whoever is told such a block is present syncs it first.
	unsyncedMu sync.Mutex
	unsynced   map[string]struct{}

	// smallFiles is set when Open found a block of at most maxPackedBlock bytes stored
	// as a file, as servers before packs stored them: only then are small blocks
	// looked for as files too.
	smallFiles bool

	// directIO gives each pack this process creates a second handle for direct I/O
	// (WithDirectIO).
	directIO bool

	// Packed blocks (pack.go). Lock order: wmu, then a hash's stripe lock, then pmu.
	// wmu serializes appends to the active pack, compaction and dead-list writes; pmu
	// guards index, packs and every pack's size, live and dead fields.
	packDir  string
	wmu      sync.Mutex
	active   *pack
	nextPack uint64
	pmu      sync.RWMutex
	index    map[[sha256.Size]byte]*packed
	packs    map[uint64]*pack

	// sealing counts the packs being sealed in the background (sealInBackground);
	// compaction and Close wait for them, as a pack must not be removed or closed
	// under its seal.
	sealing sync.WaitGroup
}

// ValidHash reports whether h is a block hash (proto.ValidHash). Only such strings ever
// become file names, so a hash can never traverse out of the store.
func ValidHash(h string) bool { return proto.ValidHash(h) }

func checkHash(h string) error {
	if !ValidHash(h) {
		return fmt.Errorf("%w %q: want 64 lowercase hex digits", ErrInvalidHash, truncate(h))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Option changes how Open sets up a Store.
type Option func(*Store)

// WithDirectIO makes the store write the large blocks of streamed uploads to its packs,
// and read them back, around the page cache where the file system allows it
// (packdirect.go). Off by default.
func WithDirectIO(on bool) Option {
	return func(s *Store) { s.directIO = on }
}

// Open opens the block store in dir, creating it when needed. It removes the temp files
// of uploads that a crash interrupted and counts the stored blocks for Stats.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{dir: dir, tmpDir: filepath.Join(dir, tmpDirName), now: time.Now, unsynced: map[string]struct{}{},
		packDir: filepath.Join(dir, packDirName), index: map[[sha256.Size]byte]*packed{}, packs: map[uint64]*pack{}}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create block store %q: %w", dir, err)
	}
	// Removing and recreating tmp/ drops every stale upload at once.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("remove stale uploads in %q: %w", s.tmpDir, err)
	}
	if err := os.Mkdir(s.tmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %q: %w", s.tmpDir, err)
	}
	for i := 0; i < 256; i++ {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create block store %q: %w", dir, err)
		}
	}
	if err := os.Mkdir(s.packDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create block store %q: %w", dir, err)
	}
	// The fan-out directories must survive a crash before any block is renamed into them.
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	var blocks, bytes int64
	loose := map[[sha256.Size]byte]struct{}{}
	err := s.walk(context.Background(), func(hash string, info fs.FileInfo) error {
		blocks++
		bytes += info.Size()
		if info.Size() <= maxPackedBlock {
			s.smallFiles = true
		}
		if sum, ok := hashKey(hash); ok {
			loose[sum] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count blocks in %q: %w", dir, err)
	}
	s.blocks.Store(blocks)
	s.bytes.Store(bytes)
	if err := s.openPacks(loose); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pack files. The store must not be used afterwards.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.sealing.Wait()
	s.pmu.Lock()
	defer s.pmu.Unlock()
	var first error
	for _, p := range s.packs {
		p.closeDirect()
		if err := p.f.Close(); err != nil && first == nil {
			first = fmt.Errorf("close pack %q: %w", p.path, err)
		}
	}
	s.packs = map[uint64]*pack{}
	s.index = map[[sha256.Size]byte]*packed{}
	s.active = nil
	return first
}

// log reports what the store repaired or ignored on its own.
func (s *Store) log(msg string, args ...any) {
	slog.Warn("block store: "+msg, args...)
}

// path returns the file of a valid hash.
func (s *Store) path(hash string) string {
	return filepath.Join(s.dir, hash[:2], hash)
}

func (s *Store) lock(hash string) *sync.Mutex {
	b, _ := hex.DecodeString(hash[:2])
	return &s.locks[b[0]]
}

// Has reports whether the block hash is stored.
func (s *Store) Has(hash string) (bool, error) {
	if err := checkHash(hash); err != nil {
		return false, err
	}
	mu := s.lock(hash)
	mu.Lock()
	defer mu.Unlock()
	return s.hasLocked(hash)
}

// hasLocked looks the block up (packed, then as a file) and refreshes its last use, so
// that the caller, which is about to rely on the block, is covered by GC's grace period.
func (s *Store) hasLocked(hash string) (bool, error) {
	if s.lookupPacked(hash, true) != nil {
		return true, nil
	}
	return s.looseExists(hash)
}

// hasSmallLocked is hasLocked for a block of at most maxPackedBlock bytes. Such blocks
// are never written as files (putStreamed), only read as files that an older server
// wrote: the file is looked for only when Open found some (a stat of a missing file per
// small block was 7 % of a server's CPU in a first sync). The caller holds the hash's
// lock.
func (s *Store) hasSmallLocked(hash string) (bool, error) {
	if s.lookupPacked(hash, true) != nil {
		return true, nil
	}
	if !s.smallFiles {
		return false, nil
	}
	return s.looseExists(hash)
}

// looseExists stats the block's file and refreshes an old mtime.
func (s *Store) looseExists(hash string) (bool, error) {
	p := s.path(hash)
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat block %q: %w", hash, err)
	}
	s.unsyncedMu.Lock()
	_, unsynced := s.unsynced[hash]
	s.unsyncedMu.Unlock()
	if unsynced {
		if err := syncDirs(s.dir, []string{filepath.Dir(p)}); err != nil {
			return false, err
		}
	}
	if now := s.now(); now.Sub(info.ModTime()) > touchAfter {
		if err := os.Chtimes(p, now, now); err != nil {
			return false, fmt.Errorf("touch block %q: %w", hash, err)
		}
	}
	return true, nil
}

// Missing returns the hashes of the list that are not stored, in the order given, each
// once.
func (s *Store) Missing(hashes []string) ([]string, error) {
	missing := []string{}
	seen := make(map[string]struct{}, len(hashes))
	for _, h := range hashes {
		if _, dup := seen[h]; dup {
			continue
		}
		seen[h] = struct{}{}
		ok, err := s.Has(h)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, h)
		}
	}
	return missing, nil
}

// Put stores the block hash with the content read from r; the block is stored only when
// r ends within maxSize bytes (else ErrTooLarge; maxSize <= 0 means no limit) and its
// SHA-256 equals hash (else ErrHashMismatch). A block of at most 1 MiB (maxPackedBlock)
// is appended to a pack file WITHOUT an fsync: it is readable at once, but durable only
// after Sync names it (a commit syncs the blocks it refers to before it applies), and a
// crash before that may lose it. A larger block is streamed to a temp file, fsynced,
// renamed into place and its directory fsynced before Put returns. When the block is
// already stored (or a concurrent Put stores it first), r is still read and verified,
// nothing is written and created is false. n is the number of bytes read from r.
func (s *Store) Put(hash string, r io.Reader, maxSize int64) (n int64, created bool, err error) {
	if err := checkHash(hash); err != nil {
		return 0, false, err
	}
	mu := s.lock(hash)
	mu.Lock()
	present, err := s.hasLocked(hash)
	mu.Unlock()
	if err != nil {
		return 0, false, err
	}
	if present {
		// Verifying a dedup hit keeps the contract simple: a wrong body is always refused.
		n, err := s.copyVerified(hash, io.Discard, r, maxSize)
		return n, false, err
	}
	n, created, handled, head, err := s.putStreamed(hash, r, maxSize)
	if handled {
		return n, created, err
	}
	r = io.MultiReader(bytes.NewReader(head), r)

	f, err := os.CreateTemp(s.tmpDir, hash[:16]+".*")
	if err != nil {
		return 0, false, fmt.Errorf("create temp file for block %q: %w", hash, err)
	}
	tmp := f.Name()
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err = s.copyVerified(hash, pagecache.Writer{W: f}, r, maxSize)
	if err != nil {
		return n, false, err
	}
	if err := f.Sync(); err != nil {
		return n, false, fmt.Errorf("sync block %q: %w", hash, err)
	}
	if err := f.Close(); err != nil {
		return n, false, fmt.Errorf("close block %q: %w", hash, err)
	}

	mu.Lock()
	defer mu.Unlock()
	if present, err := s.hasLocked(hash); err != nil || present {
		return n, false, err // a concurrent Put won; the deferred cleanup drops ours
	}
	if err := os.Rename(tmp, s.path(hash)); err != nil {
		return n, false, fmt.Errorf("store block %q: %w", hash, err)
	}
	keep = true
	if err := syncDir(filepath.Dir(s.path(hash))); err != nil {
		return n, false, err
	}
	s.blocks.Add(1)
	s.bytes.Add(n)
	return n, true, nil
}

// copyVerified copies r to w and checks the size limit and the hash of what it read.
func (s *Store) copyVerified(hash string, w io.Writer, r io.Reader, maxSize int64) (int64, error) {
	h := sha256.New()
	src := r
	if maxSize > 0 {
		src = io.LimitReader(r, maxSize+1)
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	n, err := io.CopyBuffer(io.MultiWriter(w, h), src, *bufp)
	if err != nil {
		return n, fmt.Errorf("write block %q: %w", hash, err)
	}
	if maxSize > 0 && n > maxSize {
		return n, fmt.Errorf("%w: block %q is over %d bytes", ErrTooLarge, hash, maxSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hash {
		return n, fmt.Errorf("%w: block %q has SHA-256 %s", ErrHashMismatch, hash, got)
	}
	return n, nil
}

// Open opens the block hash for reading and returns it with its size; ErrNotFound when
// it is not stored, ErrCorrupt when a packed block no longer matches its hash. The
// caller closes the reader. A packed block is read into memory whole, and its reader
// also has a method Bytes() []byte that returns the whole block without a copy, valid
// until Close.
func (s *Store) Open(hash string) (io.ReadSeekCloser, int64, error) {
	if err := checkHash(hash); err != nil {
		return nil, 0, err
	}
	if rc, size, ok, err := s.openPacked(hash); ok {
		return rc, size, err
	}
	f, err := os.Open(s.path(hash))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("open block %q: %w", hash, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open block %q: %w", hash, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat block %q: %w", hash, err)
	}
	return f, info.Size(), nil
}

// GC removes the blocks that referenced says no retained version needs and that were
// last written or confirmed present (Has, Missing, Put) before olderThan. The grace
// period protects blocks uploaded for a commit that has not happened yet; leave it at
// several minutes at least. Packed blocks are marked dead, and packs that are mostly
// dead are rewritten. It returns how many blocks it removed and their bytes.
func (s *Store) GC(ctx context.Context, referenced func(hash string) bool, olderThan time.Time) (removed int, freed int64, err error) {
	removed, freed, err = s.gcPacked(ctx, referenced, olderThan)
	if err != nil {
		return removed, freed, err
	}
	err = s.walk(ctx, func(hash string, _ fs.FileInfo) error {
		if referenced(hash) {
			return nil
		}
		mu := s.lock(hash)
		mu.Lock()
		defer mu.Unlock()
		// Stat again under the lock: a Has or Put may have refreshed it since the walk.
		info, err := os.Stat(s.path(hash))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat block %q: %w", hash, err)
		}
		if !info.ModTime().Before(olderThan) {
			return nil
		}
		if err := os.Remove(s.path(hash)); err != nil {
			return fmt.Errorf("remove block %q: %w", hash, err)
		}
		removed++
		freed += info.Size()
		s.blocks.Add(-1)
		s.bytes.Add(-info.Size())
		return nil
	})
	return removed, freed, err
}

// Stats returns the number of stored blocks and their total size. It reads counters
// kept by the store, so it is cheap.
func (s *Store) Stats() (blocks int64, bytes int64, err error) {
	return s.blocks.Load(), s.bytes.Load(), nil
}

// walk calls fn for every stored block. Files whose names are not valid hashes (left by
// hand or by another program) are skipped, never touched.
func (s *Store) walk(ctx context.Context, fn func(hash string, info fs.FileInfo) error) error {
	for i := 0; i < 256; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		sub := filepath.Join(s.dir, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(sub)
		if err != nil {
			return fmt.Errorf("list blocks in %q: %w", sub, err)
		}
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() || !ValidHash(name) || name[:2] != filepath.Base(sub) {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since the listing
			}
			if err != nil {
				return fmt.Errorf("stat block %q: %w", name, err)
			}
			if err := fn(name, info); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir makes the directory's entries (a rename into it) durable.
func syncDir(dir string) error { return dirsync.SyncPath(os.Open, dir) }
