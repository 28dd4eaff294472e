package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/watch"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// maxOnceRounds bounds the plan-execute rounds of one --once pass; a folder that keeps
// changing under the agent is an error there, not a reason to spin.
const maxOnceRounds = 50

// maxOnceFailures bounds consecutive failed attempts (server down) of a --once pass.
const maxOnceFailures = 8

// Once runs one full pass: catch up with the server, scan, plan and execute until the
// folder and the server agree. It returns nil when they do, ErrMassDelete when the
// breaker held deletes back, and an error when it cannot get there.
func (a *Agent) Once(ctx context.Context) error {
	// Leftover temp files are removed by the first full scan's walk (before any plan is
	// executed), not by a walk of their own.
	swept := false
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	failures := 0
	for round := 0; round < maxOnceRounds; round++ {
		done, err := a.onceRound(ctx, &swept)
		if werr := a.waitDownloadRecord(); err == nil {
			// A pass is over once its downloads are recorded.
			err = werr
		}
		// A listing made ahead serves the first round's scan only; a round that failed
		// before its scan does not leave it to a retry seconds later.
		a.ahead.Stop()
		a.ahead = nil
		if err == nil && done {
			a.st.synced(time.Now())
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrMassDelete) || ctx.Err() != nil || !retryable(err) {
				return err
			}
			failures++
			a.st.setError(err)
			if failures >= maxOnceFailures {
				return fmt.Errorf("giving up after %d attempts: %w", failures, err)
			}
			d := bo.next()
			a.log.Warn("sync pass failed; retrying", "err", err.Error(), "in", d.String())
			if err := sleep(ctx, d); err != nil {
				return err
			}
			continue
		}
		failures = 0
		bo.reset()
	}
	return fmt.Errorf("folder did not settle after %d rounds (is something writing to it?)", maxOnceRounds)
}

// onceRound reports done when the plan had nothing to do. Until *swept, its full scan
// also removes leftover temp files (and sets *swept when it completes).
func (a *Agent) onceRound(ctx context.Context, swept *bool) (bool, error) {
	if err := a.catchUp(ctx); err != nil {
		return false, err
	}
	var sw *scan.Sweep
	if !*swept {
		sw = a.sweep()
	}
	if err := a.scanAllSweep(ctx, sw); err != nil {
		return false, err
	}
	*swept = true
	w := a.planNow()
	if actionable(w.Ops) == 0 {
		a.reportAll(w.Ops)
		a.st.setPending(0)
		return true, nil
	}
	out, tripped, err := a.runPlan(ctx, w, a.catchUp)
	if err != nil {
		return false, err
	}
	if tripped {
		return false, ErrMassDelete
	}
	if out.Failed > 0 {
		return false, fmt.Errorf("%d operations failed (see the warnings above)", out.Failed)
	}
	return false, nil
}

// retryable reports whether a failed pass may succeed later: the server was unreachable
// or busy, or a local race (a file changing while read).
func retryable(err error) bool {
	return client.IsTransient(err) || !client.IsUnauthorized(err) && !client.IsBadRequest(err)
}

