package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Rsync is an rsync daemon on loopback receiving into the reader folder; a change is
// propagated by running the rsync client (--no-whole-file, so the delta algorithm runs)
// through the counting relay.
type Rsync struct {
	dir       string
	wire      Counter
	relay     *Relay
	daemon    *Proc
	writer    string
	reader    string
	clientCPU float64
	clientRSS int64
}

// Name is "rsync".
func (r *Rsync) Name() string { return "rsync" }

// Start writes the daemon's configuration and starts it.
func (r *Rsync) Start(ctx context.Context, dir string, readers int) error {
	if readers != 1 {
		return fmt.Errorf("rsync runs with one reader, not %d", readers)
	}
	r.dir, r.wire = dir, Counter{}
	r.writer, r.reader = filepath.Join(dir, "writer"), filepath.Join(dir, "reader")
	for _, d := range []string{r.writer, r.reader} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create folder: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "rsyncd.conf")
	text := fmt.Sprintf("pid file = %s\nuse chroot = false\nuid = root\ngid = root\n[bench]\npath = %s\nread only = false\n",
		filepath.Join(dir, "rsyncd.pid"), r.reader)
	if os.Getuid() != 0 {
		text = fmt.Sprintf("pid file = %s\nuse chroot = false\n[bench]\npath = %s\nread only = false\n", filepath.Join(dir, "rsyncd.pid"), r.reader)
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write rsyncd.conf: %w", err)
	}
	r.daemon, err = startProc("daemon", filepath.Join(dir, "rsyncd.log"), "rsync",
		[]string{"--daemon", "--no-detach", "--config", conf, "--address", "127.0.0.1", "--port", fmt.Sprint(port)})
	if err != nil {
		return err
	}
	if r.relay, err = NewRelay(fmt.Sprintf("127.0.0.1:%d", port), &r.wire); err != nil {
		return err
	}
	return poll(ctx, 10*time.Second, "rsync daemon", func() (bool, error) {
		if err := r.daemon.Dead(); err != nil {
			return false, fatal{err}
		}
		return listening(port)
	})
}

// listening reports whether something accepts connections on port.
func listening(port int) (bool, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false, err
	}
	c.Close()
	return true, nil
}

// Writer is the client's source folder.
func (r *Rsync) Writer() string { return r.writer }

// Readers is the daemon's module folder.
func (r *Rsync) Readers() []string { return []string{r.reader} }

// Changed runs the client: the whole writer tree to the daemon, deleting what the writer
// no longer has.
func (r *Rsync) Changed(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "rsync", "-a", "--no-whole-file", "--delete",
		r.writer+"/", fmt.Sprintf("rsync://%s/bench/", r.relay.Addr()))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cpu, rss, err := runMeasured(cmd)
	r.clientCPU += cpu
	r.clientRSS = max(r.clientRSS, rss)
	if err != nil {
		return fmt.Errorf("run rsync client: %w: %s", err, out.Bytes())
	}
	return nil
}

// Wire counts client↔daemon bytes.
func (r *Rsync) Wire() *Counter { return &r.wire }

// Procs is the daemon (its forked children's CPU shows once reaped).
func (r *Rsync) Procs() []*Proc { return []*Proc{r.daemon} }

// ClientUsage returns and resets the client runs' usage.
func (r *Rsync) ClientUsage() (float64, int64) {
	cpu, rss := r.clientCPU, r.clientRSS
	r.clientCPU, r.clientRSS = 0, 0
	return cpu, rss
}

// Alive reports a dead daemon.
func (r *Rsync) Alive() error { return aliveAll(r.Procs()) }

// Stop ends the daemon.
func (r *Rsync) Stop() {
	if r.daemon != nil {
		r.daemon.Stop()
	}
	if r.relay != nil {
		r.relay.Close()
	}
}
