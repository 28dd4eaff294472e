package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

func TestTwoAgentsConverge(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(da, "dir/sub/x.txt"), "hello")
	write(t, filepath.Join(da, "sp ace ü.txt"), "ünï côdé")
	write(t, filepath.Join(da, "empty"), "")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(rand.Uint32())
	}
	if err := os.WriteFile(filepath.Join(da, "big.bin"), big, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dir/sub/x.txt", filepath.Join(da, "link")); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	sameManifest(t, da, db)
	fi, err := os.Stat(filepath.Join(db, "big.bin"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("big.bin mode %v, %v; want 0640", fi.Mode(), err)
	}
	fa, _ := os.Stat(filepath.Join(da, "big.bin"))
	if !fi.ModTime().Equal(fa.ModTime()) {
		t.Errorf("mtime %v, want %v", fi.ModTime(), fa.ModTime())
	}

	// Edit, delete and add on B; A follows.
	big[len(big)/2] ^= 1
	if err := os.WriteFile(filepath.Join(db, "big.bin"), big, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(db, "dir")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(db, "new/file"), "new")
	upBefore := b.counters.BytesUp.Load()
	once(t, b)
	if up := b.counters.BytesUp.Load() - upBefore; up > 2<<20 {
		t.Errorf("a 1-byte change of a 3 MiB file uploaded %d bytes", up)
	}
	downBefore := a.counters.BytesDown.Load()
	once(t, a)
	if down := a.counters.BytesDown.Load() - downBefore; down > 2<<20 {
		t.Errorf("a 1-byte change of a 3 MiB file downloaded %d bytes", down)
	}
	sameManifest(t, da, db)
	if _, err := os.Stat(filepath.Join(da, "dir")); !os.IsNotExist(err) {
		t.Errorf("deleted dir still on A: %v", err)
	}
}

func TestUnchangedFilesAreNotUploadedAgainAfterRestart(t *testing.T) {
	srv := startServer(t)
	dir := filepath.Join(t.TempDir(), "a")
	for i := range 20 {
		write(t, filepath.Join(dir, "f", string(rune('a'+i))), strings.Repeat("x", i*1000))
	}
	a := newAgent(t, srv, dir, "A", nil)
	once(t, a)
	a.Close()
	a2 := newAgent(t, srv, dir, "A", nil)
	ups, err := a2.scanner.Full(context.Background(), a2.trees)
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 0 {
		t.Errorf("a rescan after restart re-hashed %d paths, want 0", len(ups))
	}
	once(t, a2)
	if n := a2.counters.BytesUp.Load() + a2.counters.FilesDone.Load(); n != 0 {
		t.Errorf("restart uploaded: %d bytes+files", n)
	}
}

func TestConcurrentEditsKeepBothVersions(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(da, "doc.txt"), "base")
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	write(t, filepath.Join(da, "doc.txt"), "edited on A")
	write(t, filepath.Join(db, "doc.txt"), "edited on B, the loser")
	once(t, a)
	once(t, b)
	once(t, a)
	sameManifest(t, da, db)
	if got := read(t, filepath.Join(db, "doc.txt")); got != "edited on A" {
		t.Errorf("doc.txt = %q, want the server's (A's) version", got)
	}
	matches, _ := filepath.Glob(filepath.Join(db, "doc.sync-conflict-*-B.txt"))
	if len(matches) != 1 || read(t, matches[0]) != "edited on B, the loser" {
		t.Fatalf("conflict copies %v; want one holding B's bytes", matches)
	}
	if !proto.IsConflictPath(filepath.Base(matches[0])) {
		t.Errorf("%s is not a conflict path", matches[0])
	}
	if b.counters.Conflicts.Load() != 1 {
		t.Errorf("conflicts counter %d", b.counters.Conflicts.Load())
	}
}

func TestDeleteNeverBeatsModify(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(da, "keep.txt"), "v1")
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	if err := os.Remove(filepath.Join(da, "keep.txt")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(db, "keep.txt"), "v2 from B")
	once(t, b)
	once(t, a)
	if got := read(t, filepath.Join(da, "keep.txt")); got != "v2 from B" {
		t.Errorf("keep.txt on A = %q; the modification must survive", got)
	}
	sameManifest(t, da, db)
}

