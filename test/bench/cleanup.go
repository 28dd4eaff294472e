package bench

import (
	"fmt"
	"os"
	"time"
)

// Folder removal. On ext4 without a journal (this machine's disk) the inode allocator
// skips every inode deleted in the last 60 s (360 s while its inode table block is dirty):
// each file created then pays a lookup per recently deleted inode it passes over. A run
// that follows the removal of tens of thousands of files is slower than one that does
// not, whichever system it measures. So the harness removes a group's folders only when
// every repetition of every system of the group is done, flushes the file system and
// lets the window pass (Config.Settle) before anything else is measured; and a group
// whose runs would not fit on the disk frees room by removing that group's earlier
// folders before a run, which the log reports.

// diskMargin is the free space left beyond a run's estimate.
const diskMargin = 2 << 30

// smallTreeBytes is an estimate of the disk a run of files small files takes: the
// files of 1–16 KiB (4 KiB blocks) in the writer, a reader, the server's store or a
// peer's database, and staging, with room to spare.
func smallTreeBytes(files int) int64 { return int64(files) * 16 << 10 * 4 }

// removeFolders removes dirs (unless SYNCBENCH_KEEP is set), then, when settle, flushes
// the work dir's file system and waits until Config.Settle has passed since the removal
// ended, so the next measured run creates files without passing over the removed ones.
func (r *runner) removeFolders(dirs []string, settle bool) {
	if os.Getenv("SYNCBENCH_KEEP") != "" {
		return
	}
	r.remove(dirs, settle)
}

// remove is removeFolders whatever SYNCBENCH_KEEP says.
func (r *runner) remove(dirs []string, settle bool) {
	if len(dirs) == 0 {
		return
	}
	t0 := time.Now()
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			r.logf("remove %s: %v", d, err)
		}
	}
	r.logf("removed %d folder(s) in %.1fs", len(dirs), time.Since(t0).Seconds())
	if !settle || r.cfg.Settle <= 0 {
		return
	}
	if err := syncFS(r.cfg.WorkDir); err != nil {
		r.logf("flush %s: %v", r.cfg.WorkDir, err)
	}
	// Counted from the end of the removal: the inodes it freed last are the ones new
	// files would skip longest (a removal of 100,000 files takes minutes here).
	wait := r.cfg.Settle
	r.logf("waiting %.0fs for the file system to forget the removed inodes", wait.Seconds())
	select {
	case <-r.ctx.Done():
	case <-time.After(wait):
	}
}

// makeRoom removes the folders in pending when the work dir has less than need bytes
// (plus a margin) free, and reports whether it did. free is the work dir's free space.
func (r *runner) makeRoom(pending *[]string, need, free int64, settle bool) bool {
	if free >= need+diskMargin || len(*pending) == 0 {
		return false
	}
	r.logf("%s free, a run needs about %s: removing %d earlier folder(s) of this workload before it",
		human(float64(free), "bytes"), human(float64(need+diskMargin), "bytes"), len(*pending))
	r.removeFolders(*pending, settle)
	*pending = nil
	return true
}

// freeSpace is the space an unprivileged writer can use on dir's file system.
func freeSpace(dir string) (int64, error) {
	n, err := availBytes(dir)
	if err != nil {
		return 0, fmt.Errorf("statfs %q: %w", dir, err)
	}
	return n, nil
}
