package execute

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
)

// stagedTree uploads, through an agent on url, small files, one file of several blocks
// (not batched) and a symlink under top, and returns the files' contents.
func stagedTree(t *testing.T, url string, top ...string) map[string][]byte {
	t.Helper()
	up := newEnvOn(t, url)
	want := map[string][]byte{}
	for i, d := range top {
		for _, name := range []string{d + "/a.txt", d + "/sub/b.txt"} {
			want[name] = []byte(fmt.Sprintf("%s, file %d", name, i))
		}
		big := make([]byte, 700<<10)
		for j := range big {
			big[j] = byte(j*13 + j/5000 + i)
		}
		want[d+"/big.bin"] = big
	}
	for name, data := range want {
		writeFile(t, filepath.Join(up.dir, name), string(data))
	}
	for _, d := range top {
		if err := os.Symlink("a.txt", filepath.Join(up.dir, d, "link")); err != nil {
			t.Fatal(err)
		}
	}
	up.rescan(t)
	if out := up.run(t, up.plan()); out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	return want
}

// landStagedTree downloads into down what stagedTree uploaded under m and n (want) and
// checks that it all landed.
func landStagedTree(t *testing.T, down *env, want map[string][]byte) {
	t.Helper()
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Replan {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, want)
	checkLinks(t, down.dir, "m", "n")
}

// checkLinks checks the link each of top holds.
func checkLinks(t *testing.T, dir string, top ...string) {
	t.Helper()
	for _, d := range top {
		if target, err := os.Readlink(filepath.Join(dir, d, "link")); err != nil || target != "a.txt" {
			t.Errorf("%s/link: %q, %v", d, target, err)
		}
	}
}

