package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/e2eproc"
	"github.com/syncedfolder/synced-folder/internal/faultproxy"
	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncagent/ignore"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

var (
	seedFlag     = flag.Uint64("seed", 0, "run only this seed (replays a failure)")
	seedsFlag    = flag.Int("seeds", 3, "number of seeds to run, from -seed-base on")
	seedBaseFlag = flag.Uint64("seed-base", 1, "first seed when -seed is not given")
	stepsFlag    = flag.Int("steps", 30, "script steps per seed")
	crashFlag    = flag.Int("crashes", 5, "kill rounds of TestCrashConsistency per seed")
)

// bins are the programs under test, built once by TestMain.
var bins e2eproc.Binaries

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = e2eproc.Build(dir)
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// No testpg.Main: the PostgreSQL of a seed is a private server (testpg.Start) that
	// the seed restarts as a fault and its cleanup stops.
	code := m.Run()
	os.RemoveAll(dir)
	totals.print()
	os.Exit(code)
}

// seeds lists the seeds this run covers.
func seeds() []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	out := make([]uint64, *seedsFlag)
	for i := range out {
		out[i] = *seedBaseFlag + uint64(i)
	}
	return out
}

const testToken = "chaos-token-of-the-test"

var agentIDs = []string{"alpha", "beta", "gamma"}

func tokenOf(id string) string { return "chaos-agent-token-of-" + id }

// cluster is one server, its store and its agents, each agent behind its own fault
// proxy.
type cluster struct {
	t       *testing.T
	dir     string
	port    int
	server  *e2eproc.Process
	pg      *testpg.Server // nil on the embedded store
	pgURL   string
	client  *client.Client
	agents  []*agent
	figures *figures
}

type agent struct {
	id    string
	dir   string
	proc  *e2eproc.Process
	proxy *faultproxy.Proxy
}

func newCluster(t *testing.T, postgres bool, nAgents int, f *figures) *cluster {
	t.Helper()
	port, err := e2eproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: t.TempDir(), port: port, figures: f}
	tokens := filepath.Join(c.dir, "tokens")
	lines := testToken + " chaos\n"
	for _, id := range agentIDs {
		lines += tokenOf(id) + " " + id + "\n"
	}
	mustWrite(t, tokens, lines)
	args := []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", c.dataDir(),
		"--token-file", tokens,
		"--shutdown-grace", "1s",
		"--log-format", "text",
		// Every version stays, so that "nothing is lost" can be checked in full.
		"--keep-versions", "100000",
		// Maintenance runs during the faults; its grace keeps blocks of commits to come.
		"--gc-interval", "2s",
		"--gc-grace", "10m",
	}
	if postgres {
		c.pg = testpg.Start(t)
		c.pgURL = testpg.NewDatabase(t, c.pg.URL())
		args = append(args, "--database-url", c.pgURL)
	}
	c.server = &e2eproc.Process{Name: "syncserver", Bin: bins.Server, Args: args, LogPath: filepath.Join(c.dir, "server.log")}
	tokenFile := filepath.Join(c.dir, "chaos.token")
	mustWrite(t, tokenFile, testToken)
	c.client, err = client.New(client.Options{BaseURL: c.url(), TokenFile: tokenFile, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, a := range c.agents {
			a.proc.Kill()
			a.proxy.Close()
		}
		c.server.Kill()
		if t.Failed() {
			t.Logf("--- server log (tail):\n%s", c.server.LogTail(40))
			for _, a := range c.agents {
				t.Logf("--- agent %s log (tail):\n%s", a.id, a.proc.LogTail(40))
			}
		}
	})
	c.startServer()
	for _, id := range agentIDs[:nAgents] {
		c.addAgent(id)
	}
	return c
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) url() string     { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }
func (c *cluster) dataDir() string { return filepath.Join(c.dir, "server-data") }

