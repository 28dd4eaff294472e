package execute

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// uploaded is an env whose server holds the files names, each with "content of " and
// its name.
func uploaded(t *testing.T, names []string) *env {
	t.Helper()
	up := newEnv(t)
	for _, n := range names {
		writeFile(t, filepath.Join(up.dir, n), "content of "+n)
	}
	up.rescan(t)
	up.run(t, up.plan())
	return up
}

// downloadWhileStateHeld uploads three small files, then runs their download on a
// second executor while a transaction holds its state database (one connection), so
// that the download's record cannot start before the test says so. It returns that
// executor's env, the names, and the function that releases the database.
func downloadWhileStateHeld(t *testing.T) (*env, []string, func()) {
	t.Helper()
	names := []string{"a.txt", "d/b.txt", "d/c.txt"}
	down := newEnvOn(t, uploaded(t, names).cl.BaseURL())
	down.pull(t)
	down.rescan(t)
	ops := down.plan()
	held, release := make(chan struct{}), make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		holder <- down.x.State.Update(context.Background(), func(*state.Tx) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	type result struct {
		out Outcome
		err error
	}
	ran := make(chan result, 1)
	go func() {
		out, err := down.x.Run(context.Background(), ops)
		ran <- result{out, err}
	}()
	var r result
	select {
	case r = <-ran:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("Run waited for the state database: the downloads' record is not left running")
	}
	if r.err != nil || r.out.Done != len(ops) || r.out.Failed != 0 {
		t.Fatalf("download while the state is held: %+v, %v", r.out, r.err)
	}
	for _, n := range names {
		if got, err := os.ReadFile(filepath.Join(down.dir, n)); err != nil || string(got) != "content of "+n {
			t.Errorf("%s on disk: %q, %v", n, got, err)
		}
		if _, ok := down.x.Trees.Synced.Get(n); !ok {
			t.Errorf("%s not in the Synced tree once landed", n)
		}
	}
	select {
	case <-down.x.Recorded():
		t.Fatal("the downloads' record ended while the state database was held")
	default:
	}
	var once bool
	return down, names, func() {
		if !once {
			once = true
			close(release)
			if err := <-holder; err != nil {
				t.Errorf("holding transaction: %v", err)
			}
		}
	}
}

// A download slice is recorded in the background: Run returns with the files landed and
// in the trees, the state gets them once its database is free, and WaitRecorded says so.
func TestDownloadIsRecordedBesideWhatFollows(t *testing.T) {
	down, names, release := downloadWhileStateHeld(t)
	// Index writes of these paths must wait for the record; others need not.
	for _, n := range append([]string{"d"}, names...) { // d: a dir the download made
		if !down.x.Recording(n) {
			t.Errorf("Recording(%q) = false while its record waits", n)
		}
	}
	if down.x.Recording("e") || down.x.Recording("other.txt") {
		t.Error("Recording is true for a path the record does not write")
	}
	release()
	if err := down.x.WaitRecorded(); err != nil {
		t.Fatal(err)
	}
	if down.x.Recording(names[0]) {
		t.Errorf("Recording(%q) = true once the record is collected", names[0])
	}
	stored, err := down.x.State.Trees()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		want, _ := down.x.Trees.Synced.Get(n)
		if got, ok := stored.Synced.Get(n); !ok || got != want {
			t.Errorf("state's synced %s = %+v, %v; want %+v", n, got, ok, want)
		}
		if _, ok := stored.Index.Get(n); !ok {
			t.Errorf("state's index lacks %s", n)
		}
	}
}

