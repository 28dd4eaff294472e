package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/modroot"
)

// TestQuickW1OnOurEngine runs the harness' quick W1 on our engine only (real server and
// agent processes, no peers), twice, and checks the records, their rendering, and that
// the first repetition's folders are removed only after the second (no measured run
// follows a removal by the harness).
func TestQuickW1OnOurEngine(t *testing.T) {
	root, err := modroot.Find()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bins, err := BuildEngine(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	first := filepath.Join(work, "W1-ours-0", "writer", "w1")
	var firstKept, secondRan bool
	log := watchLog{t: t, on: func(line string) {
		if strings.Contains(line, "W1 ours rep 1: starting") {
			secondRan = true
			_, err := os.Stat(first)
			firstKept = err == nil
		}
	}}
	recs, err := Run(ctx, Config{Workloads: []string{"W1"}, Systems: []string{"ours"}, Reps: 2, Quick: true,
		WorkDir: work, Seed: 1, Timeout: 3 * time.Minute, Bins: bins, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2: %+v", len(recs), recs)
	}
	if !secondRan || !firstKept {
		t.Errorf("second repetition started: %v; first repetition's tree %s still there then: %v", secondRan, first, firstKept)
	}
	rec := recs[0]
	if rec.Error != "" || !rec.Verified {
		t.Fatalf("W1 failed or unverified: %+v", rec)
	}
	if rec.Workload != "W1" || rec.System != "ours" || !rec.Quick || rec.Extra["files"] != float64(QuickSizes.SmallFiles) {
		t.Errorf("record mislabelled: %+v", rec)
	}
	if rec.Seconds <= 0 {
		t.Errorf("seconds = %v, want > 0", rec.Seconds)
	}
	if d := rec.Extra[durableKey]; d < rec.Seconds {
		t.Errorf("seconds until on disk = %v, want at least the %v until shown", d, rec.Seconds)
	}
	// Every byte of content crosses the relay twice (writer → server → reader).
	if min := int64(2 * QuickSizes.SmallFiles * 1024); rec.WireBytes < min {
		t.Errorf("wire bytes = %d, want at least %d", rec.WireBytes, min)
	}
	for _, role := range []string{"server", "agent-writer", "agent-reader0"} {
		if rec.PeakRSS[role] <= 0 {
			t.Errorf("peak RSS of %s = %d, want > 0", role, rec.PeakRSS[role])
		}
	}
	if rec.CPU["total"] <= 0 {
		t.Errorf("total CPU = %v, want > 0", rec.CPU["total"])
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("work dir not cleaned after a good run: %v", entries)
	}

	rep := NewReport(time.Now(), 1, nil)
	rep.Records = recs
	rep.Summarize()
	if len(rep.Summary) != 4 || rep.Summary[0].Medians["ours"] != median([]float64{recs[0].Seconds, recs[1].Seconds}) ||
		rep.Summary[1].Metric != "time until on disk" || rep.Summary[1].Medians["ours"] != median([]float64{recs[0].Extra[durableKey], recs[1].Extra[durableKey]}) {
		t.Fatalf("summary = %+v", rep.Summary)
	}
	path := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(path, []byte("# Title\n\n"+BeginMarker+"\nold\n"+EndMarker+"\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.RenderInto(path); err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(path)
	for _, want := range []string{"# Title", "kept", "| W1 *quick* | time |", "| W1 *quick* | time until on disk |", "≤ 2× rsync"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("rendered doc lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(string(doc), "\nold\n") {
		t.Errorf("old section not replaced:\n%s", doc)
	}
}

func TestRenderIntoRefusesBrokenMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	orig := "x\n" + EndMarker + "\n" + BeginMarker + "\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := NewReport(time.Now(), 1, nil)
	if err := rep.RenderInto(path); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Fatalf("err = %v, want a markers error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != orig {
		t.Errorf("document changed: %q", got)
	}
}

func TestRunRejectsUnknownWorkload(t *testing.T) {
	if _, err := Run(context.Background(), Config{Workloads: []string{"W10"}, Reps: 1}); err == nil || !strings.Contains(err.Error(), `"W10"`) {
		t.Fatalf("err = %v, want unknown workload W10", err)
	}
}

// An echo server behind the relay: n bytes there and n back are 2n on the wire, counted
// while the connection stays open (a workload's count is read between the requests of
// keep-alive connections), for a payload larger than a splice's pipe too.
func TestRelayCountsBothDirections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	var count Counter
	r, err := NewRelay(ln.Addr().String(), &count)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, size := range []int{100_000, 5 << 20} {
		before := count.Load()
		conn, err := net.Dial("tcp", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		msg := NewGen(uint64(size)).Bytes(size)
		go func() { _, _ = conn.Write(msg) }()
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, msg) {
			t.Fatalf("echo of %d bytes through the relay came back different", size)
		}
		if got := count.Load() - before; got != 2*int64(size) {
			t.Errorf("%d bytes each way, connection open: counted %d, want %d", size, got, 2*size)
		}
		_ = conn.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(conn); err != nil || len(rest) != 0 {
			t.Errorf("after the half-close: %d more bytes, %v; want the end", len(rest), err)
		}
		conn.Close()
	}
}

type testWriter struct{ t *testing.T }

// watchLog is a testWriter that also hands each line to on.
type watchLog struct {
	t  *testing.T
	on func(line string)
}

func (w watchLog) Write(p []byte) (int, error) {
	w.on(string(p))
	return testWriter{w.t}.Write(p)
}

// TestMakeRoomRemovesEarlierFoldersOnlyWhenShort checks the disk guard: the group's
// finished folders stay while the disk has room for the next run, and are removed first
// when it has not.
func TestMakeRoomRemovesEarlierFoldersOnlyWhenShort(t *testing.T) {
	work := t.TempDir()
	r := &runner{cfg: Config{WorkDir: work}, ctx: context.Background()}
	var pending []string
	for _, name := range []string{"W2-ours-0", "W2-rsync-0"} {
		d := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Join(d, "writer"), 0o755); err != nil {
			t.Fatal(err)
		}
		pending = append(pending, d)
	}
	const need = 5 << 30
	if r.makeRoom(&pending, need, need+diskMargin, false) || len(pending) != 2 {
		t.Fatalf("folders removed with room to spare: pending %v", pending)
	}
	for _, d := range pending {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s gone with room to spare: %v", d, err)
		}
	}
	dirs := slices.Clone(pending)
	if !r.makeRoom(&pending, need, need+diskMargin-1, false) || len(pending) != 0 {
		t.Fatalf("folders kept when short of room: pending %v", pending)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s not removed when short of room: %v", d, err)
		}
	}
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The machine's speed is measured for real: both figures positive, the disk's temp file
// gone, and the rendered report states them; a work dir that cannot take the file is
// an error.
func TestMeasureMachine(t *testing.T) {
	dir := t.TempDir()
	m, err := measureMachine(dir, 8<<20, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256MBps <= 0 || m.FsyncWriteMBps <= 0 {
		t.Fatalf("machine speed %+v, want both figures > 0", m)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the disk's temp file was left: %v", entries)
	}
	rep := NewReport(time.Now(), 1, nil)
	rep.Machine = &m
	want := fmt.Sprintf("SHA-256 %.0f MB/s, a file of 8 MiB written and fsynced %.0f MB/s", m.SHA256MBps, m.FsyncWriteMBps)
	if md := rep.Markdown(); !strings.Contains(md, "Machine, measured before the workloads: "+want+".") {
		t.Errorf("rendered report lacks the machine's speed %q:\n%s", want, md)
	}
	if _, err := measureMachine(filepath.Join(dir, "missing"), 1<<20, 1<<20); err == nil || !strings.Contains(err.Error(), "measure the disk") {
		t.Errorf("a missing work dir: %v, want a disk error", err)
	}
}
