// Package scan builds the Local tree of a folder from disk, re-hashing a file only when
// its stat key (size, mtime, inode, mode) differs from the index cache's record.
package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// dirEntry is one entry of a directory with its stat key.
type dirEntry struct {
	name  string
	isDir bool
	st    trees.IndexEntry
	ok    bool  // st is of a type that syncs
	err   error // of the lstat
	// lazy marks a new regular file that was not stat'ed (readDir): st holds its type
	// and inode number only.
	lazy bool
}

// TempPrefix starts the name of every temp file the agent writes; such files are never
// synced.
const TempPrefix = ".syncfolder-tmp-"

// Update is one change to the index cache that a scan made.
type Update struct {
	Path string
	// Deleted is true when Path left the index; Entry and Blocks are then empty.
	Deleted bool
	Entry   trees.IndexEntry
	Blocks  []proto.Block
	// Sums is what hashing learnt beside Blocks (chunk.Sums), or empty.
	chunk.Sums
}

// Upload is where a file's blocks go while it is hashed (Scanner.Preupload).
type Upload struct {
	// Each takes every block, in order, as the chunker yields it (its bytes valid only
	// during the call unless held); nil takes none.
	Each chunk.BlockFunc
	// Wait waits until every block handed to Each is sent or given up; hashing calls it
	// before it returns, and before Sum. It may be called more than once. Nil waits for
	// nothing.
	Wait func()
	// Sum, when not nil, asks the server for the SHA-256 of the content of blocks, the
	// file's whole list, which it hashed from the blocks Each sent; ok is false when it
	// cannot tell. It is called after Wait. With it, the rescan of an edited file leaves
	// the whole content's SHA-256 to the server (chunk.RehashBlocks) and takes it itself
	// only when the server could not tell.
	Sum func(ctx context.Context, blocks []proto.Block) (sha256 string, ok bool)
}

// Scanner reads one folder through an os.Root, so no symlink leads it outside.
type Scanner struct {
	Root *os.Root
	// Ignore reports whether a path is excluded (user patterns); built-in exclusions
	// (Skip) apply as well. Nil ignores nothing more.
	Ignore func(rel string, isDir bool) bool
	// Skip names top-level entries never synced, such as the state dir.
	Skip map[string]bool
	// Workers hash files in parallel; 0 means GOMAXPROCS.
	Workers int
	// Blocks returns the indexed block list of a path and the sums kept with it, nil when
	// the index has none (state.DB.LocalBlockSums); with it, a renamed file is recognised
	// by its stat key and not hashed again, and an edited large file is cut against its
	// indexed blocks (chunk.Rehash). Nil turns both off.
	Blocks func(path string) ([]proto.Block, chunk.Sums, error)
	// Preupload, when set, is asked, for each file hashed, what to hand its blocks to
	// as the chunker yields them (execute.Preupload.File: large files are uploaded
	// while they are indexed). indexed is the block list the index holds for the path
	// (from Blocks; nil when none or not looked up).
	Preupload func(ctx context.Context, path string, size int64, indexed []proto.Block) Upload
	// Record, when set, takes the updates of the files a scan hashes as each slice of
	// hashSlice files is done (the agent persists them), and Full and Paths return only
	// the other updates: a batch of 100,000 new files then never holds all of its
	// updates and block lists at once. An error of Record ends the scan.
	Record func(ctx context.Context, ups []Update) error
	// Unreadable, when set, hears of a dir or entry a scan could not read (a dir of
	// another user in a shared volume, an I/O error): what the trees hold of it and
	// below it is kept as last seen, never taken for deleted, and the scan goes on with
	// the rest of the folder.
	Unreadable func(path string, err error)

	// RacyWindow, when set, is how long before a read a file's mtime must lie for its
	// stat key to vouch for what was read (see racy.go); 0 where timestamps are fine
	// (CoarseTimestamps).
	RacyWindow time.Duration

	racyMu sync.Mutex
	racy   map[string]int64 // see noteRacy
}

