package agent

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/execute"
	"github.com/syncedfolder/synced-folder/syncagent/scan"
)

// Once removes the temp files a crash left (in the tree, in a temp dir such as the
// executor's staging dir, in an ignored dir) during its first scan, before anything is
// planned, uploads none of them, and leaves the state dir alone; also when the scan's
// listings were made while New loaded the trees (ListAhead).
func TestOnceRemovesLeftoverTempFiles(t *testing.T) {
	for _, ahead := range []bool{false, true} {
		t.Run(map[bool]string{false: "listed by the scan", true: "listed ahead"}[ahead], func(t *testing.T) {
			onceRemovesLeftoverTempFiles(t, ahead)
		})
	}
}

func onceRemovesLeftoverTempFiles(t *testing.T, listAhead bool) {
	srv := startServer(t)
	dir := filepath.Join(t.TempDir(), "a")
	write(t, filepath.Join(dir, "keep.txt"), "keep")
	write(t, filepath.Join(dir, ".syncignore"), "ignored/\n")
	leftovers := []string{"sub/" + scan.TempPrefix + "1", scan.TempPrefix + "d/x", "ignored/deep/" + scan.TempPrefix + "2",
		execute.StageDir + "/" + scan.TempPrefix + "3", execute.StageDir + "/sub/whole"}
	for _, p := range leftovers {
		write(t, filepath.Join(dir, p), "partial download")
	}
	write(t, filepath.Join(dir, "ignored/deep/kept"), "ignored, not a temp file")
	a := newAgent(t, srv, dir, "A", func(c *Config) { c.ListAhead = listAhead })
	write(t, filepath.Join(dir, ".syncfolder", scan.TempPrefix+"state"), "under the state dir")
	once(t, a)
	for _, p := range []string{"sub/" + scan.TempPrefix + "1", scan.TempPrefix + "d", "ignored/deep/" + scan.TempPrefix + "2", execute.StageDir} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", p, err)
		}
	}
	for _, p := range []string{"keep.txt", "ignored/deep/kept", ".syncfolder/" + scan.TempPrefix + "state"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for p := range a.trees.Remote.All() {
		if strings.Contains(p, scan.TempPrefix) {
			t.Errorf("%s: uploaded", p)
		}
	}
}

// Close stores the trees' snapshot; the next agent starts from it with the same trees
// as from the rows, and a change drops it again.
func TestAgentRestartsFromTheSnapshot(t *testing.T) {
	srv := startServer(t)
	dir := filepath.Join(t.TempDir(), "a")
	write(t, filepath.Join(dir, "d/f1"), "one")
	write(t, filepath.Join(dir, "d/f2"), "two")
	if err := os.Symlink("d/f1", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, srv, dir, "A", nil)
	once(t, a)
	synced, remote, index := maps.Collect(a.trees.Synced.All()), maps.Collect(a.trees.Remote.All()), maps.Collect(a.trees.Index.All())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newAgent(t, srv, dir, "A", func(c *Config) { c.ListAhead = true }) // as --once starts
	if has, err := b.db.HasSnapshot(); err != nil || !has {
		t.Fatalf("no snapshot after Close: %v", err)
	}
	if !maps.Equal(maps.Collect(b.trees.Synced.All()), synced) || !maps.Equal(maps.Collect(b.trees.Remote.All()), remote) ||
		!maps.Equal(maps.Collect(b.trees.Index.All()), index) {
		t.Errorf("trees from the snapshot differ from the agent's before the restart")
	}
	once(t, b) // nothing changed: the snapshot stays
	if has, _ := b.db.HasSnapshot(); !has {
		t.Errorf("an unchanged pass dropped the snapshot")
	}
	write(t, filepath.Join(dir, "d/f3"), "three")
	once(t, b)
	if has, _ := b.db.HasSnapshot(); has {
		t.Errorf("the snapshot survived a change")
	}
}

// An agent restarted from a snapshot whose trees were quiet still sees every kind of
// change made while it was down: on the server (the feed), and on disk (an edit, a new
// file, a delete).
func TestQuietSnapshotStillSeesEveryChange(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(da, "d/f1"), "one")
	write(t, filepath.Join(da, "d/f2"), "two")
	write(t, filepath.Join(da, "g/f3"), "three")
	a := newAgent(t, srv, da, "A", nil)
	once(t, a)
	b := newAgent(t, srv, db, "B", nil)
	once(t, b)
	sameManifest(t, da, db)
	restart := func(change func()) {
		t.Helper()
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		change()
		b = newAgent(t, srv, db, "B", func(c *Config) { c.ListAhead = true })
		if !b.quietAtLoad {
			t.Fatal("the restarted agent's snapshot was not found quiet")
		}
		once(t, b)
		once(t, a)
		sameManifest(t, da, db)
	}
	restart(func() { // on the server
		write(t, filepath.Join(da, "d/new"), "from A")
		once(t, a)
	})
	if read(t, filepath.Join(db, "d/new")) != "from A" {
		t.Fatal("the server's change did not come down")
	}
	restart(func() { write(t, filepath.Join(db, "d/f1"), "edited on B") })
	if read(t, filepath.Join(da, "d/f1")) != "edited on B" {
		t.Fatal("the edit made while the agent was down did not go up")
	}
	restart(func() { write(t, filepath.Join(db, "g/h/new"), "new on B") })
	if read(t, filepath.Join(da, "g/h/new")) != "new on B" {
		t.Fatal("the file added while the agent was down did not go up")
	}
	restart(func() {
		if err := os.Remove(filepath.Join(db, "d/f2")); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Lstat(filepath.Join(da, "d/f2")); !os.IsNotExist(err) {
		t.Fatalf("the delete made while the agent was down did not reach A: %v", err)
	}
}
