package security

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/agent"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// outside makes a directory beside the agent's folder holding a secret file, and
// returns its path and a check that it is unchanged.
func outside(t *testing.T) (dir string, secret []byte, unchanged func()) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret = []byte("secret bytes outside the synced folder")
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), secret, 0o644); err != nil {
		t.Fatal(err)
	}
	before := treeListing(t, dir)
	return dir, secret, func() {
		t.Helper()
		if after := treeListing(t, dir); after != before {
			t.Errorf("the agent changed a directory outside its folder:\n%s\n→\n%s", before, after)
		}
	}
}

// syncOnce runs one --once pass of a real agent over dir, in process, and returns its
// error (failed operations are expected where the agent refuses to follow a link).
func syncOnce(t *testing.T, serverURL, dir, id string) error {
	t.Helper()
	cl, err := client.New(client.Options{BaseURL: serverURL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Dir: dir, AgentID: id, Server: cl, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return a.Once(ctx)
}

func serverEntries(t *testing.T, cl *client.Client) map[string]proto.Entry {
	t.Helper()
	resp, err := cl.Changes(context.Background(), 0, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]proto.Entry{}
	for _, e := range resp.Entries {
		out[e.Path] = e
	}
	return out
}

// TestAgentNeverReadsThroughALinkOutOfItsFolder sets up links inside the folder that
// point outside it (to a dir, to a file, relative and absolute) and checks that the
// agent syncs them as links: it never uploads what they point at.
func TestAgentNeverReadsThroughALinkOutOfItsFolder(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	out, secret, unchanged := outside(t)
	folder := filepath.Join(t.TempDir(), "folder")
	if err := os.MkdirAll(filepath.Join(folder, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Join(folder, "sub"), filepath.Join(out, "secret.txt"))
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"out-dir":        out,
		"out-file":       filepath.Join(out, "secret.txt"),
		"sub/rel-up":     rel,
		"sub/rel-up-dir": "../../outside",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(folder, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(folder, "plain.txt"), []byte("plain"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syncOnce(t, url, folder, "linker"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	cl, err := client.New(client.Options{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	entries := serverEntries(t, cl)
	if e, ok := entries["plain.txt"]; !ok || e.Type != proto.TypeFile {
		t.Fatalf("plain.txt was not synced (the test would prove nothing): %+v", entries)
	}
	for name, target := range links {
		e, ok := entries[name]
		if !ok || e.Type != proto.TypeSymlink || e.Target != target {
			t.Errorf("%s: server has %+v, want a symlink to %q", name, e, target)
		}
	}
	for p, e := range entries {
		if e.SHA256 == sum(secret) {
			t.Errorf("the secret outside the folder was uploaded as %q", p)
		}
		for name := range links {
			if len(p) > len(name) && p[:len(name)+1] == name+"/" {
				t.Errorf("the agent walked through link %s: server has %q", name, p)
			}
		}
	}
	missing, err := cl.MissingBlocks(context.Background(), []string{sum(secret)})
	if err != nil || len(missing) != 1 {
		t.Errorf("the server stores the secret's block (missing=%v, err=%v)", missing, err)
	}
	unchanged()
}

// TestAgentNeverWritesThroughALinkOutOfItsFolder has the server hold a link to a dir
// outside the folder and files "under" that link, and a local link facing a remote
// dir; the agent must not create, change or remove anything outside its folder.
func TestAgentNeverWritesThroughALinkOutOfItsFolder(t *testing.T) {
	url, _ := testserver.Start(t, t.TempDir(), nil)
	out, _, unchanged := outside(t)
	cl, err := client.New(client.Options{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	evil := []byte("written through a link")
	commit := func(items ...proto.CommitItem) {
		t.Helper()
		res, err := cl.Commit(context.Background(), items)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Status != proto.StatusOK {
				t.Logf("server refused %q: %s", r.Path, r.Error)
			}
		}
	}
	file := func(p string) proto.CommitItem {
		return proto.CommitItem{Path: p, Type: proto.TypeFile, Mode: 0o644, Size: int64(len(evil)), SHA256: sum(evil), Data: evil}
	}
	// A link to the outside dir, then content under its name (the server has no
	// reason to know that "link" is a link on disk: paths are just names to it).
	commit(proto.CommitItem{Path: "link", Type: proto.TypeSymlink, Mode: 0o777, Target: out})
	commit(file("link/secret.txt"), file("link/new.txt"))
	// A dir on the server where the agent's folder has a link to the outside.
	commit(proto.CommitItem{Path: "localink", Type: proto.TypeDir, Mode: 0o755}, file("localink/new.txt"), file("localink/secret.txt"))

	folder := filepath.Join(t.TempDir(), "folder")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, filepath.Join(folder, "localink")); err != nil {
		t.Fatal(err)
	}
	// The agent settles: what it may not create is reported, not retried forever.
	if err := syncOnce(t, url, folder, "victim"); err != nil {
		t.Errorf("sync: %v", err)
	}
	unchanged()
	if fi, err := os.Lstat(filepath.Join(folder, "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the server's link was not synced as a link (lstat: %v, %v); the test proves less", fi, err)
	}
	// The local link may have been moved to a conflict copy to make room for the dir;
	// whatever the agent did, it did it inside the folder.
	if fi, err := os.Lstat(filepath.Join(folder, "localink")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(filepath.Join(folder, "localink"))
		if target != out {
			t.Errorf("localink now points at %q", target)
		}
	}
}