// unreadable tells s.Unreadable of p.
func (s *Scanner) unreadable(p string, err error) {
	if s.Unreadable != nil {
		s.Unreadable(p, err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readFailed reports whether err, from reading p's dir or entry, leaves p's last state
// standing: anything but p being gone, or a file where a dir was.
func readFailed(err error) bool {
	return err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR)
}

// renameMinSize is the size from which a new path is matched against indexed files that
// left their path (a rename) before being hashed: below it, hashing is cheaper than the
// lookup.
const renameMinSize = 1 << 20

// rehashMinSize is the size from which a file is cut against the blocks the index holds
// for its path (chunk.Rehash); below it, the lookup is not worth it.
const rehashMinSize = 1 << 20

// renames finds, for a file that appeared under a new name, the index entry it had under
// its old one: same inode, size, mtime and mode, and the old path no longer holds it.
type renames struct {
	byIno   map[uint64][]string // built on first use
	removed map[string]trees.IndexEntry
}

func (s *Scanner) findRename(r *renames, l *trees.Trees, j *job) (*Update, bool) {
	if s.Blocks == nil || j.size < renameMinSize {
		return nil, false
	}
	if r.byIno == nil {
		r.byIno = map[uint64][]string{}
		for p, e := range l.Index.All() {
			if e.Type == proto.TypeFile && e.Size >= renameMinSize {
				r.byIno[e.Ino] = append(r.byIno[e.Ino], p)
			}
		}
	}
	try := func(old string, e trees.IndexEntry) (*Update, bool) {
		if old == j.path || e.SHA256.IsZero() || !SameStat(e, j.stat()) {
			return nil, false
		}
		if fi, err := s.Root.Lstat(old); err == nil {
			if st, ok := Stat(fi); ok && st.Ino == e.Ino {
				return nil, false // the old path still holds the file: a hard link
			}
		}
		blocks, sums, err := s.Blocks(old)
		if err != nil || len(blocks) == 0 {
			return nil, false
		}
		var sum int64
		for _, b := range blocks {
			sum += b.Size
		}
		if sum != e.Size {
			return nil, false
		}
		return &Update{Path: j.path, Entry: e, Blocks: blocks, Sums: sums}, true
	}
	for _, old := range r.byIno[j.ino] {
		if e, ok := l.Index.Get(old); ok {
			if u, ok := try(old, e); ok {
				return u, true
			}
		}
	}
	for old, e := range r.removed {
		if u, ok := try(old, e); ok {
			return u, true
		}
	}
	return nil, false
}

func (s *Scanner) ignored(rel string, isDir bool) bool {
	if strings.HasPrefix(path.Base(rel), TempPrefix) || s.Skipped(rel) {
		return true
	}
	if _, err := proto.CleanPath(rel); err != nil {
		return true // a name the protocol cannot carry (e.g. a control character)
	}
	return s.Ignore != nil && s.Ignore(rel, isDir)
}

// Skipped reports whether rel is, or is inside, one of the Skip entries.
func (s *Scanner) Skipped(rel string) bool {
	if len(s.Skip) == 0 {
		return false
	}
	if len(s.Skip) == 1 { // the usual case (the state dir): one comparison, no hashing
		for k, on := range s.Skip {
			return on && strings.HasPrefix(rel, k) && (len(rel) == len(k) || k != "" && rel[len(k)] == '/')
		}
	}
	// rel and each of its parents: the prefixes of rel that end before a slash.
	for i := len(rel); i > 0; i = strings.LastIndexByte(rel[:i], '/') {
		if s.Skip[rel[:i]] {
			return true
		}
	}
	return false
}

// Stat is the stat key of one path, as the index cache records it.
func Stat(fi fs.FileInfo) (trees.IndexEntry, bool) {
	e := trees.IndexEntry{Mode: uint32(fi.Mode().Perm())}
	e.Ino = inode(fi)
	switch {
	case fi.Mode().IsRegular():
		e.Type, e.Size, e.MTimeNs = proto.TypeFile, fi.Size(), fi.ModTime().UnixNano()
	case fi.IsDir():
		// A dir's mtime moves with every child; it is not part of its identity.
		e.Type = proto.TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type, e.MTimeNs = proto.TypeSymlink, fi.ModTime().UnixNano()
		e.Mode = 0o777
	default:
		return e, false // sockets, pipes, devices: not synced
	}
	return e, true
}

// HasStat reports whether fi has the stat key st.
func HasStat(fi fs.FileInfo, st trees.IndexEntry) bool {
	got, ok := Stat(fi)
	return ok && SameStat(got, st)
}

// SameStat reports whether a and b have the same stat key.
func SameStat(a, b trees.IndexEntry) bool {
	return a.Type == b.Type && a.Size == b.Size && a.MTimeNs == b.MTimeNs && a.Ino == b.Ino && a.Mode == b.Mode
}

// job is one file to hash: its path and the stat key it is to keep while it is read.
// It holds the key's fields, not a trees.IndexEntry (its hash and link target are
// always empty here): a first scan of 100,000 files holds a job for each until they
// are hashed, at 48 bytes each instead of 120.
type job struct {
	path          string
	size, mtimeNs int64
	ino           uint64
	mode          uint32
	// lazy: only the inode number is known (the listing gave it), and hashOne takes the
	// stat key from the open file.
	lazy bool
}

// newJob is the job of the regular file p with the stat key st.
func newJob(p string, st trees.IndexEntry, lazy bool) job {
	return job{path: p, size: st.Size, mtimeNs: st.MTimeNs, ino: st.Ino, mode: st.Mode, lazy: lazy}
}

// stat is the job's stat key.
func (j *job) stat() trees.IndexEntry {
	return trees.IndexEntry{Type: proto.TypeFile, Size: j.size, MTimeNs: j.mtimeNs, Ino: j.ino, Mode: j.mode}
}

// jobList holds the jobs of a walk in pieces of up to hashSlice, hashed (Scanner.hash)
// and let go one piece at a time: in one slice, a first scan's 100,000 jobs grew by
// copies (the old and the new array live at once) and stayed whole until the last one
// was hashed, the agent's peak of memory.
type jobList struct{ pieces [][]job }

// add appends j, unless it is no job (no path: settled without a hash).
func (l *jobList) add(j job) {
	if j.path == "" {
		return
	}
	n := len(l.pieces)
	if n == 0 || len(l.pieces[n-1]) >= hashSlice {
		l.pieces = append(l.pieces, nil)
		n++
	}
	l.pieces[n-1] = append(l.pieces[n-1], j)
}

// Sweep receives what a full scan passes over that the agent may have to clean up: every
// entry whose name starts with TempPrefix (Temp), and every other dir the scan does not
// enter because it is ignored (IgnoredDir; its content is not read). Nothing under Skip
// is reported.
type Sweep struct {
	Temp       func(rel string, isDir bool)
	IgnoredDir func(rel string)
}

// Full rescans the whole folder. It returns the index updates to persist (without those
// handed to Record).
func (s *Scanner) Full(ctx context.Context, l *trees.Trees) ([]Update, error) {
	return s.FullSweep(ctx, l, nil)
}

// FullSweep is Full that also reports to sw (when not nil) what it passes over, so that
// one walk both scans and finds leftover temp files.
func (s *Scanner) FullSweep(ctx context.Context, l *trees.Trees, sw *Sweep) ([]Update, error) {
	return s.FullSweepAhead(ctx, l, sw, nil)
}

// FullSweepAhead is FullSweep that takes the dirs' listings from ahead (ListAhead) while
// they are the dirs it walks, and stops ahead when done. A nil ahead lists every dir.
func (s *Scanner) FullSweepAhead(ctx context.Context, l *trees.Trees, sw *Sweep, ahead *Ahead) ([]Update, error) {
	defer ahead.Stop()
	// The paths the walk settles, in order; and how many of them the Local tree and the
	// index held before. The walk settles each path once and changes no other path's
	// entry, so when the counts equal the maps' sizes every entry was seen and nothing
	// is to be dropped: an unchanged folder needs no set of the seen paths.
	seen := make([]string, 0, l.Local.Len())
	treeBefore, indexBefore := l.Local.Len(), l.Index.Len()
	var inTree, inIndex int
	var jobs jobList
	var ups []Update
	// walk visits dir's entries in name order, each before its content, with the stat
	// key readDir took: one system call per entry, not a walk of the path from the root.
	// newDir says that the index held no entry for dir before this walk.
	// keepBelow counts what the trees hold below dir as seen, as it was: dir could not be
	// read, and nothing is taken for deleted on a read error.
	keepBelow := func(dir string) {
		prefix := dir + "/"
		for p := range l.Local.All() {
			if strings.HasPrefix(p, prefix) {
				seen = append(seen, p)
				inTree++
				if _, ok := l.Index.Get(p); ok {
					inIndex++
				}
			}
		}
		for p := range l.Index.All() {
			if _, ok := l.Local.Get(p); !ok && strings.HasPrefix(p, prefix) {
				seen = append(seen, p)
				inIndex++
			}
		}
	}
	var walk func(dir string, newDir bool) error
	walk = func(dir string, newDir bool) error {
		var entries []dirEntry
		var err error
		if ls, ok := ahead.take(dir); ok {
			entries, err = ls.entries, ls.err
		} else {
			entries, err = s.readDir(dir, newDir)
		}
		if err != nil {
			if dir == "." {
				return err
			}
			if readFailed(err) {
				s.unreadable(dir, err)
				keepBelow(dir)
				return nil
			}
			return nil // vanished (or a file now) while walking; the watcher or next scan sees it
		}
		for _, e := range entries {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p := join(dir, e.name)
			if s.ignored(p, e.isDir) {
				if sw != nil && !s.Skipped(p) {
					if strings.HasPrefix(e.name, TempPrefix) {
						sw.Temp(p, e.isDir)
					} else if e.isDir {
						sw.IgnoredDir(p)
					}
				}
				continue
			}
			_, wasTree := l.Local.Get(p)
			_, wasIndex := l.Index.Get(p)
			j, up, ok, err := s.settleEntry(p, e, l)
			if err != nil {
				// Its stat failed (settle takes a vanished entry for gone): p and what
				// lies below it stay as last seen.
				s.unreadable(p, err)
				if wasTree || wasIndex {
					seen = append(seen, p)
					inTree += b2i(wasTree)
					inIndex += b2i(wasIndex)
				}
				keepBelow(p)
				continue
			}
			if ok {
				seen = append(seen, p)
				if wasTree {
					inTree++
				}
				if wasIndex {
					inIndex++
				}
				if up != nil {
					ups = append(ups, *up)
				}
				jobs.add(j)
			}
			if e.isDir && ok {
				if err := walk(p, !wasIndex); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(".", l.Index.Len() == 0)
	if err != nil {
		return nil, err
	}
	removed := map[string]trees.IndexEntry{}
	if inTree != treeBefore || inIndex != indexBefore {
		set := make(map[string]bool, len(seen))
		for _, p := range seen {
			set[p] = true
		}
		for p := range l.Local.All() {
			if !set[p] {
				l.Local.Delete(p)
			}
		}
		for p, e := range l.Index.All() {
			if !set[p] {
				removed[p] = e
				l.Index.Delete(p)
				s.forgetRacy(p)
				ups = append(ups, Update{Path: p, Deleted: true})
			}
		}
	}
	hashed, err := s.hash(ctx, &jobs, l, &renames{removed: removed})
	return append(ups, hashed...), err
}

// visit stats p and either settles it from the index cache or returns a hash job (a
// job without a path: none).
func (s *Scanner) visit(p string, l *trees.Trees) (job, *Update, bool, error) {
	fi, err := s.Root.Lstat(p)
	var st trees.IndexEntry
	ok := false
	if err == nil {
		st, ok = Stat(fi)
	}
	return s.settle(p, st, ok, err, l)
}

// settleEntry is settle of p, listed as e: a lazy entry (readDir) becomes a hash job as
// it is, unless the index holds p (a new dir may hold paths the index kept from an
// earlier one of its name), when p is stat'ed after all.
func (s *Scanner) settleEntry(p string, e dirEntry, l *trees.Trees) (job, *Update, bool, error) {
	if e.lazy {
		if _, ok := l.Index.Get(p); !ok {
			return newJob(p, e.st, true), nil, true, nil
		}
		fi, err := s.Root.Lstat(p)
		e.st, e.ok, e.err = trees.IndexEntry{}, false, err
		if err == nil {
			e.st, e.ok = Stat(fi)
		}
	}
	return s.settle(p, e.st, e.ok, e.err, l)
}

// settle files p, whose lstat gave the stat key st (ok: a type that syncs) or the error
// statErr, from the index cache, or returns a hash job.
func (s *Scanner) settle(p string, st trees.IndexEntry, ok bool, statErr error, l *trees.Trees) (job, *Update, bool, error) {
	if errors.Is(statErr, fs.ErrNotExist) {
		return job{}, nil, false, nil
	}
	if statErr != nil {
		return job{}, nil, false, fmt.Errorf("stat %q: %w", p, statErr)
	}
	if !ok {
		return job{}, nil, false, nil
	}
	if old, ok := l.Index.Get(p); ok && SameStat(old, st) && !s.isRacy(p, st.MTimeNs) {
		// A scan mostly finds the Local tree as it was: no store then.
		if n, had := l.Local.Get(p); !had || n != old.Node() {
			l.Local.Set(p, old.Node())
		}
		return job{}, nil, true, nil
	}
	switch st.Type {
	case proto.TypeFile:
		return newJob(p, st, false), nil, true, nil
	case proto.TypeSymlink:
		target, err := s.Root.Readlink(p)
		if err != nil {
			return job{}, nil, false, nil //nolint:nilerr // replaced while scanning: the next scan sees it
		}
		st.Target = target
	}
	l.Index.Set(p, st)
	l.Local.Set(p, st.Node())
	return job{}, &Update{Path: p, Entry: st}, true, nil
}

// hash hashes the jobs' files, renamed ones found first (findRename), one piece of
// jobs at a time, each let go once hashed (and recorded, with Scanner.Record).
func (s *Scanner) hash(ctx context.Context, jobs *jobList, l *trees.Trees, r *renames) ([]Update, error) {
	var ups []Update
	for i, piece := range jobs.pieces {
		rest := piece[:0]
		for k := range piece {
			if u, ok := s.findRename(r, l, &piece[k]); ok {
				ups = append(ups, *u)
			} else {
				rest = append(rest, piece[k])
			}
		}
		jobs.pieces[i] = rest
	}
	s.setRenamed(ups, l)
	for i, piece := range jobs.pieces {
		jobs.pieces[i] = nil
		if len(piece) == 0 {
			continue
		}
		hashed, err := s.hashSome(ctx, piece, l, r)
		if err != nil {
			return nil, err
		}
		if s.Record != nil {
			err = s.Record(ctx, hashed)
		} else {
			ups = append(ups, hashed...)
		}
		if err != nil {
			return nil, err
		}
	}
	return ups, nil
}

// setRenamed puts the files that findRename found in the Local tree and the index.
func (s *Scanner) setRenamed(ups []Update, l *trees.Trees) {
	for _, u := range ups {
		l.Index.Set(u.Path, u.Entry)
		l.Local.Set(u.Path, u.Entry.Node())
	}
}

// hashSome hashes jobs (hashAll). A lazy job that turned out large enough to be a
// renamed file comes back unhashed with its stat key, and is looked for among renames
// (findRename) before it is hashed.
func (s *Scanner) hashSome(ctx context.Context, jobs []job, l *trees.Trees, r *renames) ([]Update, error) {
	ups, again, err := s.hashAll(ctx, jobs, l)
	if err != nil || len(again) == 0 {
		return ups, err
	}
	rest := again[:0]
	var renamed []Update
	for _, j := range again {
		if u, ok := s.findRename(r, l, &j); ok {
			renamed = append(renamed, *u)
		} else {
			rest = append(rest, j)
		}
	}
	s.setRenamed(renamed, l)
	hashed, _, err := s.hashAll(ctx, rest, l)
	if err != nil {
		return nil, err
	}
	return append(append(ups, renamed...), hashed...), nil
}

// hashSlice is the number of files hashed (and, with Scanner.Record, recorded) at a time.
const hashSlice = 4096

// hashAll hashes the files of jobs in parallel and puts them in the Local tree and the
// index. again are the lazy jobs that may be renamed files (hashOne), not hashed.
func (s *Scanner) hashAll(ctx context.Context, jobs []job, l *trees.Trees) (ups []Update, again []job, err error) {
	workers := s.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	results := make([]*Update, len(jobs))
	dirs := dircache.New(s.Root)
	defer dirs.Close()
	var wg sync.WaitGroup
	// Each worker takes the next job by a shared count: fed through a channel one job
	// at a time, each small file cost a hand-off between goroutines, and W1's scan of
	// 10,000 new files took a fifth longer (docs/benchmarks.md).
	var next atomic.Int64
	for range min(workers, len(jobs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				// A job handed back is written over in place: each index is one worker's.
				results[i] = s.hashOne(ctx, dirs, &jobs[i])
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	ups = make([]Update, 0, len(jobs))
	for i, u := range results {
		switch {
		case u == &renameFirst:
			again = append(again, jobs[i])
		case u != nil:
			ups = append(ups, *u)
			l.Index.Set(u.Path, u.Entry)
			l.Local.Set(u.Path, u.Entry.Node())
		}
	}
	return ups, again, nil
}

// renameFirst is what hashOne returns for a lazy job that may be a renamed file: its
// stat key is filled in and it is not hashed.
var renameFirst Update

// hashOne hashes a file and keeps the result only if the file did not change while it
// was read (same stat key before and after); otherwise the next scan tries again.
func (s *Scanner) hashOne(ctx context.Context, dirs *dircache.Cache, jp *job) *Update {
	// O_NONBLOCK, and the open file's stat key checked before reading: a fifo put at the
	// path since its lstat must block neither the open nor a read.
	f, err := dirs.OpenFile(jp.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if jp.lazy {
		// Listed as a new file and not stat'ed: its stat key is the open file's. One the
		// size of a renamed file goes back to be matched first (findRename).
		st, ok := Stat(fi)
		if !ok || st.Type != proto.TypeFile {
			return nil
		}
		*jp = newJob(jp.path, st, false)
		if s.Blocks != nil && st.Size >= renameMinSize {
			return &renameFirst
		}
	} else if !HasStat(fi, jp.stat()) {
		return nil
	}
	j := *jp
	// A large file the index holds is cut against its indexed blocks: an edit runs the
	// chunker only around the change. Without them (a lookup failed: the chunker's work
	// is all it costs) it is cut afresh.
	var prev []proto.Block
	var sums chunk.Sums
	if s.Blocks != nil && j.size >= rehashMinSize {
		prev, sums, _ = s.Blocks(j.path)
	}
	var up Upload
	if s.Preupload != nil {
		up = s.Preupload(ctx, j.path, j.size, prev)
	}
	if up.Wait != nil {
		defer up.Wait()
	}
	var res chunk.Result
	readStart := time.Now()
	switch {
	case len(prev) > 1 && up.Sum != nil:
		res, err = sumOnServer(ctx, f, up,
			func(r io.Reader) (chunk.Result, error) { return chunk.RehashBlocks(r, prev, sums, up.Each) },
			func(r io.Reader) (chunk.Result, error) { return chunk.Rehash(r, prev, sums, nil) })
	case len(prev) > 1:
		res, err = chunk.Rehash(f, prev, sums, up.Each)
	case up.Sum != nil:
		res, err = sumOnServer(ctx, f, up,
			func(r io.Reader) (chunk.Result, error) { return chunk.HashBlocks(r, up.Each) },
			func(r io.Reader) (chunk.Result, error) { return chunk.Hash(r, nil) })
	default:
		res, err = chunk.Hash(f, up.Each)
	}
	if err != nil {
		return nil
	}
	// The stat key after is the open file's: the content hashed is that inode's, and a
	// file renamed over the path since has another inode, which the next scan sees.
	fi, err = f.Stat()
	if err != nil || !HasStat(fi, j.stat()) || res.Size != j.size {
		return nil
	}
	e := j.stat()
	e.SHA256 = res.Sum
	s.noteRacy(j.path, e.MTimeNs, readStart)
	return &Update{Path: j.path, Entry: e, Blocks: res.Blocks, Sums: res.Sums}
}

// sumOnServer cuts f into blocks without taking its whole SHA-256 (cut: chunk.HashBlocks
// or chunk.RehashBlocks), and asks the server for it (Upload.Sum) once every block is
// sent (Upload.Wait, which Preupload gives with Sum). When the server cannot tell (an older server, a block not sent), f is
// read again from its start and hashed here (full: chunk.Hash or chunk.Rehash).
func sumOnServer(ctx context.Context, f io.ReadSeeker, up Upload, cut, full func(io.Reader) (chunk.Result, error)) (chunk.Result, error) {
	res, err := cut(f)
	if err != nil || res.SHA256 != "" {
		return res, err // a content of one block: its hash is the block's
	}
	up.Wait()
	if sum, ok := up.Sum(ctx, res.Blocks); ok {
		if res.Sum, ok = proto.DecodeHash(sum); ok {
			res.SHA256 = sum
			return res, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return chunk.Result{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return chunk.Result{}, err
	}
	return full(f)
}