// A file or link lands from the staging dir with one rename: the dir it lands in sees
// one event for it (its final name), not the create, writes, close and rename of a temp
// file beside it.
func TestDownloadsLandWithOneWatcherEventEach(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	want := stagedTree(t, url, "d")
	down := newEnvOn(t, url)
	for _, d := range []string{"d", "d/sub"} {
		if err := os.Mkdir(filepath.Join(down.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, d := range []string{"d", "d/sub"} {
		if err := w.Add(filepath.Join(down.dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	down.pull(t)
	down.rescan(t)
	if out := down.run(t, down.plan()); out.Failed != 0 || out.Replan {
		t.Fatalf("download: %+v", out)
	}
	checkTree(t, down.dir, want)
	checkLinks(t, down.dir, "d")
	events := map[string][]fsnotify.Op{}
	for quiet := time.After(300 * time.Millisecond); ; {
		select {
		case ev := <-w.Events:
			rel, _ := filepath.Rel(down.dir, ev.Name)
			if rel != "d" && rel != "d/sub" { // the dirs' own mode, set by their download
				events[filepath.ToSlash(rel)] = append(events[filepath.ToSlash(rel)], ev.Op)
			}
			quiet = time.After(300 * time.Millisecond)
			continue
		case err := <-w.Errors:
			t.Fatal(err)
		case <-quiet:
		}
		break
	}
	landedAs := []fsnotify.Op{fsnotify.Create} // IN_MOVED_TO
	for _, p := range []string{"d/a.txt", "d/sub/b.txt", "d/big.bin", "d/link"} {
		if !slices.Equal(events[p], landedAs) {
			t.Errorf("%s: events %v, want one create (the rename)", p, events[p])
		}
		delete(events, p)
	}
	if len(events) > 0 {
		t.Errorf("other events in the watched dirs: %v", events)
	}
}

// A rename out of the staging dir that fails (EXDEV: the path's dir is on another mount,
// which the test cannot mount, so the rename stands in for the kernel's; or any other
// error) makes the download again with a temp file beside its path. After EXDEV, the
// files of that dir and below go there at once.
func TestStagedRenameThatFailsFallsBackToATempFileBeside(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       syscall.Errno
		wantCalls int64
	}{
		{"across mounts", syscall.EXDEV, 2},      // the first file of m and of n
		{"another error", syscall.EACCES, 2 * 4}, // each file and link tries first
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := testserver.Start(t, t.TempDir(), nil)
			want := stagedTree(t, url, "m", "n")
			down := newEnvOn(t, url)
			down.x.Workers = 1               // one landing at a time: the count of renames tried is exact
			down.x.stage.anon.Store(anonOff) // new files renamed too (see the test below)
			var calls atomic.Int64
			down.x.stage.rename = func(oldname, newname string) error {
				calls.Add(1)
				return &os.LinkError{Op: "renameat", Old: oldname, New: newname, Err: tc.err}
			}
			landStagedTree(t, down, want)
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("%d renames out of the staging dir, want %d", got, tc.wantCalls)
			}
			if _, err := os.Lstat(filepath.Join(down.dir, StageDir)); !os.IsNotExist(err) {
				t.Errorf("staging dir left: %v", err)
			}
		})
	}
}

// A new file of at most syncEachAbove bytes is made unnamed in the staging dir and
// linked into place (where the system allows: Linux), a link stays a rename from the
// staging dir. A link that fails (EXDEV: the path's dir is on another mount, which the
// test cannot mount, so the link stands in for the kernel's; or any other error) makes
// the download again beside its path, and after EXDEV the files of that dir and below
// go there at once. Nothing is left behind either way.
func TestNewSmallFilesLandAsUnnamedFilesLinkedIntoPlace(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         syscall.Errno // 0: the kernel's link
		viaProc     bool          // linked by /proc/self/fd path, as before Linux 6.10
		wantLinks   int64
		wantRenames int64 // the symlinks'
	}{
		{"linked", 0, false, 2 * 3, 2}, // a.txt, sub/b.txt and big.bin of m and n
		{"linked through /proc", 0, true, 2 * 3, 2},
		{"across mounts", syscall.EXDEV, false, 2, 0}, // the first file of m and of n; the rest beside
		{"another error", syscall.EACCES, false, 2 * 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := testserver.Start(t, t.TempDir(), nil)
			want := stagedTree(t, url, "m", "n")
			down := newEnvOn(t, url)
			down.x.Workers = 1 // one landing at a time: the count of links tried is exact
			var links, renames, wrongWay atomic.Int64
			if tc.viaProc && runtime.GOOS == "linux" {
				down.x.stage.anon.Store(anonViaProc) // not tried again by the batch
			}
			down.x.stage.link = func(f, dir *os.File, name string, viaProc bool) error {
				links.Add(1)
				if viaProc != tc.viaProc {
					wrongWay.Add(1)
				}
				if tc.err != 0 {
					return &os.LinkError{Op: "linkat", Old: f.Name(), New: name, Err: tc.err}
				}
				return linkAnon(f, dir, name, viaProc)
			}
			down.x.stage.rename = func(oldname, newname string) error {
				renames.Add(1)
				return down.x.Root.Rename(oldname, newname)
			}
			landStagedTree(t, down, want)
			if runtime.GOOS != "linux" {
				if links.Load() != 0 || down.x.stage.anon.Load() != anonOff {
					t.Errorf("%d links tried, unnamed files %d; want none here", links.Load(), down.x.stage.anon.Load())
				}
				return
			}
			if got := links.Load(); got != tc.wantLinks || wrongWay.Load() != 0 {
				t.Errorf("%d links of unnamed files, %d of them not through /proc = %v; want %d, all so", got, wrongWay.Load(), tc.viaProc, tc.wantLinks)
			}
			if got := renames.Load(); got != tc.wantRenames {
				t.Errorf("%d renames out of the staging dir, want %d", got, tc.wantRenames)
			}
			if _, err := os.Lstat(filepath.Join(down.dir, StageDir)); !os.IsNotExist(err) {
				t.Errorf("staging dir left: %v", err)
			}
			noTempFiles(t, down.dir)
		})
	}
}

