package engine

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const converge = 60 * time.Second

// want checks that manifest m holds exactly data at rel (a file with mode 0644).
func want(t *testing.T, m manifest, rel string, data []byte) {
	t.Helper()
	if got, exp := m[rel], fileLine(sha(data), 0o644); got != exp {
		t.Fatalf("%q is %q; want %q", rel, got, exp)
	}
}

func wantAbsent(t *testing.T, m manifest, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if v, ok := m[rel]; ok {
			t.Fatalf("%q is still there (%s)", rel, v)
		}
	}
}

// basicScenario creates, modifies, renames and deletes files and nested folders on two
// agents, with empty files and unicode and space-filled names.
func basicScenario(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})

	files := map[string][]byte{
		"hello.txt":             []byte("hello\n"),
		"empty":                 {},
		"dir/sub/deep/file.bin": bytes.Repeat([]byte{1, 2, 3}, 50_000),
		"ünï côdé/файл с пробелами.txt":       []byte("unicode"),
		"with space/  leading and trailing  ": []byte("spaces"),
		"emoji 🎉/ok.md":                       []byte("# ok"),
	}
	for rel, data := range files {
		a.write(rel, data)
	}
	a.mkdir("empty dir/nested empty")
	m := c.waitConverged(converge)
	for rel, data := range files {
		want(t, m, rel, data)
	}
	if m["empty dir/nested empty"] != "dir" {
		t.Fatalf("empty nested dir not synced: %v", m["empty dir/nested empty"])
	}

	// Modify on the other side, including truncating to empty.
	b.write("hello.txt", []byte("hello again\n"))
	b.write("dir/sub/deep/file.bin", []byte{})
	m = c.waitConverged(converge)
	want(t, m, "hello.txt", []byte("hello again\n"))
	want(t, m, "dir/sub/deep/file.bin", []byte{})

	// Renames: a file, then a folder with content.
	a.rename("hello.txt", "renamed/hello.txt")
	b.rename("ünï côdé", "ünï moved")
	m = c.waitConverged(converge)
	wantAbsent(t, m, "hello.txt", "ünï côdé", "ünï côdé/файл с пробелами.txt")
	want(t, m, "renamed/hello.txt", []byte("hello again\n"))
	want(t, m, "ünï moved/файл с пробелами.txt", []byte("unicode"))

	// Deletes: a file and a whole nested folder.
	a.remove("empty")
	b.remove("dir")
	m = c.waitConverged(converge)
	wantAbsent(t, m, "empty", "dir", "dir/sub", "dir/sub/deep", "dir/sub/deep/file.bin")
	want(t, m, "emoji 🎉/ok.md", []byte("# ok"))
}

func TestBasicOperations(t *testing.T) { eachStore(t, basicScenario) }

func TestThreeAgentsConverge(t *testing.T) { eachStore(t, testThreeAgentsConverge) }

func testThreeAgentsConverge(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	agents := []*agent{c.addAgent("alpha", agentOptions{}), c.addAgent("beta", agentOptions{}), c.addAgent("gamma", agentOptions{})}
	for i, a := range agents {
		for j := range 20 {
			a.write(a.id+"/f"+string(rune('a'+j))+".txt", []byte(strings.Repeat(a.id, i+j+1)))
		}
	}
	m := c.waitConverged(converge)
	if n := len(m); n != 3+60 {
		t.Fatalf("manifest has %d entries; want 63", n)
	}
}

func TestLargeFile(t *testing.T) { eachStore(t, testLargeFile) }

func testLargeFile(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	c.addAgent("beta", agentOptions{})
	data := make([]byte, 100<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for k := range 8 {
			data[i+k] = byte(v >> (8 * k))
		}
	}
	a.write("big.bin", data)
	m := c.waitConverged(3 * time.Minute)
	want(t, m, "big.bin", data)

	// One byte changed in the middle: converges again with the new content.
	data[len(data)/2] ^= 0xff
	a.write("big.bin", data)
	m = c.waitConverged(3 * time.Minute)
	want(t, m, "big.bin", data)
}

