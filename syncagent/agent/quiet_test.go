package agent

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/syncedfolder/synced-folder/syncagent/execute"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
)

// Trees a plan found quiet are not gone over again while nothing changes them: a feed
// page that only brings back our own commits, each already recorded, leaves them as
// they were, and the next plan trusts the verdict. A page with another agent's change
// changes them, and the next plan looks again and finds the download.
func TestOwnEchoDoesNotCheckQuietTreesAgain(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(da, "d/f1"), "one")
	write(t, filepath.Join(da, "d/f2"), "two")
	a := newAgent(t, srv, da, "A", nil)
	once(t, a)
	b := newAgent(t, srv, db, "B", nil)
	once(t, b)
	ctx := context.Background()

	if w := a.planNow(); len(w.Ops) != 0 {
		t.Fatalf("A after its upload plans %d ops, want none", len(w.Ops))
	}
	checks, changes := a.quietChecks, a.trees.Changes()

	// The feed from its start: A's own commits, as if their answers had just been
	// recorded (execute.OwnSeq) and the feed brought them back.
	echo, err := a.cfg.Server.Changes(ctx, 0, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range echo.Entries {
		a.own[e.Path] = execute.OwnSeq{Floor: e.Seq, Recorded: e.Seq}
	}
	if err := a.applyPage(ctx, page{resp: echo}); err != nil {
		t.Fatal(err)
	}
	if got := a.trees.Changes(); got != changes {
		t.Errorf("the echo of A's own commits changed its trees %d times", got-changes)
	}
	if w := a.planNow(); len(w.Ops) != 0 || a.quietChecks != checks {
		t.Errorf("after the echo: %d ops, %d more passes over the trees; want none", len(w.Ops), a.quietChecks-checks)
	}

	write(t, filepath.Join(db, "d/f1"), "one, edited on B")
	once(t, b)
	since := a.cursor
	resp, err := a.cfg.Server.Changes(ctx, since, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.applyPage(ctx, page{resp: resp}); err != nil {
		t.Fatal(err)
	}
	w := a.planNow()
	if a.quietChecks != checks+1 {
		t.Errorf("after B's change: %d passes over the trees, want 1", a.quietChecks-checks)
	}
	if len(w.Ops) != 1 || w.Ops[0].Path != "d/f1" || w.Ops[0].Kind != plan.Download {
		t.Errorf("after B's change A plans %+v; want the download of d/f1", w.Ops)
	}
}
