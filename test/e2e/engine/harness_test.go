// Package engine holds the engine's end-to-end tests: a real syncserver and real
// syncagent processes, built from this repository, on loopback and real temporary
// folders. Every scenario ends by comparing the SHA-256 manifests of all trees and the
// server.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/syncedfolder/synced-folder/internal/e2eproc"
	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/syncagent/ignore"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// bins holds the paths of the programs under test, built once by TestMain.
var bins e2eproc.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e2e-engine-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if bins, err = e2eproc.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := e2eproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// startProc starts p, failing the test when it cannot.
func startProc(t testing.TB, p *e2eproc.Process) {
	t.Helper()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
}

// stopProc sends sig and waits for p to end (SIGKILL after 20 s, which fails the test).
func stopProc(t testing.TB, p *e2eproc.Process, sig syscall.Signal) {
	t.Helper()
	if err := p.Stop(sig, 20*time.Second); err != nil {
		t.Error(err)
	}
}

// cluster is one server and its agents.
type cluster struct {
	t      testing.TB
	dir    string
	port   int
	server *e2eproc.Process
	client *client.Client
	agents []*agent
	tokens string // the server's token file
}

// clusterOptions choose the server's store.
type clusterOptions struct {
	// postgres runs the server on a fresh PostgreSQL database instead of the embedded one.
	postgres bool
}

// testToken is the bearer token of the test's own client; its identity is "e2e".
const testToken = "e2e-token-of-the-test"

// agentIDs are the identities the server's token file knows.
var agentIDs = []string{"alpha", "beta", "gamma"}

func tokenOf(id string) string { return "e2e-agent-token-of-" + id }