// A download slice's record takes the state's one connection only once the executor
// runs again or something waits for the record: the agent's writes between two slices
// (the feed's next pages) go first instead of waiting for it.
func TestDownloadRecordWaitsForTheNextRunOrAWait(t *testing.T) {
	names := []string{"a.txt", "d/b.txt"}
	down := newEnvOn(t, uploaded(t, names).cl.BaseURL())
	down.pull(t)
	down.rescan(t)
	out, err := down.x.Run(context.Background(), down.plan())
	if err != nil || out.Done == 0 || out.Failed != 0 {
		t.Fatalf("download: %+v, %v", out, err)
	}
	synced := func() int {
		t.Helper()
		stored, err := down.x.State.Trees()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, name := range names {
			if _, ok := stored.Synced.Get(name); ok {
				n++
			}
		}
		return n
	}
	// Time enough for a record left free to run (it takes milliseconds here).
	time.Sleep(200 * time.Millisecond)
	if n := synced(); n != 0 {
		t.Fatalf("the state holds %d of the landed files before the executor ran again", n)
	}
	if _, err := down.x.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for synced() != len(names) {
		if time.Now().After(deadline) {
			t.Fatal("the record did not run once the executor ran again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := down.x.WaitRecorded(); err != nil {
		t.Fatal(err)
	}
}

// A record that fails (the database closed under it) is reported by WaitRecorded, and
// the files leave the Synced tree: the next plan looks at them again rather than trust
// a state that never got them.
func TestFailedDownloadRecordForgetsTheSyncedNodes(t *testing.T) {
	down, names, release := downloadWhileStateHeld(t)
	// Closed before the holder lets go: the record, waiting for the one connection or
	// yet to ask for it, finds the database closed. (Closed beside the release, the
	// record won the race on a fast file system.)
	if err := down.x.State.Close(); err != nil {
		t.Fatal(err)
	}
	release()
	if err := down.x.WaitRecorded(); err == nil {
		t.Fatal("WaitRecorded = nil for a record on a closed database")
	}
	for _, n := range names {
		if _, ok := down.x.Trees.Synced.Get(n); ok {
			t.Errorf("%s still in the Synced tree after its record failed", n)
		}
		if _, ok := down.x.Trees.Index.Get(n); !ok {
			t.Errorf("%s left the index: the file is on disk", n)
		}
	}
	if err := down.x.WaitRecorded(); err != nil {
		t.Errorf("second WaitRecorded = %v; want nil (collected)", err)
	}
}

// A slice of more files than leaveRunning is recorded before Run returns: its results
// would otherwise stay in memory beside the next slice's.
func TestLargeDownloadSliceIsRecordedBeforeRunReturns(t *testing.T) {
	names := []string{"a.txt", "b.txt", "c.txt"}
	down := newEnvOn(t, uploaded(t, names).cl.BaseURL())
	down.x.leaveRunning = len(names) - 1
	down.pull(t)
	down.rescan(t)
	out, err := down.x.Run(context.Background(), down.plan())
	if err != nil || out.Done != len(names) {
		t.Fatalf("download: %+v, %v", out, err)
	}
	if down.x.Recorded() != nil {
		t.Fatal("the record of a slice over leaveRunning was left running")
	}
	stored, err := down.x.State.Trees()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, ok := stored.Synced.Get(n); !ok {
			t.Errorf("state's synced lacks %s when Run returned", n)
		}
	}
}

// TestPlanFlushMakesEveryLandedEntryDurable: where syncfs exists, a slice holding
// anything but files fsynced on their own is flushed whole, and a slice of those files
// gets their dirs fsynced (the renames); where it is missing, every file was fsynced on
// its own and the dirs of every entry, and each new dir, are fsynced.
func TestPlanFlushMakesEveryLandedEntryDurable(t *testing.T) {
	file := func(p string, size int64) landed {
		return landed{op: plan.Op{Path: p, Remote: &plan.Node{Type: proto.TypeFile, Size: size}}}
	}
	dir := func(p string) landed {
		return landed{op: plan.Op{Path: p, Remote: &plan.Node{Type: proto.TypeDir}}}
	}
	link := func(p string) landed {
		return landed{op: plan.Op{Path: p, Remote: &plan.Node{Type: proto.TypeSymlink, Target: "x"}}}
	}
	const big = 5 << 20
	for _, tc := range []struct {
		name       string
		done       []landed
		haveSyncFS bool
		eachAbove  int64
		wholeFS    bool
		dirs       []string
	}{
		{"syncfs, a small file among large ones", []landed{file("a/big", big), file("a/small", 10)}, true, 4 << 20, true, nil},
		{"syncfs, only large files", []landed{file("a/big", big), file("top", big), file("a/b/big", big), file("a/big2", big)}, true, 4 << 20, false, []string{".", "a", "a/b"}},
		{"syncfs, a new dir", []landed{file("big", big), dir("d")}, true, 4 << 20, true, nil},
		{"syncfs, a symlink", []landed{file("big", big), link("d/l")}, true, 4 << 20, true, nil},
		{"no syncfs", []landed{file("a/small", 10), file("top", big), dir("d/e"), link("l"), file("a/c", 1)}, false, -1, false, []string{".", "a", "d", "d/e"}},
		{"nothing landed", nil, true, 4 << 20, false, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wholeFS, dirs := planFlush(tc.done, tc.haveSyncFS, tc.eachAbove)
			if wholeFS != tc.wholeFS || !slices.Equal(dirs, tc.dirs) {
				t.Errorf("planFlush = %v, %q; want %v, %q", wholeFS, dirs, tc.wholeFS, tc.dirs)
			}
		})
	}
}
