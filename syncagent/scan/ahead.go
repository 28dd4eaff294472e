package scan

import "sync"

// Ahead lists a folder's dirs for a full scan before the scan starts, on a goroutine of
// its own and in the scan's order: an agent starting a --once pass lists the folder
// while it loads its trees. The scan takes each listing from it while the listings are
// of the very dirs it walks; at the first one that is not (the ignore patterns changed
// in between), it stops it and lists the rest itself. A listing made ahead is one made
// a moment earlier, which is all a scan's listing ever is.
type Ahead struct {
	items chan listing
	done  chan struct{}
	stop  sync.Once
	off   bool // FullSweep stopped taking listings from it
}

// listing is one dir's entries, or the error listing it.
type listing struct {
	dir     string
	entries []dirEntry
	err     error
}

// aheadDirs bounds the listings made ahead and not yet taken (about 13 KB for a dir of
// 100 files): a quarter of a 1,000-dir folder is listed while its trees load, and the
// listing then stays that far ahead of the scan. 1,024 (the whole folder listed at
// once) made a restarted agent over 100,000 files peak 3–4 MiB higher for no
// measurable time.
const aheadDirs = 256

// ListAhead starts listing the folder as a full scan walks it: the dirs that are not
// ignored (by the patterns in force now), depth first, each dir's entries in name order.
// Stop it when it is no longer wanted; FullSweepAhead stops it when it is done.
func (s *Scanner) ListAhead() *Ahead {
	a := &Ahead{items: make(chan listing, aheadDirs), done: make(chan struct{})}
	go func() {
		defer close(a.items)
		var walk func(dir string) bool
		walk = func(dir string) bool {
			entries, err := s.readDir(dir, false) // the trees may be loading meanwhile
			select {
			case a.items <- listing{dir: dir, entries: entries, err: err}:
			case <-a.done:
				return false
			}
			for _, e := range entries {
				p := join(dir, e.name)
				// The walk enters exactly these: a dir of a type that syncs, stat'ed
				// without error and not ignored (see FullSweepAhead).
				if e.isDir && e.ok && e.err == nil && !s.ignored(p, true) && !walk(p) {
					return false
				}
			}
			return true
		}
		walk(".")
	}()
	return a
}

// Stop ends the listing; what was listed and not taken is dropped.
func (a *Ahead) Stop() {
	if a != nil {
		a.stop.Do(func() { close(a.done) })
	}
}

// take returns the listing of dir when it is the next one made ahead; otherwise (none
// left, or another dir's: the walks went apart) it stops the listing and reports false
// for this and every later dir.
func (a *Ahead) take(dir string) (listing, bool) {
	if a == nil || a.off {
		return listing{}, false
	}
	if l, ok := <-a.items; ok && l.dir == dir {
		return l, true
	}
	a.off = true
	a.Stop()
	return listing{}, false
}

// join returns the path of name in dir ("." for the root).
func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
