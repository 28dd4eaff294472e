package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
	"github.com/syncedfolder/synced-folder/syncagent/state"
)

// newTree is a dir "t" of dirs of files, as paths a watcher reports.
func newTree(dirs, files int) map[string]bool {
	m := map[string]bool{"t": true}
	for d := range dirs {
		m[fmt.Sprintf("t/d%02d", d)] = true
		for f := range files {
			m[fmt.Sprintf("t/d%02d/f%03d", d, f)] = true
		}
	}
	return m
}

func TestSliceOfNewSplitsOnlyBatchesOfNewPaths(t *testing.T) {
	l := &scan.Local{Tree: plan.Tree{}, Index: map[string]state.IndexEntry{}}
	dirty, newBatch := newTree(50, 100), map[string]bool{}
	total := len(dirty)
	var seen []string
	for round := 0; len(dirty) > 0; round++ {
		if round > 10 {
			t.Fatal("slices do not end")
		}
		now, rest := sliceOfNew(dirty, newBatch, l)
		if len(now)+len(rest) != len(dirty) {
			t.Fatalf("round %d: %d + %d paths, want %d", round, len(now), len(rest), len(dirty))
		}
		if len(rest) > 0 && len(now) != newSlice {
			t.Fatalf("round %d: a slice of %d paths, want %d", round, len(now), newSlice)
		}
		if len(rest) > 0 && rest[len(rest)-1] != "t" {
			t.Errorf("round %d: the dir holding everything is not last: %q", round, rest[len(rest)-1])
		}
		for _, p := range now {
			if p == "t" && len(rest) > 0 {
				t.Errorf("round %d: the dir holding everything scanned before the last slice", round)
			}
			delete(dirty, p)
			delete(newBatch, p)
			l.Tree[p] = plan.Node{} // scanned
			seen = append(seen, p)
		}
	}
	if len(seen) != total {
		t.Errorf("scanned %d paths, want %d", len(seen), total)
	}
	if len(newBatch) != 0 {
		t.Errorf("%d paths left judged new", len(newBatch))
	}
}

func TestSliceOfNewKeepsABatchWithAKnownPathWhole(t *testing.T) {
	l := &scan.Local{Tree: plan.Tree{}, Index: map[string]state.IndexEntry{}}
	dirty, newBatch := newTree(50, 100), map[string]bool{}
	// One file the agent knows (a delete or a change): the breaker must see the whole
	// batch in one plan.
	dirty["old/file"] = true
	l.Tree["old/file"] = plan.Node{}
	l.Index["old/file"] = state.IndexEntry{}
	if now, rest := sliceOfNew(dirty, newBatch, l); len(rest) != 0 || len(now) != len(dirty) {
		t.Fatalf("split into %d and %d paths, want the %d whole", len(now), len(rest), len(dirty))
	}

	// A batch judged new, split once; then a path of the first slice, scanned since,
	// comes back (deleted by the user): what is left is scanned whole.
	delete(dirty, "old/file")
	now, rest := sliceOfNew(dirty, newBatch, l)
	if len(rest) == 0 {
		t.Fatal("a batch of new paths was not split")
	}
	for _, p := range now {
		delete(dirty, p)
		delete(newBatch, p)
		l.Tree[p] = plan.Node{}
	}
	dirty[now[0]] = true
	if now2, rest2 := sliceOfNew(dirty, newBatch, l); len(rest2) != 0 || len(now2) != len(dirty) {
		t.Fatalf("split into %d and %d paths after a scanned path came back, want the %d whole", len(now2), len(rest2), len(dirty))
	}
	if len(newBatch) != 0 {
		t.Errorf("%d paths still judged new", len(newBatch))
	}
}

func TestRunSyncsALargeTreeMovedInAtOnce(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	a := newAgent(t, srv, da, "A", func(c *Config) { c.Watch = true })
	b := newAgent(t, srv, db, "B", func(c *Config) { c.Watch = true })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx) }()
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}()
	// More files than a slice, written outside and moved in with one rename.
	stage := filepath.Join(root, "stage")
	n := newSlice*3/2 + 7
	for i := range n {
		write(t, filepath.Join(stage, fmt.Sprintf("d%02d", i%40), fmt.Sprintf("f%05d", i)), fmt.Sprintf("content %d %s", i, make([]byte, i%300)))
	}
	time.Sleep(300 * time.Millisecond) // both have caught up with the (empty) feed
	if err := os.Rename(stage, filepath.Join(da, "moved")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ma, mb := manifest(t, da), manifest(t, db)
		if len(ma) == n+41 && len(mb) == len(ma) {
			var diff []string
			for p, v := range ma {
				if mb[p] != v {
					diff = append(diff, p)
				}
			}
			if len(diff) == 0 {
				break
			}
			sort.Strings(diff)
			if time.Now().After(deadline) {
				t.Fatalf("%d paths differ, first %s", len(diff), diff[0])
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("A has %d paths, B %d, want %d", len(ma), len(mb), n+41)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