// TestConflictKeepsTheLosersBytes edits one file on two agents while one of them is
// offline, so that the conflict is certain: the server's version keeps the path and the
// offline agent's bytes land in a conflict copy that syncs everywhere.
func TestConflictKeepsTheLosersBytes(t *testing.T) { eachStore(t, testConflictKeepsTheLosersBytes) }

func testConflictKeepsTheLosersBytes(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	a.write("doc.txt", []byte("base\n"))
	c.waitConverged(converge)

	b.stop()
	a.write("doc.txt", []byte("alpha's edit\n"))
	c.waitConverged(converge, a)
	b.write("doc.txt", []byte("beta's edit\n"))
	b.start()

	m := c.waitConverged(converge)
	want(t, m, "doc.txt", []byte("alpha's edit\n"))
	copies := conflictCopies(m, "doc.txt")
	if len(copies) != 1 {
		t.Fatalf("conflict copies %v; want one", copies)
	}
	want(t, m, copies[0], []byte("beta's edit\n"))
	if !strings.Contains(copies[0], "beta") {
		t.Errorf("conflict copy %q does not name the agent that made it", copies[0])
	}
}

// TestConcurrentEdits edits one file on two live agents at the same moment: whichever
// wins the path, the other's bytes are in a conflict copy.
func TestConcurrentEdits(t *testing.T) { eachStore(t, testConcurrentEdits) }

func testConcurrentEdits(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	a.write("race.txt", []byte("base"))
	c.waitConverged(converge)

	va, vb := []byte("version from alpha"), []byte("version from beta")
	done := make(chan struct{})
	go func() { defer close(done); b.write("race.txt", vb) }()
	a.write("race.txt", va)
	<-done

	m := c.waitConverged(converge)
	copies := conflictCopies(m, "race.txt")
	contents := map[string]bool{m["race.txt"]: true}
	for _, p := range copies {
		contents[m[p]] = true
	}
	if !contents[fileLine(sha(va), 0o644)] || !contents[fileLine(sha(vb), 0o644)] {
		t.Fatalf("a version was lost: race.txt=%s copies=%v manifest=%v", m["race.txt"], copies, m)
	}
}

// TestModificationBeatsDelete runs both orders of a delete against a modification made
// while the other agent was offline: the modification survives.
func TestModificationBeatsDelete(t *testing.T) { eachStore(t, testModificationBeatsDelete) }

func testModificationBeatsDelete(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	a.write("deleted-online.txt", []byte("v1"))
	a.write("deleted-offline.txt", []byte("v1"))
	c.waitConverged(converge)

	b.stop()
	a.remove("deleted-online.txt")
	a.write("deleted-offline.txt", []byte("alpha's v2"))
	c.waitConverged(converge, a)
	b.write("deleted-online.txt", []byte("beta's v2"))
	b.remove("deleted-offline.txt")
	b.start()

	m := c.waitConverged(converge)
	want(t, m, "deleted-online.txt", []byte("beta's v2"))
	want(t, m, "deleted-offline.txt", []byte("alpha's v2"))
}

// TestAgentRestartUploadsNothingAgain restarts an agent (with one file's mtime touched
// while it was down) and checks in the server's audit log that it uploaded nothing it
// had uploaded before.
func TestAgentRestartUploadsNothingAgain(t *testing.T) {
	eachStore(t, testAgentRestartUploadsNothingAgain)
}

