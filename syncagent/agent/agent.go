// Package agent is the sync agent's loop: it keeps one folder in sync with the server by
// pulling the changes feed (long-poll), scanning the disk (on watcher events, on a timer
// and on overflow), planning from the three trees and executing the plan, retrying
// through server outages with backoff, and holding back mass deletes until confirmed.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/execute"
	"github.com/syncedfolder/synced-folder/syncagent/ignore"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncagent/trees"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// ResumeFileName is the file under the state dir by which `syncagent resume` tells a
// running agent to carry out the deletes its breaker held back.
const ResumeFileName = "resume-mass-delete"

// ErrMassDelete is returned by a --once pass whose plan tripped the mass-delete breaker.
var ErrMassDelete = errors.New("mass-delete breaker tripped: deletes held back; run `syncagent resume --dir DIR` or pass --allow-mass-delete")

// FeedMaxBlocks is the longest block list the agent asks the changes feed to carry
// (client.Options.FeedMaxBlocks): a larger file's list is fetched only when the agent
// has to download it, and then as a delta against the version it holds.
const FeedMaxBlocks = 64

// Config configures an Agent.
type Config struct {
	// Dir is the synced folder.
	Dir string
	// StateDir holds the state database (default Dir/.syncfolder).
	StateDir string
	// AgentID names this agent in conflict copies and logs.
	AgentID string
	// Mode is two-way, send-only or receive-only.
	Mode plan.Mode
	// RescanInterval is the period of the safety-net full rescan.
	RescanInterval time.Duration
	// MaxDeletePercent is the mass-delete breaker's share of tracked files.
	MaxDeletePercent float64
	// AllowMassDelete turns the breaker off.
	AllowMassDelete bool
	// Server is the sync server's client.
	Server *client.Client
	// Log receives the agent's logs.
	Log *slog.Logger
	// ProgressBar, when set, receives a one-line progress bar (a terminal).
	ProgressBar io.Writer
	// LongPollWait is the changes feed's wait (default 55s).
	LongPollWait time.Duration
	// Watch turns the file watcher on (Run only).
	Watch bool
	// IgnoreFile, when set, names a file of ignore patterns applied before the folder's
	// own .syncignore (the operator's folder-wide defaults, mounted from a ConfigMap).
	IgnoreFile string
	// DirectIO writes large downloads around the page cache where the file system
	// allows it (execute.Executor.DirectIO).
	DirectIO bool
	// NoPatchInPlace rebuilds every edited file and renames it into place, instead of
	// writing only the changed bytes of a large file into it (execute.Executor.JournalDir).
	NoPatchInPlace bool
	// ListAhead lists the folder for the first full scan while New loads the trees, on a
	// second goroutine (scan.ListAhead): for a --once pass, whose first round scans at
	// once. Run drops the listing; a later round of Once lists the folder again.
	ListAhead bool
}

// Agent syncs one folder.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	root  *os.Root
	db    *state.DB
	trees *trees.Trees
	// own is what our own commits and deletes told us of each path's remote entry
	// (Executor.OwnSeqs), until the feed passes it: older feed entries are stale, and the
	// echo of an entry recorded in full is not written again.
	own     map[string]execute.OwnSeq
	scanner *scan.Scanner
	ahead   *scan.Ahead // the first full scan's listings, made while New loaded the trees
	// unreadable holds the paths whose scan failed and were logged (warnUnreadable).
	unreadableMu sync.Mutex
	unreadable   map[string]bool
	exec         *execute.Executor
	// indexWait, when set, returns the outcome of the index record that scanPaths left
	// running (state.UpdateLater); see waitIndex. recordLater is set while scanPaths
	// scans, so that the scanner's Record writes in the background.
	indexWait   func() error
	recordLater bool
	// preupload sends large files' blocks while the scanner indexes them (nil in
	// receive-only mode); the executor then finds them sent.
	preupload *execute.Preupload
	ignore    atomic.Pointer[ignore.Matcher]

	cursor   int64
	folderID string

	// quietAtLoad is the snapshot's verdict on the trees as New loaded them (nothing to
	// plan); treesTouched is set by every change to them since (a feed answer with
	// entries or a reset, an index update of a scan, an executed op). While it is not,
	// the trees are the ones the verdict is about, and a plan need not look at them.
	quietAtLoad, treesTouched bool
	// quietAt is the trees' change count (trees.Trees.Changes) when a plan last found
	// them quiet (plan.Quiet), and quietSeen whether one did: while the count stays, the
	// trees are the ones found quiet. A writer whose commits come back through the feed,
	// each page of them skipped, went over its three trees once per page (7 % of its
	// CPU in W1). It stands beside quietAtLoad rather than replacing it: a scan sets
	// again every node it finds unchanged, which moves the count but leaves
	// treesTouched, and an unchanged --once pass keeps the snapshot's verdict.
	quietAt   uint64
	quietSeen bool
	// quietChecks counts the plan.Quiet passes made (tests).
	quietChecks int

	counters   execute.Counters
	rehashed   int // files the scanner hashed and recorded (scan.Scanner.Record), for logs
	st         statusState
	execSlice  int // ops per executor run; 0: execSlice (tests set a small one)
	planWindow int // ops per window of a first sync; 0: planWindow (tests set a small one)
	planWhole  int // most creations planned at once; 0: planWhole, or planWindow when set
}

