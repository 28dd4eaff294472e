package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// A plan this large logs its progress (files and bytes done of total, rate, ETA).
const (
	progressMinFiles = 500
	progressMinBytes = 128 << 20
	progressLogEvery = 5 * time.Second
	progressBarEvery = 200 * time.Millisecond
)

// totals counts the files and content bytes a plan transfers.
func totals(ops []plan.Op) (files int64, bytes int64) {
	for _, op := range ops {
		switch {
		case op.Kind == plan.Upload && op.Local != nil:
			files++
			if op.Local.Type == proto.TypeFile {
				bytes += op.Local.Size
			}
		case op.Kind == plan.Download && op.Remote != nil:
			files++
			if op.Remote.Type == proto.TypeFile {
				bytes += op.Remote.Size
			}
		case op.Kind == plan.DeleteLocal, op.Kind == plan.DeleteRemote:
			files++
		}
	}
	return files, bytes
}

// startProgress reports the progress of a plan of the given size until stop is called.
func (a *Agent) startProgress(files, bytes int64) (stop func(ok bool)) {
	bar := a.cfg.ProgressBar
	if bar == nil && files < progressMinFiles && bytes < progressMinBytes {
		return func(bool) {}
	}
	f0, b0 := a.counters.FilesDone.Load(), a.counters.BytesDone.Load()
	start := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{})
	line := func() (f, b int64, rate float64, eta time.Duration) {
		f = a.counters.FilesDone.Load() - f0
		b = min(a.counters.BytesDone.Load()-b0, bytes)
		el := time.Since(start).Seconds()
		if el > 0 {
			rate = float64(b) / el
		}
		if rate > 0 {
			eta = time.Duration(float64(bytes-b) / rate * float64(time.Second)).Round(time.Second)
		}
		return
	}
	go func() {
		defer close(finished)
		every := progressLogEvery
		if bar != nil {
			every = progressBarEvery
		}
		t := time.NewTicker(every)
		defer t.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f, b, rate, eta := line()
				if bar != nil {
					fmt.Fprintf(bar, "\r%s", renderBar(f, files, b, bytes, rate, eta))
				}
				if time.Since(lastLog) >= progressLogEvery && (files >= progressMinFiles || bytes >= progressMinBytes) {
					lastLog = time.Now()
					a.log.Info("sync progress", "files", f, "filesTotal", files, "bytes", b, "bytesTotal", bytes,
						"rateBytesPerSec", int64(rate), "eta", eta.String())
				}
			}
		}
	}()
	return func(ok bool) {
		close(done)
		<-finished
		f, b, rate, _ := line()
		if bar != nil {
			fmt.Fprintf(bar, "\r%s\n", renderBar(f, files, b, bytes, rate, 0))
		}
		if files >= progressMinFiles || bytes >= progressMinBytes {
			a.log.Info("sync pass finished", "ok", ok, "files", f, "filesTotal", files, "bytes", b, "bytesTotal", bytes,
				"took", time.Since(start).Round(time.Millisecond).String())
		}
	}
}

func renderBar(f, files, b, bytes int64, rate float64, eta time.Duration) string {
	const width = 30
	frac := 1.0
	switch {
	case bytes > 0:
		frac = float64(b) / float64(bytes)
	case files > 0:
		frac = float64(f) / float64(files)
	}
	frac = min(max(frac, 0), 1)
	n := int(frac * width)
	return fmt.Sprintf("[%s%s] %3.0f%% %d/%d files %s/%s %s/s ETA %s ",
		strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, f, files,
		human(b), human(bytes), human(int64(rate)), eta)
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
