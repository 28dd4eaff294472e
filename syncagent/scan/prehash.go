package scan

import (
	"context"
	"sync"

	"github.com/syncedfolder/synced-folder/syncagent/chunk"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Prehash holds small files hashed ahead of their scan (while the agent commits the
// files a scan found before them), each with the stat key it had while read. A scan takes
// a file's result only when the file's stat key is still the same: the rule the index
// cache itself relies on. Safe for concurrent use.
type Prehash struct {
	mu sync.Mutex
	m  map[string]prehashed
}

type prehashed struct {
	st     state.IndexEntry
	sha    string
	blocks []proto.Block
}

// take returns the result for path if it was hashed with the stat key st, and forgets it.
func (p *Prehash) take(path string, st state.IndexEntry) (prehashed, bool) {
	if p == nil {
		return prehashed{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.m[path]
	if ok {
		delete(p.m, path)
	}
	return h, ok && SameStat(h.st, st)
}

// Clear forgets every result.
func (p *Prehash) Clear() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.m = nil
	p.mu.Unlock()
}

// Len is the number of results held.
func (p *Prehash) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// Prehash hashes the regular files among paths of at most chunk.MinSize bytes (one
// block each; larger files keep the scan's path, which uploads them as it reads) into
// s.Prehashed, one file at a time, until ctx ends. It touches neither the Local tree
// nor the index cache, so it may run while the agent plans and executes.
func (s *Scanner) Prehash(ctx context.Context, paths []string) {
	p := s.Prehashed
	if p == nil {
		return
	}
	for _, rel := range paths {
		if ctx.Err() != nil {
			return
		}
		if s.ignored(rel, false) {
			continue
		}
		fi, err := s.Root.Lstat(rel)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > chunk.MinSize {
			continue
		}
		st, ok := Stat(fi)
		if !ok {
			continue
		}
		u := s.hashOne(ctx, job{path: rel, st: st}, true)
		if u == nil {
			continue
		}
		p.mu.Lock()
		if p.m == nil {
			p.m = map[string]prehashed{}
		}
		p.m[rel] = prehashed{st: u.Entry, sha: u.Entry.SHA256, blocks: u.Blocks}
		p.mu.Unlock()
	}
}
