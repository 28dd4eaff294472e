package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ours is our engine: one syncserver and agents (a writer and readers) whose --server
// URL points at a counting relay in front of the server.
type Ours struct {
	// ServerBin and AgentBin are the built programs.
	ServerBin, AgentBin string

	dir     string
	wire    Counter
	relay   *Relay
	server  *Proc
	agents  []*Proc
	writer  string
	readers []string
	args    [][]string
}

// Name is "ours".
func (o *Ours) Name() string { return "ours" }

// Start starts the server and the agents, and waits until all are up.
func (o *Ours) Start(ctx context.Context, dir string, readers int) error {
	o.dir, o.agents, o.readers, o.args = dir, nil, nil, nil
	o.wire = Counter{}
	port, err := freePort()
	if err != nil {
		return err
	}
	var tokens strings.Builder
	ids := []string{"writer"}
	for i := range readers {
		ids = append(ids, fmt.Sprintf("reader%d", i))
	}
	for _, id := range ids {
		fmt.Fprintf(&tokens, "bench-token-of-%s %s\n", id, id)
		if err := os.WriteFile(filepath.Join(dir, id+".token"), []byte("bench-token-of-"+id), 0o600); err != nil {
			return fmt.Errorf("write token: %w", err)
		}
	}
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(tokens.String()), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	o.server, err = startProc("server", filepath.Join(dir, "server.log"), o.ServerBin, []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", filepath.Join(dir, "server-data"),
		"--token-file", tokenFile,
		"--log-format", "text", "--log-level", cmpOr(os.Getenv("SYNCBENCH_LOG_LEVEL"), "warn"),
		"--shutdown-grace", "1s",
	})
	if err != nil {
		return err
	}
	if o.relay, err = NewRelay(fmt.Sprintf("127.0.0.1:%d", port), &o.wire); err != nil {
		return err
	}
	if err := poll(ctx, 30*time.Second, "server ready", func() (bool, error) {
		if err := o.server.Dead(); err != nil {
			return false, fatal{err}
		}
		return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	}); err != nil {
		return err
	}
	for _, id := range ids {
		folder := filepath.Join(dir, id)
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return fmt.Errorf("create folder: %w", err)
		}
		if id == "writer" {
			o.writer = folder
		} else {
			o.readers = append(o.readers, folder)
		}
		listen, err := freePort()
		if err != nil {
			return err
		}
		args := []string{
			"--server", "http://" + o.relay.Addr(),
			"--dir", folder,
			"--token-file", filepath.Join(dir, id+".token"),
			"--id", id,
			"--listen", fmt.Sprintf("127.0.0.1:%d", listen),
			"--log-format", "text", "--log-level", cmpOr(os.Getenv("SYNCBENCH_LOG_LEVEL"), "warn"),
			"--progress", "never",
		}
		o.args = append(o.args, args)
		p, err := startProc("agent-"+id, filepath.Join(dir, id+".log"), o.AgentBin, args)
		if err != nil {
			return err
		}
		o.agents = append(o.agents, p)
		if err := poll(ctx, 30*time.Second, id+" agent up", func() (bool, error) {
			if err := p.Dead(); err != nil {
				return false, fatal{err}
			}
			return httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz", listen))
		}); err != nil {
			return err
		}
	}
	return nil
}

func httpOK(url string) (bool, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, fmt.Errorf("GET %s: %s", url, resp.Status)
}

// Writer is the writer agent's folder.
func (o *Ours) Writer() string { return o.writer }

// Readers are the reader agents' folders.
func (o *Ours) Readers() []string { return o.readers }

// Changed does nothing: the agent's watcher sees the change.
func (o *Ours) Changed(context.Context) error { return nil }

// Wire counts agent↔server bytes, both hops.
func (o *Ours) Wire() *Counter { return &o.wire }

// Procs are the server and the agents.
func (o *Ours) Procs() []*Proc { return append([]*Proc{o.server}, o.agents...) }

// ClientUsage is zero: ours has no short-lived clients (W4 accounts for its --once run).
func (o *Ours) ClientUsage() (float64, int64) { return 0, 0 }

// Alive reports a dead process.
func (o *Ours) Alive() error { return aliveAll(o.Procs()) }

// Stop ends the agents, then the server.
func (o *Ours) Stop() {
	for _, a := range o.agents {
		a.Stop()
	}
	if o.server != nil {
		o.server.Stop()
	}
	if o.relay != nil {
		o.relay.Close()
	}
}

// StopWriter stops the writer agent (W4 then runs it with --once).
func (o *Ours) StopWriter() { o.agents[0].Stop() }

// WriterOnceArgs are the writer agent's flags for a --once pass.
func (o *Ours) WriterOnceArgs() []string {
	var args []string
	for i := 0; i < len(o.args[0]); i++ {
		if o.args[0][i] == "--listen" { // the stopped agent's port may be reused; no status server needed
			i++
			continue
		}
		args = append(args, o.args[0][i])
	}
	return append(args, "--once")
}

// cmpOr returns s, or def when s is empty.
func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
