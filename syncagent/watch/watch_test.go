package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/syncedfolder/synced-folder/syncagent/ignore"
)

func start(t *testing.T, root string, opts Options) *Watcher {
	t.Helper()
	w, err := New(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return w
}

// collect gathers batches until every wanted path has been seen (or a Full batch when
// wantFull), failing after a generous deadline.
func collect(t *testing.T, w *Watcher, wantFull bool, want ...string) (seen map[string]bool, batches int) {
	t.Helper()
	seen = map[string]bool{}
	full := false
	deadline := time.After(10 * time.Second)
	for {
		done := !wantFull || full
		for _, p := range want {
			done = done && seen[p]
		}
		if done {
			return seen, batches
		}
		select {
		case b, ok := <-w.Batches():
			if !ok {
				t.Fatal("batches closed")
			}
			batches++
			full = full || b.Full
			for _, p := range b.Paths {
				seen[p] = true
			}
		case <-deadline:
			t.Fatalf("timed out; seen %v full=%v, want %v full=%v", seen, full, want, wantFull)
		}
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReportsFilesInExistingAndNewDirs(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "old", "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := start(t, root, Options{})

	write(t, filepath.Join(root, "top.txt"), "1")
	write(t, filepath.Join(root, "old", "deep", "f.txt"), "2")
	collect(t, w, false, "top.txt", "old/deep/f.txt")

	// A new tree with content created faster than a watch can be added to it: the new
	// dir is reported, for its receiver to rescan with its subtree.
	if err := os.MkdirAll(filepath.Join(root, "new", "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "new", "a", "b", "early.txt"), "3")
	collect(t, w, false, "new")

	// ...and the new dirs are watched from then on.
	write(t, filepath.Join(root, "new", "a", "b", "late.txt"), "4")
	collect(t, w, false, "new/a/b/late.txt")

	if err := os.Remove(filepath.Join(root, "top.txt")); err != nil {
		t.Fatal(err)
	}
	collect(t, w, false, "top.txt")
}

func TestDirCreatedBeforeWatchWithContentIsRescanned(t *testing.T) {
	root := t.TempDir()
	w := start(t, root, Options{})
	// Build the tree elsewhere and move it in: one event for the whole subtree.
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, "tree", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(outside, "tree", "sub", "f.txt"), "x")
	if err := os.Rename(filepath.Join(outside, "tree"), filepath.Join(root, "tree")); err != nil {
		t.Fatal(err)
	}
	// The moved-in dir is one path: its content is its receiver's to rescan, not listed
	// (a tree of 100,000 files would be 100,000 paths held at once).
	seen, _ := collect(t, w, false, "tree")
	if seen["tree/sub"] || seen["tree/sub/f.txt"] {
		t.Errorf("the content of a dir moved in was listed: %v", seen)
	}
	write(t, filepath.Join(root, "tree", "sub", "g.txt"), "y")
	collect(t, w, false, "tree/sub/g.txt")
}

func TestRenamedDirReportsNewNames(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := start(t, root, Options{})
	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	collect(t, w, false, "a", "b")
	write(t, filepath.Join(root, "b", "sub", "f.txt"), "x")
	seen, _ := collect(t, w, false, "b/sub/f.txt")
	if seen["a/sub/f.txt"] {
		t.Errorf("a write under the new name was reported under the old one: %v", seen)
	}
}

func TestIgnoredPathsAreNotReported(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, ".syncfolder"), 0o755); err != nil {
		t.Fatal(err)
	}
	ignore := func(rel string, isDir bool) bool {
		return rel == ".syncfolder" || strings.HasPrefix(rel, ".syncfolder/") || strings.HasSuffix(rel, ".tmp")
	}
	w := start(t, root, Options{Ignore: ignore})
	write(t, filepath.Join(root, ".syncfolder", "state"), "s")
	write(t, filepath.Join(root, "x.tmp"), "t")
	write(t, filepath.Join(root, "real.txt"), "r")
	seen, _ := collect(t, w, false, "real.txt")
	// The ignored writes came first, so they would be in the same or earlier batches.
	for p := range seen {
		if ignore(p, false) {
			t.Errorf("ignored path %q reported", p)
		}
	}
}

func TestDebounceCoalescesBursts(t *testing.T) {
	root := t.TempDir()
	w := start(t, root, Options{Debounce: 100 * time.Millisecond})
	const writes = 200
	f, err := os.Create(filepath.Join(root, "busy.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range writes {
		if _, err := f.WriteString(strings.Repeat("x", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, batches := collect(t, w, false, "busy.log")
	if batches > writes/10 {
		t.Errorf("%d writes gave %d batches; debounce does not coalesce", writes, batches)
	}
}

// The kernel's event queue overflow cannot be provoked reliably without lowering a
// host-wide sysctl, so the error fsnotify would deliver is injected where fsnotify
// delivers it.
func TestOverflowAsksForFullRescan(t *testing.T) {
	root := t.TempDir()
	w := start(t, root, Options{})
	w.fsw.Errors <- fsnotify.ErrEventOverflow
	collect(t, w, true)
}

func TestNewRejectsMissingRootAndFiles(t *testing.T) {
	root := t.TempDir()
	if _, err := New(filepath.Join(root, "missing"), Options{}); err == nil {
		t.Error("New accepted a missing root")
	}
	write(t, filepath.Join(root, "file"), "x")
	if _, err := New(filepath.Join(root, "file"), Options{}); err == nil {
		t.Error("New accepted a file as root")
	}
}

func TestCloseClosesBatches(t *testing.T) {
	w, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Batches(); ok {
		t.Error("batch after Close")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSlowReceiverGetsEveryPath: paths that keep arriving while a batch waits for a busy
// receiver (the offered batch is rebuilt only now and then) all reach it, in sorted,
// duplicate-free batches.
func TestSlowReceiverGetsEveryPath(t *testing.T) {
	root := t.TempDir()
	w := start(t, root, Options{Debounce: 5 * time.Millisecond})
	const files = 2000
	var want []string
	for i := range files {
		name := fmt.Sprintf("f%04d", i)
		write(t, filepath.Join(root, name), "x")
		want = append(want, name)
		if i == files/2 {
			// The receiver takes one batch mid-stream, then is busy again.
			b := <-w.Batches()
			if len(b.Paths) == 0 {
				t.Fatal("first batch is empty")
			}
		}
	}
	seen, _ := collect(t, w, false, want[files/2+1:]...)
	for _, p := range want[files/2+1:] {
		if !seen[p] {
			t.Errorf("%s never reported", p)
		}
	}
	// Every batch is sorted and unique (collect does not check it; one more round does).
	write(t, filepath.Join(root, "b"), "x")
	write(t, filepath.Join(root, "a"), "x")
	for {
		b := <-w.Batches()
		if !sort.StringsAreSorted(b.Paths) || len(slices.Compact(slices.Clone(b.Paths))) != len(b.Paths) {
			t.Fatalf("batch not sorted and unique: %v", b.Paths)
		}
		if slices.Contains(b.Paths, "a") {
			break
		}
	}
}

// Many changes in a few dirs while the receiver is busy come as the dirs (which it
// rescans with their content), not one path per file; nothing is left uncovered.
func TestManyChangesCollapseToTheirDirs(t *testing.T) {
	root := t.TempDir()
	const dirs, perDir = 10, 500
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, "top", fmt.Sprintf("d%d", d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(root, "lone.txt"), "x")
	w := start(t, root, Options{})
	var files []string
	for i := range dirs * perDir {
		rel := fmt.Sprintf("top/d%d/f%04d", i%dirs, i)
		write(t, filepath.Join(root, filepath.FromSlash(rel)), "x")
		files = append(files, rel)
	}
	write(t, filepath.Join(root, "lone.txt"), "y")
	seen := map[string]bool{}
	covered := func(rel string) bool {
		for q := rel; ; {
			if seen[q] {
				return true
			}
			i := strings.LastIndexByte(q, '/')
			if i < 0 {
				return false
			}
			q = q[:i]
		}
	}
	deadline := time.After(20 * time.Second)
	for slices.ContainsFunc(files, func(f string) bool { return !covered(f) }) || !seen["lone.txt"] {
		select {
		case b := <-w.Batches():
			if b.Full {
				t.Fatal("the watcher overflowed") // 15,000 events fit the kernel's default queue of 16,384
			}
			for _, p := range b.Paths {
				seen[p] = true
			}
		case <-deadline:
			t.Fatalf("not every change came: %d paths seen", len(seen))
		}
	}
	if len(seen) > len(files)/2 {
		t.Errorf("%d paths for %d changed files in %d dirs; want the dirs", len(seen), len(files), dirs)
	}
}

// TestTempDirIsNotWatched: a dir whose name starts with the agent's temp prefix (the
// executor's staging dir), made before or after the watcher starts, gets no watch, and
// what is written in it is not reported; a file renamed out of it is, once.
func TestTempDirIsNotWatched(t *testing.T) {
	root := t.TempDir()
	m, err := ignore.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	early, late := filepath.Join(root, ignore.TempPrefix+"early"), filepath.Join(root, ignore.TempPrefix+"landing")
	if err := os.Mkdir(early, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := start(t, root, Options{Ignore: m.Match})
	if err := os.Mkdir(late, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{early, late} {
		write(t, filepath.Join(d, "staged"), "s")
		if err := os.Rename(filepath.Join(d, "staged"), filepath.Join(root, "sub", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"sub/0", "sub/1"}
	seen, _ := collect(t, w, false, want...)
	for p := range seen {
		if !slices.Contains(want, p) {
			t.Errorf("%q reported", p)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range w.watched {
		if strings.Contains(d, ignore.TempPrefix) {
			t.Errorf("%s is watched", d)
		}
	}
}