// A path the user created after the plan (a file where a file or a link is to land)
// is never replaced from the staging dir: the download is skipped, the user's file
// stays, and no temp file is left.
func TestStagedDownloadRefusesAPathThatAppeared(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	stagedTree(t, url, "d")
	down := newEnvOn(t, url)
	down.pull(t)
	down.rescan(t)
	ops := down.plan()
	mine := map[string]string{"d/a.txt": "the user's a", "d/big.bin": "the user's big", "d/link": "the user's file, not a link"}
	for p, data := range mine {
		writeFile(t, filepath.Join(down.dir, p), data)
	}
	out := down.run(t, ops)
	if !out.Replan {
		t.Errorf("outcome %+v, want a re-plan", out)
	}
	for p, data := range mine {
		if got, err := os.ReadFile(filepath.Join(down.dir, p)); err != nil || !bytes.Equal(got, []byte(data)) {
			t.Errorf("%s: %q, %v; want the user's content", p, got, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(down.dir, "d/sub/b.txt")); err != nil || len(got) == 0 {
		t.Errorf("d/sub/b.txt (not touched by the user) did not land: %v", err)
	}
	noTempFiles(t, down.dir)
	for _, op := range ops {
		if _, ok := mine[op.Path]; ok && op.Kind == plan.Download && down.x.Trees.Index.Len() > 0 {
			if idx, ok := down.x.Trees.Index.Get(op.Path); ok && idx.SHA256 == op.Remote.SHA256 {
				t.Errorf("%s: recorded as downloaded", op.Path)
			}
		}
	}
}

// A download batch holds the dirs it lands in open. A dir removed during the batch
// fails the landing of its next file as a change (skipped, planned again: nothing is
// written in the removed dir, no temp file is left), and the next plan makes the dir
// again and lands the file there.
func TestDirRemovedDuringABatchIsMadeAgain(t *testing.T) {
	down, byPath := plannedDownloads(t, "d/a.txt", "d/b.txt")
	if len(byPath) != 3 {
		t.Fatalf("plan %v; want d and its two files", byPath)
	}
	x := down.x
	if _, err := x.downloadDir(byPath["d"]); err != nil {
		t.Fatal(err)
	}
	x.openStage()
	if _, err := x.assembleFetched(byPath["d/a.txt"], []byte("content of d/a.txt")); err != nil {
		t.Fatalf("land d/a.txt: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(down.dir, "d")); err != nil {
		t.Fatal(err)
	}
	_, err := x.assembleFetched(byPath["d/b.txt"], []byte("content of d/b.txt"))
	x.closeStage()
	if !errors.Is(err, errChanged) {
		t.Fatalf("landing in a removed dir: %v; want a change to plan again", err)
	}
	noTempFiles(t, down.dir)
	down.rescan(t)
	out := down.run(t, down.plan())
	if out.Failed != 0 || out.Done != 3 {
		t.Fatalf("the next plan: %+v; want d and its two files landed", out)
	}
	for _, n := range []string{"d/a.txt", "d/b.txt"} {
		if got, err := os.ReadFile(filepath.Join(down.dir, n)); err != nil || string(got) != "content of "+n {
			t.Errorf("%s: %q, %v", n, got, err)
		}
	}
}

// A file planned absent lands with a rename that must not replace: the kernel refuses
// it when a file appeared at the path since (there is no check before it that a file
// could slip past), and where that rename is unsupported the path is checked first.
// Either way the user's file stays and the landing fails as a change. A file that
// lands has the stat key of the file now at its path, read from the open temp file.
func TestFileThatAppearedIsNeverReplaced(t *testing.T) {
	down, byPath := plannedDownloads(t, "d/a.txt", "d/b.txt", "d/c.txt")
	x := down.x
	if _, err := x.downloadDir(byPath["d"]); err != nil {
		t.Fatal(err)
	}
	x.openStage()
	defer x.closeStage()

	l, err := x.assembleFetched(byPath["d/a.txt"], []byte("content of d/a.txt"))
	if err != nil {
		t.Fatalf("land d/a.txt: %v", err)
	}
	fi, err := os.Lstat(filepath.Join(down.dir, "d/a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := scan.Stat(fi); !scan.SameStat(l.idx, st) || st.MTimeNs != byPath["d/a.txt"].Remote.MTimeNs {
		t.Errorf("landed stat key %+v; the file's is %+v (mtime wanted %d)", l.idx, st, byPath["d/a.txt"].Remote.MTimeNs)
	}

	// The rename alone, the destination there: refused, nothing moved.
	dir, release, err := x.dirs.Get("d")
	if err != nil {
		t.Fatal(err)
	}
	tmp := tempFile{dir: x.stage.dir.Root, name: tempName(""), staged: true}
	if err := x.stage.dir.Root.WriteFile(tmp.name, []byte("downloaded"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(down.dir, "d/b.txt"), "the user's b")
	if err := x.land(tmp, dir, "b.txt", "d/b.txt", true); !errors.Is(err, errChanged) {
		t.Errorf("rename over a file that appeared: %v; want a change", err)
	}
	if _, err := x.stage.dir.Root.Stat(tmp.name); err != nil {
		t.Errorf("the temp file moved: %v", err)
	}
	_ = x.stage.dir.Root.Remove(tmp.name)
	release()

	// A whole landing, with and without the kernel's check.
	for _, off := range []bool{false, true} {
		// With the kernel's check, the file is unnamed and linked where the system
		// allows; without it, made in the staging dir and renamed after a check.
		x.stage.noReplaceOff.Store(off)
		if off {
			x.stage.anon.Store(anonOff)
		}
		p := map[bool]string{false: "d/b.txt", true: "d/c.txt"}[off]
		writeFile(t, filepath.Join(down.dir, p), "the user's file")
		_, err := x.assembleFetched(byPath[p], []byte("content of "+p))
		if !errors.Is(err, errChanged) {
			t.Errorf("landing over %s (kernel check off: %v): %v; want a change", p, off, err)
		}
		if got, err := os.ReadFile(filepath.Join(down.dir, p)); err != nil || string(got) != "the user's file" {
			t.Errorf("%s: %q, %v; want the user's content", p, got, err)
		}
	}
	x.closeStage()
	noTempFiles(t, down.dir)
}

// plannedDownloads uploads files named names (each holding "content of" and its name)
// through one agent, and returns a second agent that pulled them, with its plan's ops
// by path (not run).
func plannedDownloads(t *testing.T, names ...string) (*env, map[string]plan.Op) {
	t.Helper()
	url, _ := testserver.Start(t, t.TempDir(), nil)
	up := newEnvOn(t, url)
	for _, n := range names {
		writeFile(t, filepath.Join(up.dir, n), "content of "+n)
	}
	up.rescan(t)
	if out := up.run(t, up.plan()); out.Failed != 0 {
		t.Fatalf("upload: %+v", out)
	}
	down := newEnvOn(t, url)
	down.pull(t)
	down.rescan(t)
	byPath := map[string]plan.Op{}
	for _, op := range down.plan() {
		byPath[op.Path] = op
	}
	return down, byPath
}

// An unnamed file is made with its mode (less the umask) and changed only when that
// differs: every mode lands whole, under a umask that takes bits off and one that
// takes none, and the index holds the mode on disk (the rescan after finds nothing).
func TestUnnamedFilesLandWithTheirModes(t *testing.T) {
	modes := map[string]os.FileMode{"a": 0o600, "b": 0o640, "c": 0o644, "d": 0o755, "e": 0o444, "f": 0o777, "g": 0o666, "h": 0o700}
	for _, umask := range []int{0o022, 0o077, 0} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			url, _ := testserver.Start(t, t.TempDir(), nil)
			up := newEnvOn(t, url)
			for name, mode := range modes {
				p := filepath.Join(up.dir, "m", name)
				writeFile(t, p, name)
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}
			up.rescan(t)
			if out := up.run(t, up.plan()); out.Failed != 0 {
				t.Fatalf("upload: %+v", out)
			}
			down := newEnvOn(t, url)
			var links atomic.Int64
			down.x.stage.link = func(f, dir *os.File, name string, viaProc bool) error {
				links.Add(1)
				return linkAnon(f, dir, name, viaProc)
			}
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			down.pull(t)
			down.rescan(t)
			if out := down.run(t, down.plan()); out.Failed != 0 || out.Replan {
				t.Fatalf("download: %+v", out)
			}
			if runtime.GOOS == "linux" && links.Load() != int64(len(modes)) {
				t.Errorf("%d files linked into place, want %d", links.Load(), len(modes))
			}
			for name, mode := range modes {
				fi, err := os.Stat(filepath.Join(down.dir, "m", name))
				if err != nil || fi.Mode() != mode {
					t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode(), err, mode)
				}
			}
			down.rescan(t)
			for _, op := range down.plan() {
				if op.Kind != plan.Report {
					t.Errorf("after the download, the plan holds %v of %s", op.Kind, op.Path)
				}
			}
		})
	}
}
