// Package watch reports, in debounced batches, which paths of a folder tree changed on
// disk. It watches every directory of the tree with fsnotify (inotify has no recursive
// watch), adds directories as they appear and scans them at once, since files created in
// a new directory before its watch was in place would otherwise go unseen. When events
// were lost (the kernel queue overflowed, or a watch could not be added), it asks for a
// full rescan instead of guessing.
package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet time after the last event before a batch goes out.
const DefaultDebounce = 50 * time.Millisecond

// maxDelayFactor caps how long a steady stream of events can hold a batch back, in
// units of the debounce: a file written continuously still shows up.
const maxDelayFactor = 10

// Options tune a Watcher.
type Options struct {
	// Debounce is the quiet time before a batch is sent; 0 means DefaultDebounce.
	Debounce time.Duration
	// Ignore reports whether a slash-separated path relative to the root is left out
	// (ignored dirs are not watched). It is called from the watcher's goroutine, and
	// may change its answer over time (a reloaded .syncignore). Nil ignores nothing.
	Ignore func(relPath string, isDir bool) bool
	// Logger receives the watcher's warnings; nil means slog.Default().
	Logger *slog.Logger
}

// Batch is one debounced set of changes.
type Batch struct {
	// Paths are the changed paths, slash-separated, relative to the root, sorted and
	// unique. A path may name something that no longer exists (it was deleted) or a
	// dir, which the receiver rescans with everything below it: a dir created or moved
	// in is reported without its content (a tree of 100,000 files moved in is one path,
	// not 100,000 held by the watcher and the receiver at once), and many changes under
	// one dir may be reported as the dir (see collapseAbove).
	Paths []string
	// Full means that events were lost: the receiver must rescan the whole tree.
	Full bool
}

// Watcher watches one folder tree. Its methods are safe for concurrent use.
type Watcher struct {
	root    string
	opts    Options
	fsw     *fsnotify.Watcher
	batches chan Batch
	done    chan struct{}
	stopped chan struct{}

	mu      sync.Mutex
	watched map[string]bool // absolute dirs with a watch
	closed  bool
}

// New starts watching root and every directory below it that is not ignored.
func New(root string, opts Options) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Ignore == nil {
		opts.Ignore = func(string, bool) bool { return false }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watch %q: %w", root, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("watch %q: %w", root, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("watch %q: not a directory", root)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %q: %w", root, err)
	}
	w := &Watcher{
		root:    abs,
		opts:    opts,
		fsw:     fsw,
		batches: make(chan Batch),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		watched: map[string]bool{},
	}
	if err := w.addTree(abs); err != nil {
		fsw.Close()
		return nil, err
	}
	go w.loop()
	return w, nil
}

// Batches delivers the debounced batches. It is closed by Close. Events keep
// accumulating while the receiver is busy, so a slow receiver gets bigger batches,
// never stale ones.
func (w *Watcher) Batches() <-chan Batch { return w.batches }

// Close stops the watcher and closes Batches.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.done)
	err := w.fsw.Close()
	<-w.stopped
	return err
}

// pending is the batch being gathered.
type pending struct {
	paths map[string]bool
	// collapseAt is the size at which the next collapse runs: collapseAbove, or twice
	// what the last one left when it could not get under collapseAbove/2.
	collapseAt int
	full       bool
	first      time.Time // when the oldest unsent change came in
	dirty      bool      // changed since the last batch() snapshot
}

func (p *pending) empty() bool { return len(p.paths) == 0 && !p.full }

func (p *pending) add(rel string, now time.Time) {
	if p.empty() {
		p.first = now
	}
	if p.paths[rel] || p.covered(rel) {
		return
	}
	// A copy, not a part of the event's absolute name: the set may hold many.
	p.paths[strings.Clone(rel)] = true
	p.dirty = true
	if len(p.paths) > max(p.collapseAt, collapseAbove) {
		p.collapse()
		p.collapseAt = 2 * len(p.paths)
	}
}

// collapseAbove is the number of pending paths above which paths that share a parent
// dir are replaced by it. The receiver rescans a reported dir with everything below
// it, so the dir stands for them: an agent landing 100,000 files while its loop is busy
// held one path per file (5–7 MB), then rescanned each on its own.
const collapseAbove = 4096

// collapseMinChildren is how many pending paths under one dir make collapse report the
// dir instead (a dir with fewer is not worth rescanning whole).
const collapseMinChildren = 8

// covered reports whether an ancestor dir of rel is pending: its rescan covers rel.
func (p *pending) covered(rel string) bool {
	if len(p.paths) == 0 {
		return false
	}
	for i := strings.LastIndexByte(rel, '/'); i > 0; i = strings.LastIndexByte(rel, '/') {
		rel = rel[:i]
		if p.paths[rel] {
			return true
		}
	}
	return false
}

// collapse replaces the pending paths of each dir that has collapseMinChildren or more
// of them by the dir, one level at a time, until at most collapseAbove/2 paths are
// left or no dir has that many.
func (p *pending) collapse() {
	for len(p.paths) > collapseAbove/2 {
		children := map[string]int{}
		for q := range p.paths {
			if i := strings.LastIndexByte(q, '/'); i > 0 {
				children[q[:i]]++
			}
		}
		merged := false
		for q := range p.paths {
			if i := strings.LastIndexByte(q, '/'); i > 0 && children[q[:i]] >= collapseMinChildren {
				delete(p.paths, q)
				p.paths[q[:i]] = true
				merged = true
			}
		}
		if !merged {
			break
		}
		// A dir added above may be under another one that is pending.
		for q := range p.paths {
			if p.covered(q) {
				delete(p.paths, q)
			}
		}
		p.dirty = true
	}
}

