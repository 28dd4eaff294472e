// Package chaos is the engine's randomized fault-injection test, after the randomized
// testing of Dropbox's Nucleus: for each seed, a deterministic script of file operations
// on three real agents around one real server, with faults at random points (agents and
// the server killed with SIGKILL, connections dropped or stalled by a fault proxy,
// PostgreSQL restarted); then every fault heals and the folders and the server must
// converge, no version a step wrote may be lost, no file may hold content nobody wrote,
// every stored block must match its hash and every store must open again after a final
// crash. A failing seed logs the one command that replays it.
package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/e2eproc"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// convergeBound is how long the folders get to converge once every fault healed.
const convergeBound = 2 * time.Minute

// The script's universe: few names, so that steps collide on paths often.
var (
	dirs  = []string{"", "d0", "d1", "d0/e"}
	names = []string{"f0.txt", "f1.txt", "f2.bin"}
)

// script runs one seed's steps on a cluster.
type script struct {
	t       *testing.T
	c       *cluster
	rng     *rand.Rand
	o       *oracle
	f       *figures
	step    int
	restart map[int]int // agent index → step at which a killed agent starts again
	staging string
}

func TestChaos(t *testing.T) {
	for _, seed := range seeds() {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			replay(t, "TestChaos", seed)
			runChaos(t, seed)
		})
	}
}

func runChaos(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	postgres := seed%3 == 0 // one seed in three runs the server on PostgreSQL
	f := newFigures()
	f.seeds = 1
	c := newCluster(t, postgres, 3, f)
	s := &script{t: t, c: c, rng: rng, o: newOracle(), f: f, restart: map[int]int{}, staging: filepath.Join(c.dir, "staging")}
	if err := os.MkdirAll(s.staging, 0o755); err != nil {
		t.Fatal(err)
	}
	for s.step = 1; s.step <= *stepsFlag; s.step++ {
		s.restartDue()
		s.operation()
		if s.rng.IntN(100) < 25 {
			s.fault()
		}
		time.Sleep(time.Duration(s.rng.IntN(300)) * time.Millisecond)
	}
	s.finish()
	backend := "embedded"
	if postgres {
		backend = "postgres"
	}
	t.Logf("seed %d (%s): %s", seed, backend, f)
	totals.add(f)
}

// finish heals every fault, waits for convergence and checks every invariant, then
// crashes everything once more and checks that the stores open and the system converges
// again.
func (s *script) finish() {
	t, c := s.t, s.c
	t.Helper()
	c.heal()
	m := c.waitConverged(convergeBound)
	for p := range m {
		if proto.IsConflictPath(p) {
			s.f.conflicts++
		}
	}
	ctx := t.Context()
	entries, err := c.serverEntries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.o.checkKnown(t, c, entries)
	s.f.bytesVerified += s.o.checkNothingLost(t, c, entries)
	s.f.bytesVerified += checkBlocks(t, filepath.Join(c.dataDir(), "blocks"))
	c.stopAll()
	s.f.bytesVerified += checkStoresOpen(t, c)
	c.heal()
	c.waitConverged(convergeBound)
}

func (s *script) restartDue() {
	for i, at := range s.restart {
		if s.step >= at {
			delete(s.restart, i)
			if a := s.c.agents[i]; !a.proc.Running() {
				if err := a.proc.Start(); err != nil {
					s.t.Fatal(err)
				}
			}
		}
	}
}

// Draws: every random choice is drawn before the disk is looked at, so that a seed's
// script is the same whatever the agents did meanwhile.

func (s *script) agentIdx() int { return s.rng.IntN(len(s.c.agents)) }

func (s *script) filePath() string {
	return path.Join(dirs[s.rng.IntN(len(dirs))], names[s.rng.IntN(len(names))])
}

func (s *script) dirPath() string { return dirs[1+s.rng.IntN(len(dirs)-1)] }

// content draws a new content: mostly small (inlined in commits), some above the inline
// limit (blocks), a few of megabytes (several blocks, long transfers).
func (s *script) content() []byte {
	var n int
	switch r := s.rng.IntN(100); {
	case r < 70:
		n = s.rng.IntN(4 << 10)
	case r < 92:
		n = 64<<10 + s.rng.IntN(256<<10)
	default:
		n = 1<<20 + s.rng.IntN(3<<20)
	}
	return s.bytes(n)
}

func (s *script) bytes(n int) []byte {
	var seed [32]byte
	for i := range 4 {
		v := s.rng.Uint64()
		for j := range 8 {
			seed[i*8+j] = byte(v >> (8 * j))
		}
	}
	src := rand.NewChaCha8(seed)
	b := make([]byte, n)
	_, _ = src.Read(b)
	if seed[0]%2 == 0 { // half the contents compress well
		for i := range b {
			b[i] = 'a' + b[i]%8
		}
	}
	return b
}

func (s *script) abs(a *agent, rel string) string {
	return filepath.Join(a.dir, filepath.FromSlash(rel))
}