func testAgentRestartUploadsNothingAgain(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	c.addAgent("beta", agentOptions{})
	for i := range 30 {
		a.write("files/"+string(rune('a'+i%26))+string(rune('0'+i/26))+".txt", bytes.Repeat([]byte{byte(i)}, 1000+i))
	}
	c.waitConverged(converge)
	before := c.uploads("alpha")
	if len(before) == 0 {
		t.Fatal("the audit log shows no upload by alpha")
	}

	a.stop()
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(a.path("files/a0.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	a.start()
	// A new file proves the restarted agent has scanned and synced.
	a.write("after-restart.txt", []byte("new"))
	c.waitConverged(converge)

	after := c.uploads("alpha")
	for p, n := range after {
		if p == "after-restart.txt" {
			continue
		}
		if n != before[p] {
			t.Errorf("%q uploaded %d times after the restart, %d before", p, n, before[p])
		}
	}
	if after["after-restart.txt"] != 1 {
		t.Errorf("after-restart.txt uploaded %d times; want 1", after["after-restart.txt"])
	}
}

// TestServerRestartMidSync kills the server while an agent uploads many files and a
// large one, restarts it on the same data, and expects everything to converge.
func TestServerRestartMidSync(t *testing.T) { eachStore(t, serverRestartScenario) }

func serverRestartScenario(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20) // 32 MiB
	a.write("big.bin", big)
	for i := range 200 {
		a.write("many/"+strings.Repeat("x", i%7)+string(rune('A'+i%26))+string(rune('a'+i/26))+".txt", []byte(strings.Repeat("y", i)))
	}
	// Cut the server off hard as soon as the first blocks arrive, before the files
	// are committed and long before beta has them.
	var files int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.client.Stats(t.Context())
		if err == nil && st.BlockBytes > 0 {
			files = st.Files
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no block reached the server in 30 s (last error %v)", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopProc(t, c.server, syscall.SIGKILL)
	beta, err := localManifest(b.dir, builtinIgnores())
	if err != nil {
		t.Fatal(err)
	}
	if files >= 201 && len(beta) >= 203 {
		t.Fatalf("the sync was over before the server was killed (%d files on the server, %d entries on beta)", files, len(beta))
	}
	t.Logf("server killed with %d of 201 files committed, beta holding %d of 203 entries", files, len(beta))
	c.startServer()

	// Once more, as soon as the first commit lands: beta is then mid-download.
	c.eventually(time.Minute, "the first commit after the restart", func() bool {
		st, err := c.client.Stats(t.Context())
		return err == nil && st.Files > 0
	})
	stopProc(t, c.server, syscall.SIGKILL)
	if beta, err := localManifest(b.dir, builtinIgnores()); err == nil {
		t.Logf("server killed again, beta holding %d of 203 entries", len(beta))
	}
	c.startServer()
	m := c.waitConverged(2 * time.Minute)
	want(t, m, "big.bin", big)
	if n := len(m); n < 200 {
		t.Fatalf("only %d entries converged", n)
	}
}

// TestSendOnly: the send-only agent's files reach the others, the others' do not reach
// its folder.
func TestSendOnly(t *testing.T) { eachStore(t, testSendOnly) }

func testSendOnly(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	s := c.addAgent("beta", agentOptions{mode: "send-only"})

	s.write("from-sender.txt", []byte("sent"))
	a.write("from-alpha.txt", []byte("not for the sender"))
	c.waitServerHas("from-sender.txt", []byte("sent"))
	m := c.waitConverged(converge, a)
	want(t, m, "from-alpha.txt", []byte("not for the sender"))

	// A later file from the sender proves it has been running since alpha's file.
	s.write("second.txt", []byte("2"))
	c.waitServerHas("second.txt", []byte("2"))
	c.waitConverged(converge, a)
	if s.exists("from-alpha.txt") {
		t.Fatal("the send-only agent downloaded a file")
	}

	// The sender's edit wins over the server's copy, even when the server changed too.
	a.write("from-sender.txt", []byte("alpha changed it"))
	c.waitServerHas("from-sender.txt", []byte("alpha changed it"))
	if got := string(s.read("from-sender.txt")); got != "sent" {
		t.Fatalf("the send-only agent's file changed to %q", got)
	}
	s.write("from-sender.txt", []byte("sender's new version"))
	c.waitServerHas("from-sender.txt", []byte("sender's new version"))
	srv := c.waitConverged(converge, a)
	sender, err := localManifest(s.dir, builtinIgnores())
	if err != nil {
		t.Fatal(err)
	}
	if d := notIn(sender, srv); d != "" {
		t.Fatalf("the sender's folder is not all on the server:\n%s", d)
	}
}

// TestReceiveOnly: the receive-only agent gets everything, its local edits are reverted
// to the server's version (its bytes kept aside locally), its local-only files stay local.
func TestReceiveOnly(t *testing.T) { eachStore(t, testReceiveOnly) }

func testReceiveOnly(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	r := c.addAgent("beta", agentOptions{mode: "receive-only"})

	a.write("shared.txt", []byte("server version"))
	c.waitConverged(converge)

	r.write("local-only.txt", []byte("mine"))
	r.write("shared.txt", []byte("local edit"))
	c.eventually(converge, "the local edit to be reverted", func() bool {
		b, err := os.ReadFile(r.path("shared.txt"))
		return err == nil && string(b) == "server version"
	})
	// Another file from alpha proves the receiver is past the local changes.
	a.write("later.txt", []byte("later"))
	c.eventually(converge, "later.txt to arrive", func() bool { return r.exists("later.txt") })

	srv := c.waitConverged(converge, a)
	wantAbsent(t, srv, "local-only.txt")
	local, err := localManifest(r.dir, builtinIgnores())
	if err != nil {
		t.Fatal(err)
	}
	if d := notIn(srv, local); d != "" {
		t.Fatalf("the receiver lacks some of the server's folder:\n%s", d)
	}
	if !r.exists("local-only.txt") {
		t.Fatal("the receive-only agent removed a local-only file")
	}
	kept := false
	for p, v := range local {
		if p != "shared.txt" && v == fileLine(sha([]byte("local edit")), 0o644) {
			kept = true
		}
	}
	if !kept {
		t.Errorf("the reverted local edit's bytes are nowhere in the receiver's folder: %v", local)
	}
}

// TestIgnorePatterns: .syncignore syncs, the paths it names do not.
func TestIgnorePatterns(t *testing.T) { eachStore(t, testIgnorePatterns) }

func testIgnorePatterns(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	a.write(".syncignore", []byte("*.log\nbuild/\n"))
	m := c.waitConverged(converge)
	want(t, m, ".syncignore", []byte("*.log\nbuild/\n"))

	a.write("app.log", []byte("noise"))
	a.write("build/out.o", []byte("object"))
	a.write("src/main.go", []byte("package main"))
	b.write("sub/debug.log", []byte("beta noise"))
	skip := ignoreMatcher(t, a.dir)
	m = c.waitConvergedSkip(converge, skip)
	want(t, m, "src/main.go", []byte("package main"))

	srv, err := c.serverEntries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"app.log", "build", "build/out.o", "sub/debug.log"} {
		if _, ok := srv[p]; ok {
			t.Errorf("ignored %q reached the server", p)
		}
	}
	if b.exists("app.log") || b.exists("build") || a.exists("sub/debug.log") {
		t.Error("an ignored path crossed between agents")
	}
}

// TestMassDeleteBreaker deletes most of the files of an agent while it is down: on
// restart it must hold the deletes back until `syncagent resume`.
func TestMassDeleteBreaker(t *testing.T) { eachStore(t, testMassDeleteBreaker) }

func testMassDeleteBreaker(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	for i := range 40 {
		a.write("data/"+string(rune('a'+i%26))+string(rune('a'+i/26))+".txt", []byte(strings.Repeat("z", i+1)))
	}
	full := c.waitConverged(converge)

	a.stop()
	for i := range 30 {
		a.remove("data/" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".txt")
	}
	a.start()
	c.eventually(converge, "the breaker to trip", func() bool {
		st, err := a.statusJSON()
		return err == nil && st.MassDeletePaused
	})
	// Nothing was deleted on the server or on beta.
	srv, err := c.serverManifest(t.Context(), builtinIgnores())
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(full, srv); d != "" {
		t.Fatalf("the server changed while the breaker held:\n%s", d)
	}
	if !b.exists("data/ab.txt") {
		t.Fatal("beta lost a file while the breaker held")
	}

	out, err := runAgentCommand("resume", "--dir", a.dir)
	if err != nil {
		t.Fatalf("syncagent resume: %v\n%s", err, out)
	}
	// The server follows alpha; beta, asked to delete 30 of its 40 files, holds back
	// in turn until it is told to resume too.
	c.waitConverged(converge, a)
	c.eventually(converge, "beta's breaker to trip", func() bool {
		st, err := b.statusJSON()
		return err == nil && st.MassDeletePaused
	})
	if !b.exists("data/ab.txt") {
		t.Fatal("beta deleted files although its breaker held")
	}
	if out, err := runAgentCommand("resume", "--dir", b.dir); err != nil {
		t.Fatalf("syncagent resume: %v\n%s", err, out)
	}
	m := c.waitConverged(converge)
	if n := len(m); n != 1+10 {
		t.Fatalf("after resume %d entries; want 11 (data and 10 files)", n)
	}
}

// TestSymlinks syncs a symlink and a change of its target.
func TestSymlinks(t *testing.T) { eachStore(t, testSymlinks) }

func testSymlinks(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	a.write("target.txt", []byte("pointed at"))
	if err := os.Symlink("target.txt", a.path("link")); err != nil {
		t.Fatal(err)
	}
	m := c.waitConverged(converge)
	if m["link"] != "symlink target.txt" {
		t.Fatalf("link is %q", m["link"])
	}
	b.remove("link")
	if err := os.Symlink("elsewhere/../target.txt", b.path("link")); err != nil {
		t.Fatal(err)
	}
	m = c.waitConverged(converge)
	if m["link"] != "symlink elsewhere/../target.txt" {
		t.Fatalf("link is %q after retargeting", m["link"])
	}
}

// BenchmarkPropagation measures how long a small file written on one agent takes to
// appear, with its full content, in another agent's folder.
func BenchmarkPropagation(b *testing.B) {
	c := newCluster(b, clusterOptions{})
	from := c.addAgent("alpha", agentOptions{})
	to := c.addAgent("beta", agentOptions{})
	c.waitConverged(converge)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rel := "bench/f" + strconv.Itoa(i)
		data := []byte("payload " + strconv.Itoa(i))
		from.write(rel, data)
		for {
			got, err := os.ReadFile(to.path(rel))
			if err == nil && bytes.Equal(got, data) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestTypeChanges replaces a file with a dir and a dir with a file on one agent; the other
// follows, and nothing of the old shapes lingers.
func TestTypeChanges(t *testing.T) { eachStore(t, testTypeChanges) }

func testTypeChanges(t *testing.T, opts clusterOptions) {
	c := newCluster(t, opts)
	a := c.addAgent("alpha", agentOptions{})
	b := c.addAgent("beta", agentOptions{})
	a.write("was-file", []byte("file first"))
	a.write("was-dir/inner.txt", []byte("inside"))
	c.waitConverged(converge)

	b.remove("was-file")
	b.write("was-file/now-inside.txt", []byte("dir now"))
	b.remove("was-dir")
	b.write("was-dir", []byte("file now"))
	m := c.waitConverged(converge)
	if m["was-file"] != "dir" {
		t.Fatalf("was-file is %q; want a dir", m["was-file"])
	}
	want(t, m, "was-file/now-inside.txt", []byte("dir now"))
	want(t, m, "was-dir", []byte("file now"))
	wantAbsent(t, m, "was-dir/inner.txt")
}

// eachStore runs a scenario on the embedded store and on PostgreSQL.
func eachStore(t *testing.T, scenario func(t *testing.T, opts clusterOptions)) {
	t.Run("store=embedded", func(t *testing.T) { scenario(t, clusterOptions{}) })
	t.Run("store=postgres", func(t *testing.T) { scenario(t, clusterOptions{postgres: true}) })
}
