package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat times; 100 on every Linux we run on.
const clockTick = 100

// cpuTimes reads utime+stime of pid, and the same of its reaped children, in seconds.
func cpuTimes(pid int) (self, children float64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	s := string(raw)
	// The command name may hold spaces and parentheses; the fields follow the last ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("parse stat of %d: %d fields", pid, len(f))
	}
	// After ')': state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
	var v [4]float64
	for i := range v {
		n, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse stat of %d: %w", pid, err)
		}
		v[i] = float64(n) / clockTick
	}
	return v[0] + v[1], v[2] + v[3], nil
}

// peakRSS reads VmHWM of pid in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM for %d", pid)
}

// Proc is one long-running process of a system under test, with its log in a file.
type Proc struct {
	Role    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
	// cpuMark is utime+stime (with reaped children) at the start of a measurement.
	cpuMark float64
}

// startProc starts bin with args, its output appended to logPath.
func startProc(role, logPath, bin string, args []string, env ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log %q: %w", logPath, err)
	}
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// The systems must not outlive a harness killed without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	p := &Proc{Role: role, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Dead returns an error once the process has exited.
func (p *Proc) Dead() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited with status 0 (log %s)", p.Role, p.logPath)
		}
		return fmt.Errorf("%s exited: %w (log %s)", p.Role, p.err, p.logPath)
	default:
		return nil
	}
}

// Stop sends SIGTERM and waits (SIGKILL after 15 s).
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *Proc) cpu() float64 {
	self, children, err := cpuTimes(p.Pid())
	if err != nil {
		return 0
	}
	return self + children
}

// markCPU records the CPU time so far; usage returns the CPU seconds since and the peak RSS.
func (p *Proc) markCPU() { p.cpuMark = p.cpu() }

func (p *Proc) usage() (cpu float64, rss int64) {
	rss, _ = peakRSS(p.Pid())
	return p.cpu() - p.cpuMark, rss
}

// runMeasured runs cmd (not yet started) to its end and returns its CPU seconds, its
// peak RSS and what Wait returned. The peak is VmHWM read every 5 ms while it runs: the
// kernel's peak for a child (rusage's maxrss) takes in the parent's own peak, because Go
// starts a child sharing the parent's memory until the exec, and the harness is large.
func runMeasured(cmd *exec.Cmd) (cpu float64, rss int64, err error) {
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, err := peakRSS(cmd.Process.Pid); err == nil {
			rss = max(rss, v)
		}
		select {
		case err = <-done:
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
			}
			return cpu, rss, err
		case <-tick.C:
		}
	}
}
