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

	"github.com/syncedfolder/synced-folder/syncagent/dircache"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
)

// StageDir is the dir, at the folder's root, in which a download batch writes and
// verifies its files and links before renaming each into place (or, for a small new
// file, linking it there: see stageState.anon). A file that lands from
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

// The states of stageState.anon.
const (
	anonUnknown int32 = iota // not tried yet: the next openStage tries
	anonOn                   // new small files are made unnamed and linked by descriptor
	anonViaProc              // the same, linked by their /proc/self/fd path (Linux < 6.10)
	anonOff                  // the folder's file system (or the kernel) cannot: renamed
)

// stageState is the executor's staging dir of the download batch under way.
type stageState struct {
	dir *dircache.Dir // open staging dir; nil: temp files go beside their paths
	// rename moves a staged file over its path (both relative to x.Root); nil means
	// x.Root.Rename. Tests set it to stand in for a rename the kernel refuses.
	rename func(oldname, newname string) error

	mu      sync.Mutex
	off     map[string]bool // dirs whose files land beside them (a rename failed with EXDEV)
	anyOff  atomic.Bool
	offLogs int
	// noReplaceOff is set once the file system refused a rename that must not replace
	// (see land): later landings check the path themselves.
	noReplaceOff atomic.Bool
	// anon says whether, and how, a small file planned absent is made unnamed in the
	// staging dir and linked into place (openAnonFor, landAnon) instead of made there
	// with a name and renamed out: one dir entry made instead of two made and one
	// removed, no rename between two dirs (which the kernel serializes per file
	// system), and the staging dir's lock no longer taken by every create.
	anon atomic.Int32
	// link gives an unnamed file its name (landAnon); nil means linkAnon. Tests set it to
	// stand in for a link the kernel refuses.
	link func(f, dir *os.File, name string, viaProc bool) error
}

// openStage starts a download batch: its cache of the dirs it lands in, and its
// staging dir. Without a staging dir (the folder's root refuses it), temp files go
// beside their paths.
func (x *Executor) openStage() {
	x.dirs = dircache.New(x.Root)
	if err := x.Root.Mkdir(StageDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		x.Log.Debug("no staging dir; downloads land beside their paths", "err", err.Error())
		return
	}
	d, err := dircache.Open(x.Root, StageDir)
	if err != nil {
		x.Log.Debug("no staging dir; downloads land beside their paths", "err", err.Error())
		return
	}
	x.stage.dir = d
	if x.stage.anon.Load() == anonUnknown {
		state := anonOff
		var err error
		for _, try := range []int32{anonOn, anonViaProc} {
			if err = tryAnon(d, try == anonViaProc); err == nil {
				state = try
				break
			}
		}
		if state == anonOff {
			x.Log.Debug("unnamed files cannot be made and linked here; new files are renamed out of the staging dir", "err", err.Error())
		}
		x.stage.anon.Store(state)
	}
}

