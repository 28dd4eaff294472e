package execute

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/syncedfolder/synced-folder/syncagent/scan"
)

// StageDir is the dir, at the folder's root, in which a download batch writes and
// verifies its files and links before renaming each into place. A file that lands from
// there makes one watcher event in its dir (the rename's second half), where a temp file
// beside it made five (create, write, close, and both halves of the rename): an agent
// landing 100,000 files filled its watcher's memory with its own events, and overflowed
// the kernel's queue. The name starts with scan.TempPrefix, so the scanner, the ignore
// rules and the watcher pass the dir over (it is never watched, never synced), and the
// agent removes it with the other leftover temp files when it starts.
const StageDir = scan.TempPrefix + "landing"

// errNotStaged is a file or link that could not be made in, or renamed out of, the
// staging dir: its dir is on another mount (EXDEV), or the staging dir went away. The
// download is made again with a temp file beside its path, as without a staging dir.
var errNotStaged = errors.New("cannot land through the staging dir")

// tempFile is where a file or link is made before it is renamed over its path.
type tempFile struct {
	dir    *os.Root // the dir holding it: the staging dir, or the path's own dir
	name   string   // its name in dir
	staged bool     // in the staging dir: renamed across dirs (through x.Root)
}

// stageState is the executor's staging dir of the download batch under way.
type stageState struct {
	root *os.Root // open staging dir; nil: temp files go beside their paths
	// rename moves a staged file over its path (both relative to x.Root); nil means
	// x.Root.Rename. Tests set it to stand in for a rename the kernel refuses.
	rename func(oldname, newname string) error

	mu      sync.Mutex
	off     map[string]bool // dirs whose files land beside them (a rename failed with EXDEV)
	anyOff  atomic.Bool
	offLogs int
}

// openStage makes and opens the staging dir for a download batch. Without one (the
// folder's root refuses it), temp files go beside their paths.
func (x *Executor) openStage() {
	if err := x.Root.Mkdir(StageDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		x.Log.Debug("no staging dir; downloads land beside their paths", "err", err.Error())
		return
	}
	r, err := x.Root.OpenRoot(StageDir)
	if err != nil {
		x.Log.Debug("no staging dir; downloads land beside their paths", "err", err.Error())
		return
	}
	x.stage.root = r
}

// closeStage closes the staging dir and removes it, empty by now (what a failure left
// in it goes when the agent starts again).
func (x *Executor) closeStage() {
	if x.stage.root == nil {
		return
	}
	x.stage.root.Close()
	x.stage.root = nil
	_ = x.Root.Remove(StageDir)
}

// newTemp picks the temp file of path p, whose own dir is open as dir with p's name
// there being name: in the staging dir when stage is set and p's dir can be reached
// from it, beside p otherwise.
func (x *Executor) newTemp(dir *os.Root, name, p string, stage bool) tempFile {
	if stage && x.stage.root != nil && !x.unstaged(p) {
		return tempFile{dir: x.stage.root, name: tempName(""), staged: true}
	}
	return tempFile{dir: dir, name: tempName(name)}
}

// unstaged reports whether p is under a dir that a rename from the staging dir could
// not reach.
func (x *Executor) unstaged(p string) bool {
	if !x.stage.anyOff.Load() {
		return false
	}
	x.stage.mu.Lock()
	defer x.stage.mu.Unlock()
	for d := path.Dir(p); ; d = path.Dir(d) {
		if x.stage.off[d] {
			return true
		}
		if d == "." {
			return false
		}
	}
}

// land renames t over name in dir, which is the path p.
func (x *Executor) land(t tempFile, dir *os.Root, name, p string) error {
	if !t.staged {
		if err := dir.Rename(t.name, name); err != nil {
			return fmt.Errorf("rename into place: %w", err)
		}
		return nil
	}
	rename := x.stage.rename
	if rename == nil {
		rename = x.Root.Rename
	}
	err := rename(StageDir+"/"+t.name, p)
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EXDEV) {
		// Another mount: every file of p's dir (and below) would fail the same way.
		x.stage.mu.Lock()
		if x.stage.off == nil {
			x.stage.off = map[string]bool{}
		}
		x.stage.off[path.Dir(p)] = true
		x.stage.anyOff.Store(true)
		x.stage.mu.Unlock()
	}
	return fmt.Errorf("rename %q into place: %w: %w", p, errNotStaged, err)
}

// retryUnstaged logs that the download of p is made again beside its path.
func (x *Executor) retryUnstaged(p string, err error) {
	x.stage.mu.Lock()
	x.stage.offLogs++
	n := x.stage.offLogs
	x.stage.mu.Unlock()
	if n <= 10 {
		x.Log.Info("landing through the staging dir failed; writing the file beside its path", "path", p, "err", err.Error())
	}
}
