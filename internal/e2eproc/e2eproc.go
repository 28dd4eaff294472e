// Package e2eproc runs the engine's real programs for end-to-end tests: it builds
// syncserver and syncagent from this repository, starts and kills them as processes with
// their logs in files, and reads SHA-256 manifests of folders.
package e2eproc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/syncedfolder/synced-folder/internal/modroot"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/proto"
)

// Binaries are the paths of the programs under test.
type Binaries struct {
	Server, Agent string
}

// Build builds syncserver and syncagent into dir.
func Build(dir string) (Binaries, error) {
	root, err := modroot.Find()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Server: filepath.Join(dir, "syncserver"), Agent: filepath.Join(dir, "syncagent")}
	for out, pkg := range map[string]string{b.Server: "./cmd/syncserver", b.Agent: "./cmd/syncagent"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("build %s: %w\n%s", pkg, err, out)
		}
	}
	return b, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Process is one program that can be started, killed and started again, with its
// output appended to LogPath.
type Process struct {
	Name    string
	Bin     string
	Args    []string
	LogPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// Start starts the program; it must not be running.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("start %s: already running", p.Name)
		}
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %s %s\n", p.Bin, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	// The program must not outlive a test binary that dies without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.exited, p.err = cmd, make(chan struct{}), nil
	exited := p.exited
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the program runs now.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop sends sig and waits for the program to end, killing it after grace. It returns
// an error only when the program had to be killed.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s did not stop within %v of %v", p.Name, grace, sig)
	}
}

// Kill ends the program with SIGKILL (a crash) and waits for it.
func (p *Process) Kill() { _ = p.Stop(syscall.SIGKILL, time.Minute) }

// Exited returns an error describing the exit when the program has ended since it was
// last started, nil while it runs.
func (p *Process) Exited() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return errors.New(p.Name + " never started")
	}
	select {
	case <-p.exited:
		if p.err == nil {
			return errors.New(p.Name + " exited with status 0")
		}
		return fmt.Errorf("%s exited: %w", p.Name, p.err)
	default:
		return nil
	}
}

// LogTail returns the last lines of the program's log.
func (p *Process) LogTail(lines int) string {
	raw, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// Manifest maps slash-separated relative paths to "file <sha256> <perm>", "dir" or
// "symlink <target>".
type Manifest map[string]string

// FileLine is a file's manifest value.
func FileLine(sum string, mode uint32) string { return fmt.Sprintf("file %s %o", sum, mode&0o777) }

// SHA256 returns the lowercase hex SHA-256 of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// LocalManifest reads the folder at root; skip (may be nil) drops paths the sync leaves
// alone. A path removed while walking is left out.
func LocalManifest(root string, skip func(rel string, isDir bool) bool) (Manifest, error) {
	m := Manifest{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			m[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel] = "symlink " + target
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			sum, err := FileSHA256(p)
			if err != nil {
				return err
			}
			m[rel] = FileLine(sum, uint32(info.Mode().Perm()))
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return m, err
}

// FileSHA256 hashes the file at p.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Diff describes briefly how two manifests differ; "" when they are equal.
func Diff(a, b Manifest) string {
	var out []string
	for p, v := range a {
		if w, ok := b[p]; !ok {
			out = append(out, fmt.Sprintf("  %q only in first (%s)", p, v))
		} else if v != w {
			out = append(out, fmt.Sprintf("  %q: %s vs %s", p, v, w))
		}
	}
	for p, w := range b {
		if _, ok := a[p]; !ok {
			out = append(out, fmt.Sprintf("  %q only in second (%s)", p, w))
		}
	}
	sort.Strings(out)
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("  … and %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}

// LatestEntries reads the whole changes feed of the server behind cl and returns every
// path the server ever had with its latest entry, tombstones included.
func LatestEntries(ctx context.Context, cl *client.Client) (map[string]proto.Entry, error) {
	latest := map[string]proto.Entry{}
	var since int64
	for {
		resp, err := cl.Changes(ctx, since, 0, 1000)
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Entries {
			latest[e.Path] = e
		}
		if resp.LastSeq > since {
			since = resp.LastSeq
		}
		if !resp.More {
			return latest, nil
		}
	}
}