// tryAnon makes an unnamed file in the staging dir, links it (viaProc: see linkAnon)
// and removes it: the folder's file system and the kernel allow both steps of landAnon.
func tryAnon(d *dircache.Dir, viaProc bool) error {
	f, err := openAnon(d.File, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	name := tempName("")
	if err := linkAnon(f, d.File, name, viaProc); err != nil {
		return err
	}
	return d.Root.Remove(name)
}

// closeStage ends a download batch: it closes the dirs and the staging dir, and removes
// the staging dir, empty by now (what a failure left in it goes when the agent starts
// again).
func (x *Executor) closeStage() {
	if x.dirs != nil {
		x.dirs.Close()
		x.dirs = nil
	}
	if x.stage.dir == nil {
		return
	}
	x.stage.dir.Close()
	x.stage.dir = nil
	_ = x.Root.Remove(StageDir)
}

// newTemp picks the temp file of path p, whose own dir is open as dir with p's name
// there being name: in the staging dir when stage is set and p's dir can be reached
// from it, beside p otherwise.
func (x *Executor) newTemp(dir *os.Root, name, p string, stage bool) tempFile {
	if stage && x.stage.dir != nil && !x.unstaged(p) {
		return tempFile{dir: x.stage.dir.Root, name: tempName(""), staged: true}
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

// land renames t over name in dir, which is the path p. With noReplace the rename fails
// as a change when something appeared at p since it was planned absent: the kernel
// checks in the same step (renameat2's RENAME_NOREPLACE), which spares an lstat and
// leaves no window between the check and the rename. Where that flag cannot be used
// land returns errors.ErrUnsupported without renaming, and the caller checks p itself.
func (x *Executor) land(t tempFile, dir *dircache.Dir, name, p string, noReplace bool) error {
	if noReplace && (dir.File == nil || t.staged && x.stage.rename != nil || x.stage.noReplaceOff.Load()) {
		return errors.ErrUnsupported
	}
	var err error
	switch {
	case t.staged:
		err = x.renameStaged(t.name, dir, name, p, noReplace)
	case noReplace:
		err = renameAt(dir.File, t.name, dir.File, name, true)
	default:
		if err := dir.Root.Rename(t.name, name); err != nil {
			return fmt.Errorf("rename into place: %w", err)
		}
		return nil
	}
	switch {
	case err == nil:
		return nil
	case noReplace && errors.Is(err, errors.ErrUnsupported):
		x.stage.noReplaceOff.Store(true) // the system refused the flag: not asked again
		return err
	case noReplace && errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%q: %w (appeared)", p, errChanged)
	case !t.staged:
		return fmt.Errorf("rename into place: %w", err)
	}
	return x.notLanded("rename", p, err)
}

// notLanded is the error of a rename or a link (op) out of the staging dir into p that
// failed with err, other than because something appeared at p.
func (x *Executor) notLanded(op, p string, err error) error {
	switch {
	case absent(err):
		// p's dir went away since it was opened (or the temp file did): the next plan
		// finds p missing and lands it with the dir opened afresh.
		x.dirs.Forget(path.Dir(p))
		return fmt.Errorf("%s %q into place: %w (dir gone: %w)", op, p, errChanged, err)
	case errors.Is(err, syscall.EXDEV):
		// Another mount: every file of p's dir (and below) would fail the same way.
		x.stage.mu.Lock()
		if x.stage.off == nil {
			x.stage.off = map[string]bool{}
		}
		x.stage.off[path.Dir(p)] = true
		x.stage.anyOff.Store(true)
		x.stage.mu.Unlock()
	}
	return fmt.Errorf("%s %q into place: %w: %w", op, p, errNotStaged, err)
}

// renameStaged moves the staged temp file tname over name in dir (the path p): by
// descriptor when dir is held open, through x.Root otherwise. noReplace needs the
// descriptor (see land).
func (x *Executor) renameStaged(tname string, dir *dircache.Dir, name, p string, noReplace bool) error {
	if x.stage.rename != nil {
		return x.stage.rename(StageDir+"/"+tname, p)
	}
	if dir.File != nil {
		err := renameAt(x.stage.dir.File, tname, dir.File, name, noReplace)
		if noReplace || !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	return x.Root.Rename(StageDir+"/"+tname, p)
}

// openAnonFor opens the unnamed file of op, a file to land in dir (op's held dir) from
// a first try (stage), when it can be one: planned absent (the link never replaces),
// small (a large file's writer, flush and rename stay as they are), its dir reachable
// from the staging dir, and unnamed files work here. It is made in the staging dir,
// which no watcher watches: an unnamed file's writes and mode changes are events in its
// dir (named "#" and its inode number), three more per file where it lands.
func (x *Executor) openAnonFor(dir *dircache.Dir, op plan.Op, stage bool) (*os.File, bool) {
	way := x.stage.anon.Load()
	if !stage || op.Local != nil || op.Remote.Size > syncEachAbove || dir.File == nil || x.stage.dir == nil ||
		way != anonOn && way != anonViaProc || x.unstaged(op.Path) {
		return nil, false
	}
	f, err := openAnon(x.stage.dir.File, os.FileMode(op.Remote.Mode&0o777))
	return f, err == nil
}

// landAnon links the unnamed file f into dir as name, which is the path p planned
// absent. As land's rename that must not replace, it fails as a change when something
// appeared at p since the plan; a dir on another mount makes the download again beside
// its path (errNotStaged).
func (x *Executor) landAnon(f *os.File, dir *dircache.Dir, name, p string) error {
	link := linkAnon
	if x.stage.link != nil {
		link = x.stage.link
	}
	err := link(f, dir.File, name, x.stage.anon.Load() == anonViaProc)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%q: %w (appeared)", p, errChanged)
	}
	return x.notLanded("link", p, err)
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
