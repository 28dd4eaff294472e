// Command probe is the workload of the local cluster's self-check (verify.sh): one static
// binary, packed into an image with no shell, that serves, fetches, resolves and stores, so
// every check runs through `kubectl exec POD -- /probe ...`.
//
//	probe serve ADDR      HTTP server answering "<hostname>\n"
//	probe get URL         prints the body of GET URL
//	probe lookup NAME     prints the addresses NAME resolves to (the pod's resolv.conf)
//	probe write FILE TEXT writes TEXT to FILE and fsyncs it
//	probe cat FILE        prints FILE
//	probe sleep           waits for SIGTERM
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
		return errors.New("usage: probe serve ADDR | get URL | lookup NAME | write FILE TEXT | cat FILE | sleep")
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
	case args[0] == "sleep" && len(args) == 1:
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}
