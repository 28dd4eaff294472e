package agent

import (
	"context"
	"errors"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/execute"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// followUploads long-polls the server's list of uploads in progress and hands each new
// one to the loop, which may prefetch it (execute.Executor.Prefetch). It ends with ctx,
// or at once against a server without the list.
func (a *Agent) followUploads(ctx context.Context, out chan<- proto.Upload) {
	var after int64
	bo := backoff{min: time.Second, max: 30 * time.Second}
	for ctx.Err() == nil {
		resp, err := a.cfg.Server.Uploads(ctx, after, a.cfg.LongPollWait)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, client.ErrNotSupported):
			a.log.Debug("the server lists no uploads in progress; large files are fetched after their commit")
			return
		case err != nil:
			// The changes feed reports the server's outages; this only waits.
			if sleep(ctx, bo.next()) != nil {
				return
			}
			continue
		}
		bo.reset()
		if resp.Last < after {
			// The server restarted and numbers its uploads from 1 again.
			after = 0
			continue
		}
		after = resp.Last
		for _, up := range resp.Uploads {
			after = max(after, up.No)
			select {
			case out <- up:
			case <-ctx.Done():
				return
			default:
				// The loop is busy with more uploads than it would prefetch anyway.
			}
		}
	}
}

// prefetch starts copying an upload in progress of another agent, when this agent
// would download it: a large file, on a path it syncs, in a mode that receives.
func (a *Agent) prefetch(ctx context.Context, up proto.Upload) {
	if a.exec == nil || a.cfg.Mode == plan.SendOnly || up.Size < execute.PreuploadMin ||
		a.preupload != nil && a.preupload.Own(up.No, up.Path) {
		return
	}
	if _, err := proto.CleanPath(up.Path); err != nil || a.ignored(up.Path, false) {
		return
	}
	a.exec.Prefetch(ctx, up)
}