// write puts data at rel in a's folder atomically (written beside the folder, then
// renamed in), so that nobody ever sees a half-written version the oracle does not
// know.
func (s *script) write(a *agent, rel string, data []byte) {
	p := s.abs(a, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Logf("step %d: mkdir for %q on %s: %v (skipped)", s.step, rel, a.id, err)
		return
	}
	tmp, err := os.CreateTemp(s.staging, "w-")
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		s.t.Fatal(err)
	}
	_ = tmp.Chmod(0o644)
	if err := tmp.Close(); err != nil {
		s.t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		os.Remove(tmp.Name())
		return // a dir took the name meanwhile
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		s.t.Logf("step %d: write %q on %s: %v (skipped)", s.step, rel, a.id, err)
		return
	}
	s.o.wrote(s.step, a.id, rel, data)
	s.f.bytesWritten += int64(len(data))
}

// current reads a regular file at rel, or reports that there is none.
func (s *script) current(a *agent, rel string) ([]byte, bool) {
	p := s.abs(a, rel)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	b, err := os.ReadFile(p)
	return b, err == nil
}

func (s *script) operation() {
	kinds := []string{"create", "modify", "append", "truncate", "delete", "rename", "mkdir", "rmdir", "concurrent-edit"}
	weights := []int{20, 15, 10, 6, 10, 10, 6, 4, 10}
	r := s.rng.IntN(91)
	kind := kinds[0]
	for i, w := range weights {
		if r < w {
			kind = kinds[i]
			break
		}
		r -= w
	}
	a := s.c.agents[s.agentIdx()]
	s.f.op(kind)
	switch kind {
	case "create", "modify":
		// modify is create on a path that may already hold a file; both replace it.
		s.write(a, s.filePath(), s.content())
	case "append":
		rel, extra := s.filePath(), s.bytes(1+s.rng.IntN(8<<10))
		if cur, ok := s.current(a, rel); ok {
			s.write(a, rel, append(cur, extra...))
		}
	case "truncate":
		rel, frac := s.filePath(), s.rng.Float64()
		if cur, ok := s.current(a, rel); ok {
			s.write(a, rel, bytes.Clone(cur[:int(float64(len(cur))*frac)]))
		}
	case "delete":
		rel := s.filePath()
		if _, ok := s.current(a, rel); ok {
			if err := os.Remove(s.abs(a, rel)); err == nil {
				s.o.overwritten(a.id, rel)
			}
		}
	case "rename":
		from, to := s.filePath(), s.filePath()
		cur, ok := s.current(a, from)
		if !ok || from == to {
			return
		}
		dst := s.abs(a, to)
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			return // renames onto nothing only: the script's overwrites are its writes
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return
		}
		if err := os.Rename(s.abs(a, from), dst); err == nil {
			s.o.moved(a.id, from, to, e2eproc.SHA256(cur))
		}
	case "mkdir":
		_ = os.MkdirAll(s.abs(a, s.dirPath()), 0o755)
	case "rmdir":
		rel := s.dirPath()
		if err := os.RemoveAll(s.abs(a, rel)); err == nil {
			s.o.overwritten(a.id, rel)
		}
	case "concurrent-edit":
		// The same file written on two agents before either can have heard of the
		// other's version: one of them ends in a conflict copy.
		b := s.c.agents[(s.agentIdx()+1)%len(s.c.agents)]
		if b == a {
			b = s.c.agents[(indexOf(s.c.agents, a)+1)%len(s.c.agents)]
		}
		rel, d1, d2 := s.filePath(), s.content(), s.content()
		s.write(a, rel, d1)
		s.write(b, rel, d2)
	}
}

func indexOf(as []*agent, a *agent) int {
	for i, x := range as {
		if x == a {
			return i
		}
	}
	return -1
}

