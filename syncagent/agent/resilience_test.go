package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncserver/client"
)

func TestServerOutageNeverStopsTheAgent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet: the server is "down"
	srv := &testServer{url: "http://" + addr}
	dir := filepath.Join(t.TempDir(), "a")
	a := newAgent(t, srv, dir, "A", func(c *Config) { c.Watch = true })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	write(t, filepath.Join(dir, "written-during-outage.txt"), "patience")
	time.Sleep(1500 * time.Millisecond)
	if a.Status().ServerReachable {
		t.Errorf("status says the server is reachable during the outage")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, stop := testserver.Start(t, t.TempDir(), ln)
	defer stop()
	cl, _ := client.New(client.Options{BaseURL: srv.url})
	deadline := time.Now().Add(20 * time.Second)
	for {
		e, err := cl.Entry(context.Background(), "written-during-outage.txt")
		if err == nil && e.Size == int64(len("patience")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file not uploaded within 20s of the server coming back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReplacedServerFolderResetsTheCursorWithoutDeleting(t *testing.T) {
	first := startServer(t)
	root := t.TempDir()
	dir, stateDir := filepath.Join(root, "a"), filepath.Join(root, "state")
	write(t, filepath.Join(dir, "one.txt"), "1")
	write(t, filepath.Join(dir, "sub/two.txt"), "2")
	a := newAgent(t, first, dir, "A", func(c *Config) { c.StateDir = stateDir })
	once(t, a)
	a.Close()

	second := startServer(t) // a new, empty folder store: another folder id
	a2 := newAgent(t, second, dir, "A", func(c *Config) { c.StateDir = stateDir })
	once(t, a2)
	for _, p := range []string{"one.txt", "sub/two.txt"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s lost locally after the server was replaced: %v", p, err)
		}
	}
	cl, _ := client.New(client.Options{BaseURL: second.url})
	if _, err := cl.Entry(context.Background(), "sub/two.txt"); err != nil {
		t.Errorf("files not re-uploaded to the new server: %v", err)
	}
	st, err := cl.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a2.Status().FolderID != st.FolderID {
		t.Errorf("agent folder id %q, server %q", a2.Status().FolderID, st.FolderID)
	}
}