// New opens the folder and the agent's state.
func New(cfg Config) (*Agent, error) {
	if cfg.Dir == "" {
		return nil, errors.New("folder dir is empty")
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("folder dir: %w", err)
	}
	cfg.Dir = abs
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("folder dir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("folder dir %q is not a directory", abs)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(abs, ignore.StateDirName)
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if cfg.Mode == "" {
		cfg.Mode = plan.TwoWay
	}
	if cfg.RescanInterval <= 0 {
		cfg.RescanInterval = time.Hour
	}
	if cfg.MaxDeletePercent <= 0 {
		cfg.MaxDeletePercent = 50
	}
	if cfg.LongPollWait <= 0 {
		cfg.LongPollWait = 55 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	base, err := ignore.Compile(nil)
	if cfg.IgnoreFile != "" {
		base, err = ignore.LoadFile(cfg.IgnoreFile)
	}
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open folder: %w", err)
	}
	db, err := state.Open(cfg.StateDir)
	if err != nil {
		root.Close()
		return nil, err
	}
	// Before anything looks at the folder: a file left half-patched would look edited.
	if err := execute.RecoverPatches(root, cfg.StateDir, cfg.Log); err != nil {
		db.Close()
		root.Close()
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Log, root: root, db: db, own: map[string]execute.OwnSeq{}}
	a.initScanner(base)
	if cfg.ListAhead {
		a.ahead = a.scanner.ListAhead()
	}
	t, quiet, err := db.TreesQuiet()
	if err == nil {
		var folderID string
		var cursor int64
		if folderID, cursor, err = db.Cursor(); err == nil {
			// The Local tree starts as the index says (a full scan corrects it before
			// any plan).
			for p, e := range t.Index.All() {
				t.Local.Set(p, e.Node())
			}
			a.trees = t
			a.cursor, a.folderID, a.quietAtLoad = cursor, folderID, quiet
			a.exec = &execute.Executor{Root: a.root, Server: a.cfg.Server, State: a.db, Trees: t,
				OwnSeqs: a.own, Log: a.log, Counters: &a.counters,
				Preupload: a.preupload, DirectIO: a.cfg.DirectIO}
			if !cfg.NoPatchInPlace {
				a.exec.JournalDir = cfg.StateDir
			}
			a.st.started = time.Now()
			a.st.setCursor(folderID, cursor)
			return a, nil
		}
	}
	a.ahead.Stop()
	db.Close()
	root.Close()
	return nil, err
}

// initScanner sets the ignore patterns up and the scanner; base are the patterns in
// force until the folder's .syncignore loads.
func (a *Agent) initScanner(base *ignore.Matcher) {
	skip := map[string]bool{}
	if rel, err := filepath.Rel(a.cfg.Dir, a.cfg.StateDir); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
		skip[filepath.ToSlash(rel)] = true
	}
	a.ignore.Store(base)
	a.reloadIgnore()
	// The scanner applies Skip itself before asking Ignore: the patterns are enough there.
	a.scanner = &scan.Scanner{Root: a.root, Skip: skip, Ignore: a.ignoredByPatterns, Blocks: a.db.LocalBlockSums,
		Record: func(ctx context.Context, ups []scan.Update) error {
			a.rehashed += len(ups)
			if a.recordLater {
				return a.persistIndexLater(ctx, ups)
			}
			return a.persistIndex(ctx, ups)
		},
		Unreadable: a.warnUnreadable}
	// Where a write may keep the mtime of the one before it, a file hashed right after
	// a write is hashed again when a scan passes it (scan.RacyWindow).
	if coarse, err := scan.CoarseTimestamps(a.cfg.Dir); err != nil {
		a.scanner.RacyWindow = scan.RacyWindow
		a.log.Warn("cannot tell how fine this file system's timestamps are; files hashed right after a write are hashed again when next scanned",
			"err", err.Error())
	} else if coarse {
		a.scanner.RacyWindow = scan.RacyWindow
		a.log.Info("this file system's timestamps are coarse: files hashed right after a write are hashed again when next scanned")
	}
	if a.cfg.Mode != plan.ReceiveOnly {
		// Large files are uploaded while they are indexed (see execute.Preupload).
		a.preupload = &execute.Preupload{Server: a.cfg.Server, Log: a.log, Counters: &a.counters,
			Base: a.db.RemoteVersion}
		a.scanner.Preupload = a.preupload.File
	}
}