func (s *script) fault() {
	kinds := []string{"kill-agent", "kill-server", "drop-connections", "stall-connections", "refuse-connections",
		"postgres-restart", "kill-agent-during-download", "kill-server-during-upload", "edit-during-download"}
	kind := kinds[s.rng.IntN(len(kinds))]
	i := s.agentIdx()
	a := s.c.agents[i]
	delay := time.Duration(s.rng.IntN(800)) * time.Millisecond
	later := 1 + s.rng.IntN(3)
	if kind == "postgres-restart" && s.c.pg == nil {
		kind = "kill-server" // the embedded store has no server of its own to restart
	}
	s.f.fault(kind)
	switch kind {
	case "kill-agent":
		a.proc.Kill()
		s.restart[i] = s.step + later
	case "kill-server":
		s.c.server.Kill()
		time.Sleep(delay)
		s.c.startServer()
	case "drop-connections":
		a.proxy.Drop()
	case "stall-connections":
		a.proxy.Stall()
		p := a.proxy
		time.AfterFunc(200*time.Millisecond+2*delay, p.Resume)
	case "refuse-connections":
		a.proxy.Refuse(true)
		p := a.proxy
		time.AfterFunc(200*time.Millisecond+2*delay, func() { p.Refuse(false) })
	case "postgres-restart":
		if err := s.c.pg.Stop(); err != nil {
			s.t.Fatalf("stop PostgreSQL: %v", err)
		}
		time.Sleep(delay)
		if err := s.c.pg.Start(); err != nil {
			s.t.Fatalf("start PostgreSQL: %v", err)
		}
	case "kill-agent-during-download":
		// A large new file on one agent, then another agent killed while it is likely
		// fetching it.
		src := s.c.agents[(i+1)%len(s.c.agents)]
		rel, data := s.filePath(), s.bytes(1<<20+s.rng.IntN(3<<20))
		s.write(src, rel, data)
		time.Sleep(delay)
		a.proc.Kill()
		s.restart[i] = s.step + later
	case "edit-during-download":
		// A large new file on one agent, then the user of another agent writes the same
		// path while that agent is likely downloading it: the download must not clobber
		// the edit (the executor checks the disk right before its rename).
		src := s.c.agents[(i+1)%len(s.c.agents)]
		rel, data, edit := s.filePath(), s.bytes(1<<20+s.rng.IntN(3<<20)), s.content()
		s.write(src, rel, data)
		time.Sleep(delay)
		s.write(a, rel, edit)
	case "kill-server-during-upload":
		rel, data := s.filePath(), s.bytes(1<<20+s.rng.IntN(3<<20))
		s.write(a, rel, data)
		time.Sleep(delay)
		s.c.server.Kill()
		time.Sleep(delay / 4)
		s.c.startServer()
	}
}

// TestCrashConsistency kills agents while they download and the server while it takes
// uploads, many times at random points, and checks after each round that no file under
// its final name holds content nobody wrote and that every stored block matches its
// hash; at the end, the stores open after a last crash and everything converges.
// largePath is TestCrashConsistency's file that is edited in place on the downloader.
const largePath = "large.img"

func TestCrashConsistency(t *testing.T) {
	for _, seed := range seeds() {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			replay(t, "TestCrashConsistency", seed)
			rng := rand.New(rand.NewPCG(seed, 0xc4a5))
			f := newFigures()
			f.seeds = 1
			c := newCluster(t, false, 2, f)
			s := &script{t: t, c: c, rng: rng, o: newOracle(), f: f, restart: map[int]int{}, staging: filepath.Join(c.dir, "staging")}
			if err := os.MkdirAll(s.staging, 0o755); err != nil {
				t.Fatal(err)
			}
			up, down := c.agents[0], c.agents[1]
			// A file large enough that the downloader patches its edits in place: a kill
			// may stop it between the journal and the file (docs/reliability.md).
			s.write(up, largePath, s.bytes(9<<20))
			c.waitConverged(convergeBound)
			for s.step = 1; s.step <= *crashFlag; s.step++ {
				// A few large files, so that transfers take a while.
				for range 1 + s.rng.IntN(3) {
					s.f.op("create")
					s.write(up, s.filePath(), s.bytes(512<<10+s.rng.IntN(3<<20)))
				}
				if edit, at := s.rng.IntN(2) == 0, s.rng.IntN(9<<20); edit {
					if data, ok := s.current(up, largePath); ok {
						s.f.op("edit-large")
						data[at%len(data)] ^= 0xff
						s.write(up, largePath, data)
					}
				}
				delay := time.Duration(s.rng.IntN(1500)) * time.Millisecond
				killServer := s.rng.IntN(2) == 0
				time.Sleep(delay)
				if killServer {
					s.f.fault("kill-server-during-upload")
					c.server.Kill()
				} else {
					s.f.fault("kill-agent-during-download")
					down.proc.Kill()
				}
				// Between crash and restart, what is on disk must already be whole.
				entries := map[string]proto.Entry{}
				s.o.checkKnown(t, c, entries)
				s.f.bytesVerified += checkBlocks(t, filepath.Join(c.dataDir(), "blocks"))
				c.heal()
			}
			s.finish()
			// The downloader landed the large file's edits by patching it in place (or,
			// killed in the middle of one, undid it when it started again, and patched
			// again).
			if edits := f.ops["edit-large"]; edits > 0 {
				patched := logLines(t, down.proc.LogPath, `msg="patched in place"`)
				undone := logLines(t, down.proc.LogPath, `msg="undid a patch in place`)
				t.Logf("seed %d: %d edits of %s; on the downloader %d patched in place, %d undone at a start", seed, edits, largePath, patched, undone)
				if patched+undone == 0 {
					t.Errorf("%d edits of %s, none patched in place on the downloader", edits, largePath)
				}
			}
			t.Logf("seed %d: %s", seed, f)
			totals.add(f)
		})
	}
}

// logLines counts the lines of the log at p that hold s.
func logLines(t *testing.T, p, s string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}
