//go:build unix

package execute

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/syncedfolder/synced-folder/syncserver/client"
)

// An inlined file is checked when it is opened to be sent, on the open file: a file put
// over its path since the plan (another inode, same size), or a fifo (whose open must not
// block the agent), is left out for a re-plan and never reaches the server.
func TestInlinedFileReplacedSinceThePlanIsSkipped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, p string)
	}{
		{"renamed over", func(t *testing.T, p string) {
			tmp := p + ".new"
			writeFile(t, tmp, "CONTENT OF b")
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			for _, n := range []string{"a", "b", "c"} {
				writeFile(t, filepath.Join(e.dir, n+".txt"), "content of "+n)
			}
			e.rescan(t)
			ops := e.plan()
			tc.replace(t, filepath.Join(e.dir, "b.txt"))
			ran := make(chan Outcome, 1)
			go func() { ran <- e.run(t, ops) }()
			var out Outcome
			select {
			case out = <-ran:
			case <-time.After(30 * time.Second):
				t.Fatal("the upload did not finish: the open of b.txt blocked")
			}
			if !out.Replan || out.Done != 2 || out.Failed != 0 {
				t.Errorf("outcome %+v; want a and c committed, b skipped for a re-plan", out)
			}
			if _, err := e.cl.Entry(context.Background(), "b.txt"); !client.IsNotFound(err) {
				t.Errorf("b.txt reached the server: %v", err)
			}
		})
	}
}