// Close releases the folder and the state database, after storing a snapshot of the
// trees when the stored one is missing (the next start then reads one row, not every
// row of the trees; see state.DB.SaveSnapshot).
func (a *Agent) Close() error {
	a.ahead.Stop()
	if err := a.waitDownloadRecord(); err != nil {
		a.log.Warn("downloads not recorded; the next start checks those files again", "err", err.Error())
	}
	if err := a.waitIndex(); err != nil {
		a.log.Warn("index not recorded; the next start hashes those files again", "err", err.Error())
	}
	a.root.Close()
	if has, err := a.db.HasSnapshot(); err != nil || has {
		return a.db.Close()
	}
	// The agent's trees are done with: the snapshot reads its own from the tables, and
	// must not hold both copies at once (a large folder's trees are most of the heap).
	a.trees, a.own, a.exec = nil, nil, nil
	runtime.GC()
	start := time.Now()
	if wrote, err := a.db.SaveSnapshot(); err != nil {
		a.log.Warn("could not store the trees' snapshot; the next start reads the rows", "err", err.Error())
	} else if wrote {
		a.log.Debug("stored the trees' snapshot", "took", time.Since(start).String())
	}
	return a.db.Close()
}

func (a *Agent) ignored(rel string, isDir bool) bool {
	if a.scanner != nil && a.scanner.Skipped(rel) {
		return true
	}
	return a.ignoredByPatterns(rel, isDir)
}

// ignoredByPatterns is ignored without the scanner's Skip entries.
func (a *Agent) ignoredByPatterns(rel string, isDir bool) bool {
	if m := a.ignore.Load(); m != nil {
		return m.Match(rel, isDir)
	}
	return false
}

// reloadIgnore reads .syncignore again; a malformed file keeps the previous patterns.
func (a *Agent) reloadIgnore() {
	m, err := ignore.Load(a.cfg.Dir, a.cfg.IgnoreFile)
	if err != nil {
		a.log.Error("ignore file is malformed; keeping the previous patterns", "err", err.Error())
		return
	}
	a.ignore.Store(m)
}

// visible returns t without ignored paths: an ignored path is neither uploaded,
// downloaded nor deleted on either side. When nothing in t is ignored it returns t
// itself, so that a plan of a large tree does not copy it (the planner only reads).
func (a *Agent) visible(t plan.View) plan.View {
	var out plan.Tree
	for p, n := range t.All() {
		if a.ignored(p, n.Type == proto.TypeDir) {
			if out == nil {
				out = maps.Collect(t.All())
			}
			delete(out, p)
		}
	}
	if out == nil {
		return t
	}
	return out
}

// removeTempFiles deletes download temp files a crash left behind; they never carry a
// final name, so nothing else can be lost here.
func (a *Agent) removeTempFiles() { a.removeTempFilesIn(".") }

