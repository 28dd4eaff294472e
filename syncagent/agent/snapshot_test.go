package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/scan"
)

// Once removes the temp files a crash left (in the tree, in a temp dir, in an ignored
// dir) during its first scan, before anything is planned, and leaves the state dir alone;
// also when the scan's listings were made while New loaded the trees (ListAhead).
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
	leftovers := []string{"sub/" + scan.TempPrefix + "1", scan.TempPrefix + "d/x", "ignored/deep/" + scan.TempPrefix + "2"}
	for _, p := range leftovers {
		write(t, filepath.Join(dir, p), "partial download")
	}
	write(t, filepath.Join(dir, "ignored/deep/kept"), "ignored, not a temp file")
	a := newAgent(t, srv, dir, "A", func(c *Config) { c.ListAhead = listAhead })
	write(t, filepath.Join(dir, ".syncfolder", scan.TempPrefix+"state"), "under the state dir")
	once(t, a)
	for _, p := range []string{"sub/" + scan.TempPrefix + "1", scan.TempPrefix + "d", "ignored/deep/" + scan.TempPrefix + "2"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", p, err)
		}
	}
	for _, p := range []string{"keep.txt", "ignored/deep/kept", ".syncfolder/" + scan.TempPrefix + "state"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
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
	synced, remote, index := a.synced, a.remote, a.local.Index
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newAgent(t, srv, dir, "A", func(c *Config) { c.ListAhead = true }) // as --once starts
	if has, err := b.db.HasSnapshot(); err != nil || !has {
		t.Fatalf("no snapshot after Close: %v", err)
	}
	if !reflect.DeepEqual(b.synced, synced) || !reflect.DeepEqual(b.remote, remote) || !reflect.DeepEqual(b.local.Index, index) {
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
