//go:build linux

package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/syncagent/ignore"
	"github.com/syncedfolder/synced-folder/syncserver/client"
)

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A large file edited on one agent is patched in place on the other: it keeps its
// inode, and both end with the same bytes. With NoPatchInPlace it is rebuilt and
// renamed into place.
func TestLargeEditIsPatchedInPlace(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoPatchInPlace=%v", off), func(t *testing.T) { testLargeEdit(t, off) })
	}
}

func testLargeEdit(t *testing.T, noPatch bool) {
	srv := startServer(t)
	wdir, rdir := t.TempDir(), t.TempDir()
	w := newAgent(t, srv, wdir, "writer", nil)
	r := newAgent(t, srv, rdir, "reader", func(c *Config) { c.NoPatchInPlace = noPatch })
	data := make([]byte, 12<<20)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(data)
	if err := os.WriteFile(filepath.Join(wdir, "disk.img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	once(t, w)
	once(t, r)
	ino := inodeOf(t, filepath.Join(rdir, "disk.img"))
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(filepath.Join(wdir, "disk.img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(wdir, "disk.img"), mt, mt); err != nil {
		t.Fatal(err)
	}
	once(t, w)
	once(t, r)
	got, err := os.ReadFile(filepath.Join(rdir, "disk.img"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reader's file: %d bytes, %v; want the writer's edit", len(got), err)
	}
	if patched := inodeOf(t, filepath.Join(rdir, "disk.img")) == ino; patched == noPatch {
		t.Errorf("the reader's file patched in place: %v; want %v", patched, !noPatch)
	}
	if got, want := r.Status().PatchedInPlace, int64(b2i(!noPatch)); got != want {
		t.Errorf("status: %d files patched in place; want %d", got, want)
	}
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if line := fmt.Sprintf("syncagent_files_patched_in_place_total %d\n", b2i(!noPatch)); !strings.Contains(rec.Body.String(), line) {
		t.Errorf("/metrics lacks %q", line)
	}
	once(t, w) // nothing comes back as an edit of the reader
	if m1, m2 := manifest(t, wdir), manifest(t, rdir); len(m1) != 1 || m1["disk.img"] != m2["disk.img"] {
		t.Errorf("writer %v, reader %v; want the same one file", m1, m2)
	}
}

// writeJournal writes a patch journal as the executor does (magic, header length,
// header, the ranges' bytes, the SHA-256 of all that).
func writeJournal(t *testing.T, name, magic string, header any, data []byte) {
	t.Helper()
	head, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(magic)
	_ = binary.Write(&b, binary.BigEndian, uint32(len(head)))
	b.Write(head)
	b.Write(data)
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	if err := os.WriteFile(name, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// An agent that starts with a patch journal in its state dir undoes that patch before
// it looks at the folder (a journal of the first layout, without the old bytes, is
// finished instead), and drops a journal that was not complete; a journal it cannot
// make sense of stops it with an error naming the journal.
func TestAgentRecoversAnInterruptedPatchWhenItStarts(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	state := filepath.Join(dir, ignore.StateDirName)
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f.bin")
	old := bytes.Repeat([]byte("old."), 64)
	oldTime := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	mt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	put := func(data []byte, mode os.FileMode, at time.Time) {
		t.Helper()
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	holds := func(want []byte, mode os.FileMode, at time.Time, what string) {
		t.Helper()
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("f.bin: %q, %v; want %s", got, err, what)
		}
		if fi, err := os.Stat(p); err != nil || !fi.ModTime().Equal(at) || fi.Mode().Perm() != mode {
			t.Errorf("f.bin: %v; want mtime %v and mode %v (%s)", fi, at, mode, what)
		}
		if left, _ := filepath.Glob(filepath.Join(state, "patch-*")); len(left) != 0 {
			t.Errorf("journals left: %v", left)
		}
	}
	patched := slices.Clone(old)
	copy(patched[8:], "NEW!")
	copy(patched[100:], "new!")
	ranges := []map[string]int64{{"off": 8, "len": 4}, {"off": 100, "len": 4}}
	header := map[string]any{"path": "f.bin", "size": 256, "mtimeNs": mt.UnixNano(), "mode": 0o600, "ranges": ranges}

	// Stopped with one of its two ranges written: put back as it was.
	put(old, 0o644, oldTime)
	header["ino"] = inodeOf(t, p)
	header["oldSize"], header["oldMtimeNs"], header["oldMode"] = 256, oldTime.UnixNano(), 0o644
	var blocks []map[string]any
	for _, b := range [][2]int{{0, 8}, {8, 12}, {12, 100}, {100, 104}, {104, 256}} {
		sum := sha256.Sum256(patched[b[0]:b[1]])
		blocks = append(blocks, map[string]any{"hash": hex.EncodeToString(sum[:]), "size": b[1] - b[0]})
	}
	header["blocks"] = blocks
	writeJournal(t, filepath.Join(state, "patch-0001.journal"), "sfpatch2", header, []byte("NEW!new!old.old."))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("NEW!"), 8); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(state, "patch-0002.journal"), []byte("sfpatch2 cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	newAgent(t, srv, dir, "a", nil).Close()
	holds(old, 0o644, oldTime, "the patch undone")

	// A journal of the first layout: finished.
	for _, k := range []string{"oldSize", "oldMtimeNs", "oldMode", "blocks"} {
		delete(header, k)
	}
	writeJournal(t, filepath.Join(state, "patch-0003.journal"), "sfpatch1", header, []byte("NEW!new!"))
	newAgent(t, srv, dir, "a", nil).Close()
	holds(patched, 0o600, mt, "the patch finished")

	header["ranges"] = []map[string]int64{{"off": 300, "len": 8}} // past the file's size
	bad := filepath.Join(state, "patch-0004.journal")
	writeJournal(t, bad, "sfpatch1", header, []byte("NEW!new!"))
	cl, err := client.New(client.Options{BaseURL: srv.url})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Dir: dir, AgentID: "a", Server: cl, Log: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "past the size") {
		t.Errorf("New with a bad journal: %v; want an error naming it and its fault", err)
	}
	if got2, _ := os.ReadFile(p); !bytes.Equal(got2, patched) {
		t.Error("a bad journal changed the file")
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("the bad journal: %v; want it kept", err)
	}
}
