// Command probe is the workload of the local cluster's self-check (verify.sh): one static
// binary, packed into an image with no shell, that serves, fetches, resolves and stores, so
// every check runs through `kubectl exec POD -- /probe ...`.
//
//	probe serve ADDR      HTTP server answering "<hostname>\n"
//	probe get URL         prints the body of GET URL
//	probe lookup NAME     prints the addresses NAME resolves to (the pod's resolv.conf)
//	probe write FILE TEXT writes TEXT to FILE and fsyncs it
//	probe cat FILE        prints FILE
//	probe ls DIR          prints the names in DIR, sorted, one a line (dirs end in /)
//	probe rm FILE         removes FILE
//	probe signal NAME SIG sends SIG (STOP, CONT, TERM) to every process named NAME that it can
//	                      see (a pod with shareProcessNamespace: the other containers' too)
//	probe sleep           waits for SIGTERM
//	probe sleep DIR       prints `ls DIR` (what the container found at start), then waits
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: probe serve ADDR | get URL | lookup NAME | write FILE TEXT | cat FILE | ls DIR | rm FILE | signal NAME SIG | sleep [DIR]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch {
	case args[0] == "serve" && len(args) == 2:
		host, _ := os.Hostname()
		srv := &http.Server{Addr: args[1], ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, host)
		})}
		go func() {
			<-ctx.Done()
			srv.Close()
		}()
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %q: %w", args[1], err)
		}
		return nil
	case args[0] == "get" && len(args) == 2:
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(args[1])
		if err != nil {
			return fmt.Errorf("get %q: %w", args[1], err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("get %q: status %s", args[1], resp.Status)
		}
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	case args[0] == "lookup" && len(args) == 2:
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, args[1])
		if err != nil {
			return fmt.Errorf("look up %q: %w", args[1], err)
		}
		fmt.Println(strings.Join(addrs, "\n"))
		return nil
	case args[0] == "write" && len(args) == 3:
		f, err := os.Create(args[1])
		if err != nil {
			return fmt.Errorf("create %q: %w", args[1], err)
		}
		if _, err := f.WriteString(args[2]); err != nil {
			f.Close()
			return fmt.Errorf("write %q: %w", args[1], err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %q: %w", args[1], err)
		}
		return f.Close()
	case args[0] == "cat" && len(args) == 2:
		b, err := os.ReadFile(args[1])
		if err != nil {
			return fmt.Errorf("read %q: %w", args[1], err)
		}
		_, err = os.Stdout.Write(b)
		return err
	case args[0] == "ls" && len(args) == 2:
		return list(args[1])
	case args[0] == "rm" && len(args) == 2:
		if err := os.Remove(args[1]); err != nil {
			return fmt.Errorf("remove %q: %w", args[1], err)
		}
		return nil
	case args[0] == "signal" && len(args) == 3:
		return signalAll(args[1], args[2])
	case args[0] == "sleep" && len(args) <= 2:
		if len(args) == 2 {
			fmt.Printf("listing of %s at start:\n", args[1])
			if err := list(args[1]); err != nil {
				return err
			}
			fmt.Println("end of listing")
		}
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

// list prints the names in dir, sorted, one a line; directories end in a slash.
func list(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %q: %w", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Println(n)
	}
	return nil
}

// signalAll sends the signal named sig to every process whose name (/proc/PID/comm) is name,
// and fails when there is none.
func signalAll(name, sig string) error {
	sigs := map[string]syscall.Signal{"STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL}
	s, ok := sigs[strings.ToUpper(sig)]
	if !ok {
		return fmt.Errorf("unknown signal %q: want STOP, CONT, TERM or KILL", sig)
	}
	comms, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	n := 0
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(c)))
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, s); err != nil {
			return fmt.Errorf("signal %s to %s (pid %d): %w", sig, name, pid, err)
		}
		fmt.Printf("%s sent to %s (pid %d)\n", strings.ToUpper(sig), name, pid)
		n++
	}
	if n == 0 {
		return fmt.Errorf("no process named %q", name)
	}
	return nil
}