// Run syncs until ctx ends. Server outages are retried with backoff; they never stop it.
func (a *Agent) Run(ctx context.Context) error {
	// A listing made ahead would be stale by the first full scan, which waits for the
	// feed and may follow watcher events: the scan lists the folder itself.
	a.ahead.Stop()
	a.ahead = nil
	a.removeTempFiles()
	// One page waits while the next is fetched: while a window of a first sync runs,
	// more would only wait in memory (four held 4–6 MB of decoded entries).
	pages := make(chan page, 1)
	pullCtx, stopPull := context.WithCancel(ctx)
	defer stopPull()
	go a.pull(pullCtx, pages)

	// Large files another agent is uploading are fetched while they are sent.
	var uploads chan proto.Upload
	if a.cfg.Mode != plan.SendOnly {
		uploads = make(chan proto.Upload, 16)
		go a.followUploads(pullCtx, uploads)
	}
	defer a.exec.StopPrefetches()

	var batches <-chan watch.Batch
	if a.cfg.Watch {
		w, err := watch.New(a.cfg.Dir, watch.Options{Ignore: a.ignored, Logger: a.log})
		if err != nil {
			a.log.Error("file watcher unavailable; relying on periodic rescans", "err", err.Error())
		} else {
			defer w.Close()
			batches = w.Batches()
		}
	}
	rescan := time.NewTicker(a.cfg.RescanInterval)
	defer rescan.Stop()
	// While the breaker holds deletes, or local changes wait for the server, a short
	// tick looks for a resume request and retries.
	poll := time.NewTicker(time.Second)
	defer poll.Stop()

	// drain applies the feed pages that have arrived, without waiting for more, before
	// a cycle.
	apply := func(ctx context.Context, p page) error {
		if err := a.applyPage(ctx, p); err != nil {
			return fmt.Errorf("record changes: %w", err)
		}
		return nil
	}
	drain := func(ctx context.Context) error {
		for {
			select {
			case p := <-pages:
				if err := apply(ctx, p); err != nil {
					return err
				}
			default:
				return nil
			}
		}
	}
	// betweenWindows drains the feed between the windows of a first sync and, while
	// more than a window's worth of our own commits wait for their echo (each holds an
	// OwnSeq until the feed passes it: 100,000 of them in a first upload that ran
	// ahead of its feed), waits for the feed's next pages, at most ownBacklogWait.
	betweenWindows := func(ctx context.Context) error {
		if err := drain(ctx); err != nil {
			return err
		}
		if len(a.own) <= a.window() {
			return nil
		}
		start, before := time.Now(), len(a.own)
		defer func() {
			a.log.Debug("waited for the echo of our own commits", "before", before, "after", len(a.own), "took", time.Since(start).String())
		}()
		wait := time.NewTimer(ownBacklogWait)
		defer wait.Stop()
		for len(a.own) > a.window() {
			select {
			case p := <-pages:
				if err := apply(ctx, p); err != nil {
					return err
				}
			case <-wait.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	var (
		caughtUp = false
		full     = true
		dirty    = map[string]bool{}
		remoteCh = false
		retryAt  time.Time
		bo       = backoff{min: 500 * time.Millisecond, max: 30 * time.Second}
		replans  = 0
	)
	for {
		work := caughtUp && (full || len(dirty) > 0 || remoteCh) && !time.Now().Before(retryAt)
		if !work {
			select {
			case <-ctx.Done():
				return nil
			case p := <-pages:
				if err := apply(ctx, p); err != nil {
					return err
				}
				if !p.resp.More {
					caughtUp = true
				}
				remoteCh = true
			case b, ok := <-batches:
				if !ok {
					batches = nil
					a.log.Error("file watcher stopped; relying on periodic rescans")
					continue
				}
				a.log.Debug("watcher batch", "paths", len(b.Paths), "full", b.Full, "first", firstOf(b.Paths))
				if b.Full {
					full = true
				}
				for _, p := range b.Paths {
					dirty[p] = true
				}
			case <-rescan.C:
				full = true
			case <-poll.C:
				if a.st.breakerTripped() && a.resumeWaiting() {
					remoteCh = true // plan again: the held deletes may now run
				}
				a.exec.ExpirePrefetches(time.Now())
			case up := <-uploads:
				a.prefetch(ctx, up)
			case <-a.exec.Recorded():
				// The last downloads' record ended while the loop had nothing to do.
				if err := a.waitDownloadRecord(); err != nil {
					a.log.Warn("downloaded files not recorded; planning them again", "err", err.Error())
					a.st.setError(err)
					remoteCh = true
				}
			}
			continue
		}
		// Drain what else arrived, so one cycle covers it.
		if err := drain(ctx); err != nil {
			return err
		}
		var err error
		if full {
			err = a.scanAll(ctx)
		} else if len(dirty) > 0 {
			paths := make([]string, 0, len(dirty))
			for p := range dirty {
				paths = append(paths, p)
			}
			err = a.scanPaths(ctx, paths)
		}
		if err == nil {
			full, dirty, remoteCh = false, map[string]bool{}, false
			var again, skipped bool
			again, skipped, err = a.cycle(ctx, betweenWindows)
			if werr := a.waitIndex(); err == nil {
				err = werr
			}
			if again {
				remoteCh = true
			}
			// Only ops skipped because the world moved on count toward the back-off: a
			// reader working through a long feed makes progress every cycle, and was held
			// back 0.4 s, 0.5 s, … between its pages when progress counted too.
			if skipped {
				replans++
				if replans > 3 {
					full = true
					retryAt = time.Now().Add(time.Duration(min(replans, 20)) * 100 * time.Millisecond)
				}
			} else {
				replans = 0
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.st.setError(err)
			d := bo.next()
			a.log.Warn("sync cycle failed; retrying", "err", err.Error(), "in", d.String())
			retryAt = time.Now().Add(d)
			remoteCh = true
			continue
		}
		bo.reset()
	}
}

// ownBacklogWait bounds the wait between two windows of a first sync for the feed to
// bring back our own commits (see Run's betweenWindows).
const ownBacklogWait = 2 * time.Second

// cycle plans and executes once; between the windows of a first sync it runs between
// (nil: nothing). It reports whether to plan again at once (something was done, or
// skipped), and whether ops were skipped because the world moved on.
func (a *Agent) cycle(ctx context.Context, between func(context.Context) error) (again, skipped bool, err error) {
	w := a.planNow()
	if actionable(w.Ops) == 0 {
		a.reportAll(w.Ops)
		a.st.setPending(0)
		a.st.synced(time.Now())
		a.st.setError(nil)
		return false, false, nil
	}
	out, _, err := a.runPlan(ctx, w, between)
	if err != nil {
		return false, false, err
	}
	if out.Failed > 0 {
		// Logged per op; retried after a backoff rather than at once.
		return out.Replan, out.Replan, fmt.Errorf("%d operations failed", out.Failed)
	}
	a.st.setError(nil)
	// Our own changes come back through the feed; plan again to settle them.
	return out.Replan || out.Done > 0, out.Replan, nil
}

// pull long-polls the changes feed and hands each answer to the loop.
func (a *Agent) pull(ctx context.Context, out chan<- page) {
	since, folderID := a.cursor, a.folderID
	bo := backoff{min: 200 * time.Millisecond, max: 30 * time.Second}
	wait := time.Duration(0) // the first call returns at once, to catch up
	for ctx.Err() == nil {
		resp, err := a.cfg.Server.Changes(ctx, since, wait, 1000)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.st.setServerUp(false)
			d := bo.next()
			a.log.Warn("changes feed unavailable; retrying", "err", err.Error(), "in", d.String())
			if sleep(ctx, d) != nil {
				return
			}
			continue
		}
		a.st.setServerUp(true)
		bo.reset()
		p := page{resp: resp}
		switch {
		case folderID != "" && resp.FolderID != folderID && since != 0:
			// The cursor is void: hand over an empty reset, then list from 0.
			p = page{resp: &proto.ChangesResponse{FolderID: resp.FolderID, More: true}, reset: true}
			since = 0
		case folderID != "" && resp.FolderID != folderID:
			p.reset = true // listed from 0 already: the entries are the new folder's
			since = resp.LastSeq
		default:
			since = resp.LastSeq
		}
		folderID = resp.FolderID
		select {
		case out <- p:
		case <-ctx.Done():
			return
		}
		if resp.More || p.reset {
			wait = 0
		} else {
			wait = a.cfg.LongPollWait
		}
	}
}

func firstOf(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	return paths[0]
}