// removeTempFilesIn is removeTempFiles for the subtree at dir.
func (a *Agent) removeTempFilesIn(dir string) {
	_ = fs.WalkDir(a.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // best effort: an unreadable entry is passed over, the rest still swept
		}
		if d.IsDir() && p != "." && a.scanner.Skip[p] {
			return fs.SkipDir
		}
		if strings.HasPrefix(d.Name(), scan.TempPrefix) {
			a.removeTemp(p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
}

func (a *Agent) removeTemp(p string) {
	if err := a.root.RemoveAll(p); err == nil {
		a.log.Info("removed a leftover temp file", "path", p)
	}
}

// sweep is what a full scan that also removes leftover temp files reports to: the
// removeTempFiles of the walk the scan makes anyway.
func (a *Agent) sweep() *scan.Sweep {
	return &scan.Sweep{
		Temp:       func(p string, _ bool) { a.removeTemp(p) },
		IgnoredDir: a.removeTempFilesIn,
	}
}

// scanAll rescans the whole folder and persists the index updates.
func (a *Agent) scanAll(ctx context.Context) error {
	return a.scanAllSweep(ctx, nil)
}

// scanAllSweep is scanAll that reports to sw (when not nil) what the walk passes over.
func (a *Agent) scanAllSweep(ctx context.Context, sw *scan.Sweep) error {
	if err := a.waitIndex(); err != nil {
		return err
	}
	if err := a.exec.RecoverPatches(); err != nil {
		return err
	}
	a.reloadIgnore()
	start, rehashed := time.Now(), a.rehashed
	ahead := a.ahead
	a.ahead = nil
	ups, err := a.scanner.FullSweepAhead(ctx, a.trees, sw, ahead)
	if err != nil {
		a.treesTouched = true // the walk may have changed the Local tree before it failed
		return fmt.Errorf("scan: %w", err)
	}
	a.log.Debug("full scan", "paths", a.trees.Local.Len(), "rehashed", a.rehashed-rehashed, "otherUpdates", len(ups),
		"took", time.Since(start).String())
	return a.persistIndex(ctx, ups)
}

func (a *Agent) scanPaths(ctx context.Context, paths []string) error {
	for _, p := range paths {
		if p == ignore.FileName {
			a.reloadIgnore()
		}
	}
	// A path scan may drop a Local-tree node without an index update (a path that
	// became a socket): it counts as a change whatever it finds.
	a.treesTouched = true
	if err := a.waitIndex(); err != nil {
		return err
	}
	if err := a.exec.RecoverPatches(); err != nil {
		return err
	}
	start, rehashed := time.Now(), a.rehashed
	a.recordLater = true
	ups, err := a.scanner.Paths(ctx, paths, a.trees)
	a.recordLater = false
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	a.log.Debug("scan of changed paths", "paths", len(paths), "rehashed", a.rehashed-rehashed, "otherUpdates", len(ups),
		"took", time.Since(start).String())
	return a.persistIndexLater(ctx, ups)
}

// persistIndexLater writes index updates in the background (state.UpdateLater), after
// those it started before. The index rows are written while the scan hashes on and the
// plan runs: the trees in memory have them already, the database's one connection makes
// every later read or write wait for them, and a crash before they are written only
// means hashing those files again. waitIndex collects the outcome.
func (a *Agent) persistIndexLater(ctx context.Context, ups []scan.Update) error {
	if len(ups) == 0 {
		return nil
	}
	if err := a.waitIndex(); err != nil {
		return err
	}
	if err := a.waitDownloadRecordOf(ups); err != nil {
		return err
	}
	a.treesTouched = true
	var took time.Duration
	wait := a.db.UpdateLater(ctx, func(tx *state.Tx) error {
		start := time.Now()
		defer func() { took = time.Since(start) }()
		return putIndex(tx, ups)
	})
	a.indexWait = func() error {
		err := wait()
		a.log.Debug("recorded index updates", "paths", len(ups), "took", took.String())
		return err
	}
	return nil
}

// waitDownloadRecord waits for the record of downloaded files that the executor left
// running (execute.Executor.WaitRecorded).
func (a *Agent) waitDownloadRecord() error {
	if a.exec == nil {
		return nil
	}
	return a.exec.WaitRecorded()
}

// waitDownloadRecordOf is waitDownloadRecord when the record writes the index of one of
// the paths of ups: a row written before it would be overwritten by the older one it
// holds, and uploads pair the index's hash in memory with the row's block list. Other
// index writes go ahead: the record may be waiting for a flush of the disk, and the
// watcher reports the dirs the downloads changed at once.
func (a *Agent) waitDownloadRecordOf(ups []scan.Update) error {
	if a.exec == nil {
		return nil
	}
	for _, u := range ups {
		if a.exec.Recording(u.Path) {
			return a.exec.WaitRecorded()
		}
	}
	return nil
}

// waitIndex waits for the index record persistIndexLater left running and returns its
// error.
func (a *Agent) waitIndex() error {
	if a.indexWait == nil {
		return nil
	}
	err := a.indexWait()
	a.indexWait = nil
	if err != nil {
		return fmt.Errorf("record index: %w", err)
	}
	return nil
}

func (a *Agent) persistIndex(ctx context.Context, ups []scan.Update) error {
	if len(ups) == 0 {
		return nil
	}
	if err := a.waitDownloadRecordOf(ups); err != nil {
		return err
	}
	a.treesTouched = true
	return a.db.Update(ctx, func(tx *state.Tx) error { return putIndex(tx, ups) })
}

func putIndex(tx *state.Tx, ups []scan.Update) error {
	for _, u := range ups {
		var err error
		if u.Deleted {
			err = tx.DeleteIndex(u.Path)
		} else {
			err = tx.PutIndex(u.Path, u.Entry, u.Blocks, u.Sums)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// page is one answer of the changes feed, or a reset when the folder id changed.
type page struct {
	resp  *proto.ChangesResponse
	reset bool
}

// applyPage brings the remote tree up to date with one feed answer.
func (a *Agent) applyPage(ctx context.Context, p page) error {
	if p.reset || len(p.resp.Entries) > 0 {
		a.treesTouched = true
	}
	if p.reset {
		// A download record still running would write synced rows after the reset.
		if err := a.waitDownloadRecord(); err != nil {
			return err
		}
	}
	return a.db.Update(ctx, func(tx *state.Tx) error {
		if p.reset {
			a.log.Warn("the server's folder was replaced (new folder id); starting over from its full listing",
				"oldFolderId", a.folderID, "newFolderId", p.resp.FolderID)
			if err := tx.ResetTrees(); err != nil {
				return err
			}
			a.trees.Synced.Clear()
			a.trees.Remote.Clear()
			clear(a.own)
		}
		for _, e := range p.resp.Entries {
			own, ok := a.own[e.Path]
			if e.Seq < own.Floor {
				continue // older than what our own commit or delete already told us
			}
			// An entry our own commit's answer recorded, in full, is not written again.
			if !ok || own.Recorded != e.Seq {
				if err := a.recordRemote(tx, e); err != nil {
					return err
				}
			}
			if e.ModifiedBy != a.cfg.AgentID {
				a.st.notePending(e.ModifiedAt)
			}
		}
		a.folderID, a.cursor = p.resp.FolderID, p.resp.LastSeq
		for path, own := range a.own {
			if own.Floor <= a.cursor {
				delete(a.own, path)
			}
		}
		a.st.setCursor(a.folderID, a.cursor)
		return tx.SetCursor(a.folderID, a.cursor)
	})
}

// recordRemote records a feed entry in the remote tree and its table.
func (a *Agent) recordRemote(tx *state.Tx, e proto.Entry) error {
	if e.Deleted {
		a.trees.Remote.Delete(e.Path)
		return tx.DeleteRemote(e.Path)
	}
	// Our own commits come back through the feed: a node already held is left alone.
	n, err := state.NodeOf(e)
	if err != nil {
		return err
	}
	if !holds(a.trees.Remote, e.Path, n) {
		a.trees.Remote.Set(e.Path, n)
	}
	return tx.PutRemote(e)
}

// holds reports whether tree holds n at path.
func holds(tree trees.Side, path string, n plan.Node) bool {
	got, ok := tree.Get(path)
	return ok && got == n
}

// catchUp reads the changes feed without waiting until it has nothing more.
func (a *Agent) catchUp(ctx context.Context) error {
	for {
		resp, err := a.cfg.Server.Changes(ctx, a.cursor, 0, 1000)
		if err != nil {
			return err
		}
		reset := a.folderID != "" && resp.FolderID != a.folderID
		if reset && a.cursor != 0 {
			if err := a.applyPage(ctx, page{resp: &proto.ChangesResponse{FolderID: resp.FolderID}, reset: true}); err != nil {
				return err
			}
			continue
		}
		if err := a.applyPage(ctx, page{resp: resp, reset: reset}); err != nil {
			return err
		}
		if !resp.More {
			return nil
		}
	}
}

// planNow plans from the current trees. The three are filtered side by side: the
// filter only reads them (and the ignore patterns), and nothing else writes them while
// the loop plans. Trees that agree everywhere (plan.Quiet) plan nothing whatever the
// filter removes, so an unchanged folder is neither filtered nor planned; and trees
// untouched since the snapshot or the last plan found them quiet are not even checked
// again (an unchanged --once pass; the echo of our own commits). The Local tree of a
// snapshot's is the index's, as New built it, unless a scan changed it, which it does
// only with index updates.
//
// A first sync of a large tree (a plan of creations only) comes in windows of
// planWindow ops (plan.PlanWindow); runPlan plans the next one when a window ran.
func (a *Agent) planNow() plan.Window {
	t := a.trees
	if a.quietAtLoad && !a.treesTouched && t.Local.Len() == t.Index.Len() || a.quietSeen && a.quietAt == t.Changes() {
		return plan.Window{}
	}
	a.quietChecks++
	if plan.Quiet(t.Local, t.Remote, t.Synced) {
		a.quietAt, a.quietSeen = t.Changes(), true
		return plan.Window{}
	}
	var remote, synced plan.View
	var wg sync.WaitGroup
	wg.Go(func() { remote = a.visible(t.Remote) })
	wg.Go(func() { synced = a.visible(t.Synced) })
	local := a.visible(t.Local)
	wg.Wait()
	start := time.Now()
	window := a.window()
	if whole := a.whole(); local.Len()+remote.Len()-2*synced.Len() <= whole {
		window = whole // at most that many creations: one plan
	}
	w := plan.PlanWindow(local, remote, synced, plan.Options{Mode: a.cfg.Mode, AgentID: a.cfg.AgentID, Now: time.Now()}, window)
	a.log.Debug("planned", "ops", len(w.Ops), "restFiles", w.RestFiles, "took", time.Since(start).String())
	return w
}

// window is the number of ops of a first sync planned at a time.
func (a *Agent) window() int {
	if a.planWindow > 0 {
		return a.planWindow
	}
	return planWindow
}

// whole is the most creations planned at once.
func (a *Agent) whole() int {
	switch {
	case a.planWhole > 0:
		return a.planWhole
	case a.planWindow > 0:
		return a.planWindow // a test's small window cuts any plan
	}
	return planWhole
}

// planWindow is how many ops of a large first sync the agent plans at a time. A plan of
// 100,000 creations held ≈ 22 MB of ops, nodes and decisions at once, the largest part
// of an agent's heap during a first sync; a window of 16,384 held ≈ 3.6 MB, and with
// what the commits of its ops hold until their echo (the commit items, our own seqs)
// ≈ 9 MB of a writer's live heap at its peak; a window of 8,192 holds half, for 13
// plans instead of 7, each a pass over the trees (≈ 40 ms at 100,000 paths:
// BenchmarkPlanWindowFirstUpload).
const planWindow = 8192

// planWhole is the most creations planned at once: a smaller first sync (W1's 10,000
// files) is one plan, whose ops start at once and hold ≈ 3.6 MB at most.
const planWhole = 16384

// actionable counts the ops that change something.
func actionable(ops []plan.Op) int {
	n := 0
	for _, op := range ops {
		if op.Kind != plan.Report {
			n++
		}
	}
	return n
}

// resumeRequested consumes a `syncagent resume` request, if one is waiting.
func (a *Agent) resumeRequested() bool {
	err := os.Remove(filepath.Join(a.cfg.StateDir, ResumeFileName))
	return err == nil
}

// RequestResume asks the agent whose state dir is stateDir to run the deletes its
// mass-delete breaker holds back.
func RequestResume(stateDir string) error {
	if _, err := os.Stat(filepath.Join(stateDir, state.FileName)); err != nil {
		return fmt.Errorf("no agent state in %q: %w", stateDir, err)
	}
	p := filepath.Join(stateDir, ResumeFileName)
	if err := os.WriteFile(p, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write resume request: %w", err)
	}
	return nil
}

// massDeletes counts the files a plan deletes on disk and on the server, leaving out
// moves: a delete whose content the same plan puts at another path (a renamed file or
// folder) loses nothing, and renaming a large folder must not trip the breaker.
func massDeletes(ops []plan.Op) (local, remote int) {
	if l, r := plan.DeleteCounts(ops); l == 0 && r == 0 {
		return 0, 0 // no sets of the hashes of a first upload's or download's every file
	}
	uploaded, downloaded := map[plan.Hash]bool{}, map[plan.Hash]bool{}
	for _, op := range ops {
		switch {
		case op.Kind == plan.Upload && op.Local != nil && op.Local.Type == proto.TypeFile:
			uploaded[op.Local.SHA256] = true
		case op.Kind == plan.Download && op.Remote != nil && op.Remote.Type == proto.TypeFile:
			downloaded[op.Remote.SHA256] = true
		}
	}
	for _, op := range ops {
		switch {
		case op.Kind == plan.DeleteLocal && op.Local != nil && op.Local.Type != proto.TypeDir:
			if op.Local.Type != proto.TypeFile || !downloaded[op.Local.SHA256] {
				local++
			}
		case op.Kind == plan.DeleteRemote && op.Remote != nil && op.Remote.Type != proto.TypeDir:
			if op.Remote.Type != proto.TypeFile || !uploaded[op.Remote.SHA256] {
				remote++
			}
		}
	}
	return local, remote
}

// exceedsDeleteLimit applies the breaker's rule to the counts of massDeletes: more than
// plan.MassDeleteMinFiles files and more than maxPercent of the tracked ones, or every
// tracked file of two or more (a folder found empty: a volume that did not mount looks
// the same as everything deleted).
func exceedsDeleteLimit(local, remote, tracked int, maxPercent float64) bool {
	over := func(n int) bool {
		return n > plan.MassDeleteMinFiles && float64(n) > float64(tracked)*maxPercent/100 ||
			n >= 2 && n >= tracked
	}
	return over(local) || over(remote)
}

// breaker holds back a plan's deletes when they exceed the configured share; it returns
// the ops to run and whether it tripped.
func (a *Agent) breaker(ops []plan.Op) ([]plan.Op, bool) {
	l, r := massDeletes(ops)
	if a.cfg.AllowMassDelete || !exceedsDeleteLimit(l, r, plan.TrackedFiles(a.trees.Synced), a.cfg.MaxDeletePercent) {
		a.st.setBreaker(false, 0, 0)
		return ops, false
	}
	if a.resumeRequested() {
		a.log.Warn("mass delete confirmed by resume; running the held deletes", "localDeletes", l, "remoteDeletes", r)
		a.st.setBreaker(false, 0, 0)
		return ops, false
	}
	if !a.st.breakerTripped() {
		a.log.Error("MASS DELETE HELD BACK: this plan would delete more than the allowed share of tracked files; "+
			"nothing is deleted until you run `syncagent resume --dir "+a.cfg.Dir+"` (or restart with --allow-mass-delete)",
			"localDeletes", l, "remoteDeletes", r, "trackedFiles", plan.TrackedFiles(a.trees.Synced), "maxDeletePercent", a.cfg.MaxDeletePercent)
	}
	a.st.setBreaker(true, l, r)
	return plan.WithoutDeletes(ops), true
}

// resumeWaiting reports whether a resume request waits, without consuming it.
func (a *Agent) resumeWaiting() bool {
	_, err := os.Stat(filepath.Join(a.cfg.StateDir, ResumeFileName))
	return err == nil
}

// reportAll keeps the plan's Report ops for the status page and logs each new one once:
// what the mode keeps from syncing (a local-only file in receive-only mode, …).
func (a *Agent) reportAll(ops []plan.Op) {
	cur := map[string]string{}
	for _, op := range ops {
		if op.Kind == plan.Report && len(cur) < maxReports {
			cur[op.Path] = op.Reason
		}
	}
	for p, why := range a.st.setReports(cur) {
		a.log.Info("not synced", "path", p, "reason", why)
	}
}

// execSlice is how many ops of a plan the executor gets at a time. Each slice's ops are
// cleared once it ran: a first upload or download of a large folder peaks at its end,
// with all four trees full, and then no longer holds the node copies and paths of what
// it already did (the array itself, 88 bytes an op, stays to the end: copying it into
// slices up front held it twice at the plan's own peak).
const execSlice = 10000

// runPlan runs a plan through the mass-delete breaker and executes it, with progress
// reporting. When the plan is a window of a larger first sync, the next window is
// planned as soon as one ran, with no scan in between (as the slices of one plan), until
// the plan is done, an op fails or is skipped, or there is nothing left. Between two
// windows it runs between (nil: nothing), which applies the changes feed: the next plan
// then also covers what it brought, and may no longer be a window. It reports whether
// the breaker held deletes back.
func (a *Agent) runPlan(ctx context.Context, w plan.Window, between func(context.Context) error) (out execute.Outcome, tripped bool, err error) {
	files, bytes := totals(w.Ops)
	stop := a.startProgress(files+w.RestFiles, bytes+w.RestBytes)
	for {
		ops, held := a.breaker(w.Ops)
		tripped = tripped || held
		more := w.RestFiles > 0
		a.st.setPending(actionable(ops) + int(w.RestFiles))
		var o execute.Outcome
		o, err = a.execute(ctx, ops)
		out.Add(o)
		if err != nil || !more || o.Failed > 0 || o.Replan || o.Done == 0 || held {
			break
		}
		if between != nil {
			if err = between(ctx); err != nil {
				break
			}
		}
		if w = a.planNow(); actionable(w.Ops) == 0 {
			break
		}
	}
	stop(err == nil)
	return out, tripped, err
}

// execute runs ops, in order. The caller must not use ops after it (a large plan's ops
// are let go as they run).
func (a *Agent) execute(ctx context.Context, ops []plan.Op) (execute.Outcome, error) {
	a.reportAll(ops)
	a.treesTouched = true
	n := a.execSlice
	if n <= 0 {
		n = execSlice
	}
	var out execute.Outcome
	var err error
	for rest := ops; len(rest) > 0 && err == nil; rest = rest[min(len(rest), n):] {
		part := rest[:min(len(rest), n)]
		var o execute.Outcome
		o, err = a.exec.Run(ctx, part)
		out.Add(o)
		if err == nil && len(o.Rescan) > 0 {
			err = a.rehashDoubted(ctx, o.Rescan)
		}
		if len(ops) > n {
			clear(part)
		}
	}
	return out, err
}

// rehashDoubted hashes again the files whose commit the server refused for their
// content (execute.Outcome.Rescan), whatever their stat key says: the plan after it
// uploads what the files hold now.
func (a *Agent) rehashDoubted(ctx context.Context, paths []string) error {
	for _, p := range paths {
		a.trees.Index.Delete(p)
	}
	return a.scanPaths(ctx, paths)
}

// backoff is an exponential backoff with full jitter.
type backoff struct {
	n        int
	min, max time.Duration
}

func (b *backoff) next() time.Duration {
	d := b.min << min(b.n, 16)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// warnUnreadable logs, once per path while the agent runs, a dir or entry its scans
// cannot read: it is kept as last seen (never taken for deleted), and not synced until
// the agent may read it.
func (a *Agent) warnUnreadable(p string, err error) {
	a.unreadableMu.Lock()
	defer a.unreadableMu.Unlock()
	if a.unreadable[p] {
		return
	}
	if a.unreadable == nil {
		a.unreadable = map[string]bool{}
	}
	a.unreadable[p] = true
	a.log.Warn("cannot read a path of the folder; it is left as last seen and not synced until it can be read",
		"path", p, "err", err.Error())
}