func newCluster(t testing.TB, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), port: freePort(t)}
	c.tokens = filepath.Join(c.dir, "tokens")
	lines := testToken + " e2e\n"
	for _, id := range agentIDs {
		lines += tokenOf(id) + " " + id + "\n"
	}
	if err := os.WriteFile(c.tokens, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", c.port),
		"--data-dir", filepath.Join(c.dir, "server-data"),
		"--token-file", c.tokens,
		"--shutdown-grace", "2s",
		"--log-format", "text",
	}
	if opts.postgres {
		args = append(args, "--database-url", postgresURL(t))
	}
	c.server = &e2eproc.Process{Name: "syncserver", Bin: bins.Server, Args: args, LogPath: filepath.Join(c.dir, "server.log")}
	tokenFile := filepath.Join(c.dir, "e2e.token")
	if err := os.WriteFile(tokenFile, []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Options{BaseURL: c.url(), TokenFile: tokenFile, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.client = cl
	t.Cleanup(func() {
		for _, a := range c.agents {
			stopProc(t, a.proc, syscall.SIGKILL)
		}
		stopProc(t, c.server, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- server log (tail):\n%s", c.server.LogTail(60))
			for _, a := range c.agents {
				t.Logf("--- agent %s log (tail):\n%s", a.id, a.proc.LogTail(80))
			}
		}
	})
	c.startServer()
	return c
}

// postgresURL gives the test a fresh database: on the shared server of `make test`
// when there is one, else on a private server the test starts.
func postgresURL(t testing.TB) string {
	if os.Getenv(testpg.EnvURL) != "" {
		return testpg.URL(t)
	}
	return testpg.NewDatabase(t, testpg.Start(t).URL())
}

func (c *cluster) url() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

// startServer starts the server and waits until it is ready.
func (c *cluster) startServer() {
	c.t.Helper()
	startProc(c.t, c.server)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.client.Readyz(ctx)
		cancel()
		if err == nil {
			return
		}
		if derr := c.server.Exited(); derr != nil {
			c.t.Fatalf("server: %v\n%s", derr, c.server.LogTail(30))
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("server not ready after 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agent is one syncagent process and its folder.
type agent struct {
	c      *cluster
	id     string
	dir    string
	listen string
	proc   *e2eproc.Process
}

// agentOptions tune one agent.
type agentOptions struct {
	mode  string   // two-way when empty
	extra []string // more flags
}

// addAgent starts the agent named id (one of agentIDs) on a new empty folder.
func (c *cluster) addAgent(id string, opts agentOptions) *agent {
	c.t.Helper()
	a := c.newAgent(id, opts)
	a.start()
	return a
}

// newAgent prepares the agent without starting it, so a test can fill its folder first.
func (c *cluster) newAgent(id string, opts agentOptions) *agent {
	c.t.Helper()
	a := &agent{c: c, id: id, dir: filepath.Join(c.dir, "folder-"+id), listen: fmt.Sprintf("127.0.0.1:%d", freePort(c.t))}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	tokenFile := filepath.Join(c.dir, id+".token")
	if err := os.WriteFile(tokenFile, []byte(tokenOf(id)), 0o600); err != nil {
		c.t.Fatal(err)
	}
	a.proc = &e2eproc.Process{Name: "syncagent " + id, Bin: bins.Agent, LogPath: filepath.Join(c.dir, id+".log"), Args: append([]string{
		"--server", c.url(),
		"--dir", a.dir,
		"--token-file", tokenFile,
		"--id", id,
		"--mode", cmpOr(opts.mode, "two-way"),
		"--listen", a.listen,
	}, opts.extra...)}
	c.agents = append(c.agents, a)
	return a
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (a *agent) start() { a.c.t.Helper(); startProc(a.c.t, a.proc) }

// stop ends the agent gracefully.
func (a *agent) stop() { a.c.t.Helper(); stopProc(a.c.t, a.proc, syscall.SIGTERM) }

// status fetches the agent's JSON status page, raw.
func (a *agent) status() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.listen+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// File helpers, failing the test on error; rel is slash-separated.

func (a *agent) path(rel string) string { return filepath.Join(a.dir, filepath.FromSlash(rel)) }

func (a *agent) write(rel string, data []byte) {
	a.c.t.Helper()
	p := a.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		a.c.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		a.c.t.Fatal(err)
	}
}

func (a *agent) read(rel string) []byte {
	a.c.t.Helper()
	b, err := os.ReadFile(a.path(rel))
	if err != nil {
		a.c.t.Fatal(err)
	}
	return b
}

func (a *agent) exists(rel string) bool {
	_, err := os.Lstat(a.path(rel))
	return err == nil
}

func (a *agent) mkdir(rel string) {
	a.c.t.Helper()
	if err := os.MkdirAll(a.path(rel), 0o755); err != nil {
		a.c.t.Fatal(err)
	}
}

func (a *agent) remove(rel string) {
	a.c.t.Helper()
	if err := os.RemoveAll(a.path(rel)); err != nil {
		a.c.t.Fatal(err)
	}
}

func (a *agent) rename(from, to string) {
	a.c.t.Helper()
	if err := os.MkdirAll(filepath.Dir(a.path(to)), 0o755); err != nil {
		a.c.t.Fatal(err)
	}
	if err := os.Rename(a.path(from), a.path(to)); err != nil {
		a.c.t.Fatal(err)
	}
}

// Manifests: path → "file <sha256> <perm>", "dir" or "symlink <target>".
type manifest = e2eproc.Manifest

var (
	fileLine = e2eproc.FileLine
	sha      = e2eproc.SHA256
	diff     = e2eproc.Diff
)

// localManifest reads a folder; skip drops the paths the sync leaves alone.
func localManifest(root string, skip *ignore.Matcher) (manifest, error) {
	return e2eproc.LocalManifest(root, skip.Match)
}

// serverEntries reads the server's current live entries from the changes feed.
func (c *cluster) serverEntries(ctx context.Context) (map[string]proto.Entry, error) {
	latest, err := e2eproc.LatestEntries(ctx, c.client)
	if err != nil {
		return nil, err
	}
	for p, e := range latest {
		if e.Deleted {
			delete(latest, p)
		}
	}
	return latest, nil
}

func (c *cluster) serverManifest(ctx context.Context, skip *ignore.Matcher) (manifest, error) {
	entries, err := c.serverEntries(ctx)
	if err != nil {
		return nil, err
	}
	m := manifest{}
	for p, e := range entries {
		if skip.Match(p, e.Type == proto.TypeDir) {
			continue
		}
		switch e.Type {
		case proto.TypeDir:
			m[p] = "dir"
		case proto.TypeSymlink:
			m[p] = "symlink " + e.Target
		default:
			m[p] = fileLine(e.SHA256, e.Mode)
		}
	}
	return m, nil
}

func builtinIgnores() *ignore.Matcher {
	m, err := ignore.Compile(nil)
	if err != nil {
		panic(err)
	}
	return m
}

// notIn describes the entries of small that big lacks or holds differently.
func notIn(small, big manifest) string {
	var out []string
	for p, v := range small {
		if big[p] != v {
			out = append(out, fmt.Sprintf("  %q: %s vs %q", p, v, big[p]))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// waitConverged waits until the server and the given agents' folders (all agents of
// the cluster when none are given) hold the same manifest, and returns it.
func (c *cluster) waitConverged(timeout time.Duration, agents ...*agent) manifest {
	c.t.Helper()
	return c.waitConvergedSkip(timeout, builtinIgnores(), agents...)
}

func (c *cluster) waitConvergedSkip(timeout time.Duration, skip *ignore.Matcher, agents ...*agent) manifest {
	c.t.Helper()
	if len(agents) == 0 {
		agents = c.agents
	}
	deadline := time.Now().Add(timeout)
	var why string
	for {
		m, reason := c.compare(skip, agents)
		if reason == "" {
			return m
		}
		why = reason
		for _, a := range agents {
			if err := a.proc.Exited(); err != nil {
				c.t.Fatalf("while waiting for convergence: %v", err)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no convergence after %v:\n%s", timeout, why)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

func (c *cluster) compare(skip *ignore.Matcher, agents []*agent) (manifest, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := c.serverManifest(ctx, skip)
	if err != nil {
		return nil, "server: " + err.Error()
	}
	for _, a := range agents {
		m, err := localManifest(a.dir, skip)
		if err != nil {
			return nil, a.id + ": " + err.Error()
		}
		if d := diff(srv, m); d != "" {
			return nil, fmt.Sprintf("server vs %s:\n%s", a.id, d)
		}
	}
	return srv, ""
}

// waitServerHas waits until the server's current version of rel holds data.
func (c *cluster) waitServerHas(rel string, data []byte) {
	c.t.Helper()
	wantLine := fileLine(sha(data), 0o644)
	c.eventually(converge, fmt.Sprintf("the server to have %q with %d bytes", rel, len(data)), func() bool {
		m, err := c.serverManifest(context.Background(), builtinIgnores())
		return err == nil && m[rel] == wantLine
	})
}

// eventually polls cond until it holds or timeout passes.
func (c *cluster) eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uploads counts the server's audit records of uploads by agent id, per path.
func (c *cluster) uploads(id string) map[string]int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]int{}
	var before int64
	for {
		recs, err := c.client.Audit(ctx, client.AuditQuery{Agent: id, Before: before, Limit: 500})
		if err != nil {
			c.t.Fatalf("audit: %v", err)
		}
		for _, r := range recs {
			if r.Action == proto.ActionUpload {
				out[r.Path]++
			}
			before = r.ID
		}
		if len(recs) < 500 {
			return out
		}
	}
}

// conflictCopies lists the conflict copies of rel in a manifest.
func conflictCopies(m manifest, rel string) []string {
	dir, base := filepath.Split(rel)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	var out []string
	for p := range m {
		if proto.IsConflictPath(p) && strings.HasPrefix(p, dir+stem+".sync-conflict-") && strings.HasSuffix(p, ext) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// ignoreMatcher loads the .syncignore of a folder, built-ins included.
func ignoreMatcher(t testing.TB, dir string) *ignore.Matcher {
	t.Helper()
	m, err := ignore.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// runAgentCommand runs the agent binary with args (a subcommand such as resume).
func runAgentCommand(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins.Agent, args...).CombinedOutput()
	return string(out), err
}

// agentStatus is the part of the agent's /status page the tests read.
type agentStatus struct {
	MassDeletePaused bool  `json:"massDeletePaused"`
	Cursor           int64 `json:"cursor"`
}

func (a *agent) statusJSON() (agentStatus, error) {
	var st agentStatus
	raw, err := a.status()
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return st, fmt.Errorf("decode status %q: %w", raw, err)
	}
	return st, nil
}
