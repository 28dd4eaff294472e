package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// System is one sync system under test: a writer folder whose changes must reach one or
// more reader folders.
type System interface {
	// Name is "ours", "rsync" or "syncthing".
	Name() string
	// Start starts the system's processes on fresh, empty folders under dir; readers is
	// the number of reader folders (only ours supports more than one).
	Start(ctx context.Context, dir string, readers int) error
	// Writer and Readers are the folders.
	Writer() string
	Readers() []string
	// Changed is called right after a change in the writer: rsync runs its client (so the
	// call takes the transfer's time), Syncthing is asked to rescan (our agent watches).
	Changed(ctx context.Context) error
	// Wire counts the bytes through the system's relays.
	Wire() *Counter
	// Procs are the long-running processes, for CPU and memory.
	Procs() []*Proc
	// ClientUsage returns and resets the CPU seconds and peak RSS of the short-lived
	// client processes run since the last call (rsync's client).
	ClientUsage() (cpu float64, rss int64)
	// Alive returns an error when a process of the system died.
	Alive() error
	// Stop ends every process.
	Stop()
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// poll calls cond until it returns true, an error, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		var f fatal
		if errors.As(err, &f) {
			return fmt.Errorf("wait for %s: %w", what, f.error)
		}
		if time.Now().After(deadline) {
			if err == nil {
				return fmt.Errorf("wait for %s: timed out after %v", what, timeout)
			}
			return fmt.Errorf("wait for %s: timed out after %v (last error: %w)", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fatal marks an error that ends a poll at once (a process died).
type fatal struct{ error }

func aliveAll(procs []*Proc) error {
	for _, p := range procs {
		if err := p.Dead(); err != nil {
			return fatal{err}
		}
	}
	return nil
}