// sent drops what the receiver took; paths that came in after b was built stay.
func (p *pending) sent(b Batch) {
	for _, q := range b.Paths {
		delete(p.paths, q)
	}
	if len(p.paths) == 0 {
		p.paths = map[string]bool{} // a map keeps its largest size; a burst's must go
		p.collapseAt = 0
	}
	if b.Full {
		p.full = false
	}
}

func (p *pending) batch() Batch {
	b := Batch{Full: p.full, Paths: make([]string, 0, len(p.paths))}
	for q := range p.paths {
		b.Paths = append(b.Paths, q)
	}
	sort.Strings(b.Paths)
	return b
}

func (w *Watcher) loop() {
	defer close(w.stopped)
	defer close(w.batches)
	p := &pending{paths: map[string]bool{}}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	ready := false
	arm := func(now time.Time) {
		ready = false
		wait := w.opts.Debounce
		if limit := p.first.Add(maxDelayFactor * w.opts.Debounce); now.Add(wait).After(limit) {
			wait = max(limit.Sub(now), 0)
		}
		timer.Reset(wait)
	}
	// offer is the batch waiting for the receiver. Rebuilding (and sorting) it on every
	// event while a busy receiver lets it wait cost O(n² log n) for n new paths (10,000
	// files written during one agent pass spent most of the agent's CPU here), so it is
	// rebuilt only when the pending set doubled or a debounce passed; what came in since
	// stays pending for the next batch.
	var offer Batch
	var builtAt time.Time
	for {
		var out chan Batch // nil, so the send case sleeps, until a batch is due
		if ready && !p.empty() {
			now := time.Now()
			if p.dirty && (len(offer.Paths) == 0 && !offer.Full || len(p.paths) >= 2*len(offer.Paths) || now.Sub(builtAt) >= w.opts.Debounce) {
				offer, builtAt, p.dirty = p.batch(), now, false
			}
			out = w.batches
		}
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			now := time.Now()
			if w.handle(ev, p, now) {
				arm(now)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.opts.Logger.Warn("file watcher overflowed; rescanning everything", "root", w.root)
			} else {
				w.opts.Logger.Warn("file watcher failed; rescanning everything", "root", w.root, "err", err)
			}
			now := time.Now()
			if p.empty() {
				p.first = now
			}
			p.full, p.dirty = true, true
			arm(now)
		case <-timer.C:
			ready = true
		case out <- offer:
			p.sent(offer)
			offer, ready = Batch{}, false
			if !p.empty() {
				now := time.Now()
				p.first, p.dirty = now, true
				arm(now)
			}
		}
	}
}

// handle records one fsnotify event; it reports whether anything was recorded.
func (w *Watcher) handle(ev fsnotify.Event, p *pending, now time.Time) bool {
	rel, ok := w.rel(ev.Name)
	if !ok {
		return false
	}
	// A path ignored whatever its type needs no stat: an agent's own temp files make
	// most of the events while it downloads.
	if w.opts.Ignore(rel, false) && w.opts.Ignore(rel, true) {
		return false
	}
	fi, statErr := os.Lstat(ev.Name)
	isDir := statErr == nil && fi.IsDir()
	if w.opts.Ignore(rel, isDir) {
		return false
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// A dir moved away keeps its watches under the old names; drop them, and the
		// new name arrives as a Create in its new parent.
		w.forget(ev.Name)
	}
	p.add(rel, now)
	if isDir && ev.Has(fsnotify.Create) {
		if err := w.addTree(ev.Name); err != nil {
			w.opts.Logger.Warn("cannot watch a new directory; rescanning everything", "path", rel, "err", err)
			p.full = true
		}
	}
	return true
}

// addTree watches dir and every directory below it. Content that predates the watch
// is not reported: dir itself is, and its receiver rescans it with its subtree. A
// directory that vanishes while being walked is not an error: its removal is an event
// of its own.
func (w *Watcher) addTree(dir string) error {
	var firstErr error
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if firstErr == nil {
				firstErr = err
			}
			return nil
		}
		rel, ok := w.rel(p)
		if ok && w.opts.Ignore(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if err := w.watch(p); err != nil && !errors.Is(err, fs.ErrNotExist) && firstErr == nil {
			firstErr = fmt.Errorf("watch %q: %w", p, err)
		}
		return nil
	})
	if err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func (w *Watcher) watch(dir string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.watched[dir] {
		return nil
	}
	if err := w.fsw.Add(dir); err != nil {
		return err
	}
	w.watched[dir] = true
	return nil
}

// forget drops the watches of abs and of every dir below it.
func (w *Watcher) forget(abs string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range w.watched {
		if d == abs || strings.HasPrefix(d, abs+string(filepath.Separator)) {
			delete(w.watched, d)
			if !w.closed {
				_ = w.fsw.Remove(d) // gone already when the kernel dropped it: fine
			}
		}
	}
}

// rel turns an absolute event path into a slash-separated path relative to the root;
// false for the root itself and anything outside it.
func (w *Watcher) rel(abs string) (string, bool) {
	r, err := filepath.Rel(w.root, abs)
	if err != nil || r == "." || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(r), true
}
