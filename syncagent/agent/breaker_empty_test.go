package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A folder that comes up empty (a volume that did not mount, the state dir kept
// elsewhere, as the injected sidecar keeps it) looks like "the user deleted
// everything": deleting every tracked file trips the mass-delete breaker whatever
// their number, and nothing is deleted on the server or on other agents (review,
// 2026-12-06: with up to MassDeleteMinFiles files the breaker never tripped).
func TestEmptyFolderAtStartTripsTheBreaker(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	stateA := filepath.Join(root, "state-a")
	for i := range 10 {
		write(t, filepath.Join(da, "docs", "f"+string(rune('0'+i))+".txt"), strings.Repeat("data", i+1))
	}
	withState := func(c *Config) { c.StateDir = stateA }
	a := newAgent(t, srv, da, "A", withState)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	a.Close()
	// The volume does not come back: the mount point is an empty dir.
	if err := os.Rename(da, da+".unmounted"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(da, 0o755); err != nil {
		t.Fatal(err)
	}
	a2 := newAgent(t, srv, da, "A", withState)
	if err := a2.Once(context.Background()); !errors.Is(err, ErrMassDelete) {
		t.Errorf("A's pass over an empty folder: %v; want the breaker tripped", err)
	}
	once(t, b)
	left, _ := filepath.Glob(filepath.Join(db, "docs", "*"))
	if len(left) == 0 {
		t.Errorf("an empty (unmounted) folder at start deleted every file on the server and on B")
	}
}