func TestMassDeleteBreakerHoldsUntilResume(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	for i := range 20 {
		write(t, filepath.Join(da, "f"+string(rune('a'+i))), "data")
	}
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	for i := range 15 {
		if err := os.Remove(filepath.Join(da, "f"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(da, "added"), "still synced while the breaker holds")
	err := a.Once(context.Background())
	if !errors.Is(err, ErrMassDelete) {
		t.Fatalf("Once = %v, want ErrMassDelete", err)
	}
	if st := a.Status(); !st.MassDeletePaused || st.HeldRemoteDeletes != 15 {
		t.Errorf("status %+v", st)
	}
	once(t, b)
	if n := len(manifest(t, db)); n != 21 {
		t.Errorf("B has %d files; the held deletes must not reach it (want 20 + added)", n)
	}
	if err := RequestResume(a.cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	once(t, a)
	// B's plan now deletes 15 of its 21 files: its own breaker holds them too.
	if err := b.Once(context.Background()); !errors.Is(err, ErrMassDelete) {
		t.Fatalf("B: Once = %v, want ErrMassDelete", err)
	}
	if n := len(manifest(t, db)); n != 21 {
		t.Errorf("B deleted before its own resume: %d files", n)
	}
	if err := RequestResume(b.cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	once(t, b)
	sameManifest(t, da, db)
	if n := len(manifest(t, db)); n != 6 {
		t.Errorf("B has %d files after resume, want 6", n)
	}
}

func TestModes(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, dr, ds := filepath.Join(root, "a"), filepath.Join(root, "recv"), filepath.Join(root, "send")
	write(t, filepath.Join(da, "shared.txt"), "from A")
	a := newAgent(t, srv, da, "A", nil)
	once(t, a)
	recv := newAgent(t, srv, dr, "R", func(c *Config) { c.Mode = plan.ReceiveOnly })
	send := newAgent(t, srv, ds, "S", func(c *Config) { c.Mode = plan.SendOnly })
	write(t, filepath.Join(dr, "local-only.txt"), "mine")
	write(t, filepath.Join(ds, "sent.txt"), "from S")
	once(t, recv)
	once(t, send)
	if got := read(t, filepath.Join(dr, "shared.txt")); got != "from A" {
		t.Errorf("receive-only did not receive: %q", got)
	}
	if _, err := os.Stat(filepath.Join(ds, "shared.txt")); !os.IsNotExist(err) {
		t.Errorf("send-only received shared.txt: %v", err)
	}
	once(t, a)
	if got := read(t, filepath.Join(da, "sent.txt")); got != "from S" {
		t.Errorf("send-only did not send: %q", got)
	}
	if _, err := os.Stat(filepath.Join(da, "local-only.txt")); !os.IsNotExist(err) {
		t.Errorf("receive-only uploaded local-only.txt: %v", err)
	}
	if st := recv.Status(); st.Reports["local-only.txt"] == "" {
		t.Errorf("receive-only did not report local-only.txt: %+v", st.Reports)
	}
	// A local edit on receive-only is reverted, the edit kept in a conflict copy.
	write(t, filepath.Join(dr, "shared.txt"), "edited on R")
	once(t, recv)
	if got := read(t, filepath.Join(dr, "shared.txt")); got != "from A" {
		t.Errorf("receive-only kept a local edit: %q", got)
	}
	matches, _ := filepath.Glob(filepath.Join(dr, "shared.sync-conflict-*"))
	if len(matches) != 1 || read(t, matches[0]) != "edited on R" {
		t.Errorf("reverted edit not kept: %v", matches)
	}
}

func TestIgnorePatterns(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(da, ".syncignore"), "*.tmp\nbuild/\n")
	write(t, filepath.Join(da, "x.tmp"), "scratch")
	write(t, filepath.Join(da, "build/out.o"), "object")
	write(t, filepath.Join(da, "src/main.go"), "package main")
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	got := manifest(t, db)
	for _, p := range []string{".syncignore", "src/main.go"} {
		if got[p] == "" {
			t.Errorf("%s not synced", p)
		}
	}
	for _, p := range []string{"x.tmp", "build", "build/out.o"} {
		if got[p] != "" {
			t.Errorf("ignored %s was synced", p)
		}
	}
}

func TestRunPropagatesLiveChanges(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	a := newAgent(t, srv, da, "A", func(c *Config) { c.Watch = true })
	b := newAgent(t, srv, db, "B", func(c *Config) { c.Watch = true })
	runAgents(t, a, b)
	time.Sleep(300 * time.Millisecond) // both have caught up with the (empty) feed
	for i := range 3 {
		name := filepath.Join("drop", "file"+string(rune('0'+i)))
		want := []byte(strings.Repeat("payload ", 500+i))
		if err := os.MkdirAll(filepath.Join(da, "drop"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(da, name), want, 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := os.ReadFile(filepath.Join(db, name))
			if err == nil && bytes.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach B within 10s", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestRenamingALargeFolderDoesNotTripTheBreaker(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	for i := range 20 {
		write(t, filepath.Join(da, "old", "f"+string(rune('a'+i))), "content "+string(rune('a'+i)))
	}
	a := newAgent(t, srv, da, "A", nil)
	b := newAgent(t, srv, db, "B", nil)
	once(t, a)
	once(t, b)
	if err := os.Rename(filepath.Join(da, "old"), filepath.Join(da, "new")); err != nil {
		t.Fatal(err)
	}
	once(t, a)
	once(t, b)
	sameManifest(t, da, db)
	if _, err := os.Stat(filepath.Join(db, "new", "fa")); err != nil {
		t.Errorf("rename did not reach B: %v", err)
	}
}

// A cycle that downloads asks for another at once but is no reason to back off: a reader
// working through a long changes feed must not wait between its pages.
func TestProgressIsNotABackOff(t *testing.T) {
	srv := startServer(t)
	root := t.TempDir()
	da, db := filepath.Join(root, "a"), filepath.Join(root, "b")
	for i := range 20 {
		write(t, filepath.Join(da, fmt.Sprintf("f%02d.txt", i)), fmt.Sprintf("content %d", i))
	}
	a := newAgent(t, srv, da, "A", nil)
	once(t, a)
	b := newAgent(t, srv, db, "B", nil)
	ctx := context.Background()
	if err := b.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.scanAll(ctx); err != nil {
		t.Fatal(err)
	}
	again, skipped, err := b.cycle(ctx, nil)
	if err != nil || !again || skipped {
		t.Errorf("cycle that downloaded 20 files: again %v, skipped %v, err %v; want again and not skipped", again, skipped, err)
	}
	again, skipped, err = b.cycle(ctx, nil)
	if err != nil || again || skipped {
		t.Errorf("cycle with nothing to do: again %v, skipped %v, err %v", again, skipped, err)
	}
	sameManifest(t, da, db)
}
