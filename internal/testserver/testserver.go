// Package testserver starts a real sync server in process, for the tests of its clients:
// the embedded store and the block store on disk, served over HTTP on loopback.
package testserver

import (
	"net"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

// Start serves a real sync server whose data lives under dir, on ln (nil: a fresh loopback
// port), and returns its base URL and a stop function. Stopping twice is harmless, and the
// server is stopped at the end of the test in any case.
func Start(t testing.TB, dir string, ln net.Listener) (url string, stop func()) {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := blobs.Open(filepath.Join(dir, "blocks"))
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	srv, err := syncserver.New(syncserver.Config{GCInterval: -1}, st, bs, nil, nil)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	if ln != nil {
		hs.Listener.Close()
		hs.Listener = ln
	}
	hs.Start()
	var once sync.Once
	// Shutdown first: it answers open change-feed polls, which hs.Close would wait for.
	stop = func() { once.Do(func() { srv.Shutdown(); hs.Close(); st.Close() }) }
	t.Cleanup(stop)
	return hs.URL, stop
}