// startServer starts the server and waits until it is ready (and its store reachable).
func (c *cluster) startServer() {
	c.t.Helper()
	if err := c.server.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.client.Readyz(ctx)
		cancel()
		if err == nil {
			return
		}
		if derr := c.server.Exited(); derr != nil {
			// The store may be unreachable (PostgreSQL restarting): try again.
			if time.Now().After(deadline) {
				c.t.Fatalf("server: %v\n%s", derr, c.server.LogTail(30))
			}
			time.Sleep(200 * time.Millisecond)
			if err := c.server.Start(); err != nil {
				c.t.Fatal(err)
			}
			continue
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("server not ready after 60 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) addAgent(id string) *agent {
	c.t.Helper()
	p, err := faultproxy.New("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", c.port))
	if err != nil {
		c.t.Fatal(err)
	}
	a := &agent{id: id, dir: filepath.Join(c.dir, "folder-"+id), proxy: p}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	tokenFile := filepath.Join(c.dir, id+".token")
	mustWrite(c.t, tokenFile, tokenOf(id))
	a.proc = &e2eproc.Process{Name: "syncagent " + id, Bin: bins.Agent, LogPath: filepath.Join(c.dir, id+".log"), Args: []string{
		"--server", "http://" + p.Addr(),
		"--dir", a.dir,
		"--token-file", tokenFile,
		"--id", id,
		"--rescan-interval", "2s",
		"--allow-mass-delete", // rmdir of a big dir is what the script means
		"--log-format", "text",
	}}
	if err := a.proc.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.agents = append(c.agents, a)
	return a
}

// heal ends every fault: proxies flow, PostgreSQL, the server and the agents run.
func (c *cluster) heal() {
	c.t.Helper()
	for _, a := range c.agents {
		a.proxy.Resume()
		a.proxy.Refuse(false)
	}
	if c.pg != nil {
		_ = c.pg.Start() // an error means it runs already
	}
	if !c.server.Running() {
		c.startServer()
	}
	for _, a := range c.agents {
		if !a.proc.Running() {
			if err := a.proc.Start(); err != nil {
				c.t.Fatal(err)
			}
		}
	}
}

// skip is what the sync leaves alone: the agent's state dir and temp files.
var skip = func() func(string, bool) bool {
	m, err := ignore.Compile(nil)
	if err != nil {
		panic(err)
	}
	return m.Match
}()

// serverEntries returns every path the server ever had, with its latest entry
// (tombstones included).
func (c *cluster) serverEntries(ctx context.Context) (map[string]proto.Entry, error) {
	return e2eproc.LatestEntries(ctx, c.client)
}

func serverManifest(entries map[string]proto.Entry) e2eproc.Manifest {
	m := e2eproc.Manifest{}
	for p, e := range entries {
		if e.Deleted || skip(p, e.Type == proto.TypeDir) {
			continue
		}
		switch e.Type {
		case proto.TypeDir:
			m[p] = "dir"
		case proto.TypeSymlink:
			m[p] = "symlink " + e.Target
		default:
			m[p] = e2eproc.FileLine(e.SHA256, e.Mode)
		}
	}
	return m
}

// waitConverged waits until every agent's folder equals the server's live entries, and
// returns that manifest.
func (c *cluster) waitConverged(bound time.Duration) e2eproc.Manifest {
	c.t.Helper()
	deadline := time.Now().Add(bound)
	var why string
	for {
		m, reason := c.compare()
		if reason == "" {
			return m
		}
		why = reason
		for _, a := range c.agents {
			if err := a.proc.Exited(); err != nil {
				c.t.Fatalf("while waiting for convergence: %v", err)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no convergence within %v:\n%s", bound, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) compare() (e2eproc.Manifest, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, err := c.serverEntries(ctx)
	if err != nil {
		return nil, "server: " + err.Error()
	}
	srv := serverManifest(entries)
	for _, a := range c.agents {
		m, err := e2eproc.LocalManifest(a.dir, skip)
		if err != nil {
			return nil, a.id + ": " + err.Error()
		}
		if d := e2eproc.Diff(srv, m); d != "" {
			return nil, fmt.Sprintf("server vs %s:\n%s", a.id, d)
		}
	}
	return srv, ""
}

// replay logs the one command that runs seed again, when the test failed.
func replay(t *testing.T, test string, seed uint64) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("REPLAY: go test ./test/chaos -run '^%s$' -seed=%d -steps=%d -crashes=%d -v", test, seed, *stepsFlag, *crashFlag)
		}
	})
}

// stopAll kills every process with SIGKILL: the final crash after which the stores must
// open again.
func (c *cluster) stopAll() {
	for _, a := range c.agents {
		a.proc.Kill()
	}
	c.server.Kill()
}
