// Command syncagent keeps one directory in two-way sync with a sync server. Every flag can
// also be set from the environment as SYNCAGENT_<FLAG_IN_UPPER_SNAKE>; the command line
// wins.
//
//	syncagent --server URL --dir DIR [flags]     sync until stopped (or --once)
//	syncagent resume --dir DIR [--state-dir D]   run the deletes the breaker held back
//
// Exit codes: 0 done (or stopped by a signal), 1 error, 2 bad flags, 3 a --once pass
// held back a mass delete.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/syncedfolder/synced-folder/internal/memlimit"
	"github.com/syncedfolder/synced-folder/internal/version"
	"github.com/syncedfolder/synced-folder/syncagent/agent"
	"github.com/syncedfolder/synced-folder/syncagent/ignore"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// envPrefix is the prefix of the environment variable of every flag.
const envPrefix = "SYNCAGENT_"

// Exit codes.
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitMassDelete = 3
)

type options struct {
	server, dir, stateDir, tokenFile, caFile, id, mode, listen string
	once, allowMassDelete, noWatch, pprof, directIO, noPatch   bool
	rescanInterval                                             time.Duration
	maxDeletePercent                                           float64
	logLevel                                                   slog.Level
	logFormat                                                  string
	progress                                                   string
	ignoreFile                                                 string
	memoryLimit                                                string
}

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "resume" {
		return runResume(args[1:], getenv, stderr)
	}
	fs := flag.NewFlagSet("syncagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	host, _ := os.Hostname()
	fs.StringVar(&o.server, "server", "", "sync server URL (http://host:port or https://...)")
	fs.StringVar(&o.dir, "dir", "", "the folder to sync")
	fs.StringVar(&o.stateDir, "state-dir", "", "agent state (default DIR/"+ignore.StateDirName+", never synced)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token (read again on every request)")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM CA bundle that verifies the server's TLS certificate")
	fs.StringVar(&o.id, "id", host, "this agent's name in conflict copies and logs")
	fs.StringVar(&o.mode, "mode", string(plan.TwoWay), "two-way, send-only or receive-only")
	fs.BoolVar(&o.once, "once", false, "one full pass: exit 0 once the folder and the server agree, non-zero on error")
	fs.DurationVar(&o.rescanInterval, "rescan-interval", time.Hour, "period of the safety-net full rescan")
	fs.Float64Var(&o.maxDeletePercent, "max-delete-percent", 50, "hold back a plan deleting more than this share of tracked files (and more than 10)")
	fs.BoolVar(&o.allowMassDelete, "allow-mass-delete", false, "turn the mass-delete breaker off")
	fs.StringVar(&o.listen, "listen", "", "address of the status server (/healthz, /status, /metrics); empty: none")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve Go profiles under /debug/pprof/ on the --listen address (debugging; off by default)")
	fs.StringVar(&o.ignoreFile, "ignore-file", "", "file of gitignore-style patterns applied before the folder's own .syncignore")
	fs.BoolVar(&o.noWatch, "no-watch", false, "do not watch the folder; rely on --rescan-interval")
	fs.BoolVar(&o.directIO, "direct-io", false, "write downloads of large files (over 4 MiB) around the page cache (O_DIRECT, where the file system allows it): spares the page-cache copy's CPU; on some disks slower, and a program reading the file next reads it from disk")
	fs.BoolVar(&o.noPatch, "no-patch-in-place", false, "rebuild every edited file and rename it into place: a program reading a large file while it is synced then sees its old or its new version whole, at the cost of writing all of the file for any edit (by default a file of 8 MiB or more whose edit keeps the rest in place gets only the changed bytes, behind a journal in the state dir)")
	fs.StringVar(&o.progress, "progress", "auto", "progress bar for --once: auto (on a terminal), always, never")
	fs.StringVar(&o.memoryLimit, "memory-limit", "auto", "soft memory limit of the Go runtime: auto (the live heap plus half of it, at least 16MiB more and at least 36MiB), off, or a size such as 256MiB; GOMEMLIMIT, when set, wins over the default")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log format: json, text, or auto (JSON unless stderr is a terminal)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "syncagent: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if err := applyEnv(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "syncagent: %v\n", err)
		return exitUsage
	}
	if err := validate(&o); err != nil {
		fmt.Fprintf(stderr, "syncagent: %v\n", err)
		return exitUsage
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	defer applyMemoryLimit(o.memoryLimit, explicit["memory-limit"], getenv)()
	log := newLogger(o, stderr)
	cl, err := client.New(client.Options{BaseURL: o.server, TokenFile: o.tokenFile, CAFile: o.caFile,
		UserAgent: "syncagent/" + version.Version, FeedMaxBlocks: agent.FeedMaxBlocks, OmitCommitBlocks: true})
	if err != nil {
		fmt.Fprintf(stderr, "syncagent: %v\n", err)
		return exitUsage
	}
	cfg := agent.Config{Dir: o.dir, StateDir: o.stateDir, AgentID: o.id, Mode: plan.Mode(o.mode),
		RescanInterval: o.rescanInterval, MaxDeletePercent: o.maxDeletePercent,
		AllowMassDelete: o.allowMassDelete, Server: cl, Log: log, Watch: !o.noWatch, IgnoreFile: o.ignoreFile,
		ListAhead: o.once, DirectIO: o.directIO, NoPatchInPlace: o.noPatch}
	if o.once && (o.progress == "always" || o.progress == "auto" && isTerminal(stderr)) {
		cfg.ProgressBar = stderr
	}
	a, err := agent.New(cfg)
	if err != nil {
		log.Error("cannot start", "err", err.Error())
		return exitError
	}
	defer a.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			log.Error("status server", "err", err.Error())
			return exitError
		}
		h := a.Handler()
		if o.pprof {
			h = withPprof(h)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("status server listening", "addr", ln.Addr().String())
	}
	log.Info("syncagent starting", "version", version.Version, "dir", o.dir, "server", cl.BaseURL(), "id", o.id, "mode", o.mode, "once", o.once)
	if o.once {
		err := a.Once(ctx)
		switch {
		case err == nil:
			log.Info("folder and server agree")
			return exitOK
		case errors.Is(err, agent.ErrMassDelete):
			log.Error("pass stopped", "err", err.Error())
			return exitMassDelete
		default:
			log.Error("pass failed", "err", err.Error())
			return exitError
		}
	}
	if err := a.Run(ctx); err != nil {
		log.Error("agent stopped", "err", err.Error())
		return exitError
	}
	log.Info("syncagent stopped")
	return exitOK
}

func runResume(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("syncagent resume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var dir, stateDir string
	fs.StringVar(&dir, "dir", "", "the folder whose agent should run the held deletes")
	fs.StringVar(&stateDir, "state-dir", "", "the agent's state dir (default DIR/"+ignore.StateDirName+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := applyEnv(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "syncagent resume: %v\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "syncagent resume: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if dir == "" && stateDir == "" {
		fmt.Fprintln(stderr, "syncagent resume: --dir is required")
		return exitUsage
	}
	if stateDir == "" {
		stateDir = filepath.Join(dir, ignore.StateDirName)
	}
	if err := agent.RequestResume(stateDir); err != nil {
		fmt.Fprintf(stderr, "syncagent resume: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stderr, "resume requested: the agent will run the held deletes on its next pass (a running agent within a second; otherwise the next start)\n")
	return exitOK
}

// applyEnv sets every flag not given on the command line from SYNCAGENT_<NAME>.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

func validate(o *options) error {
	switch {
	case o.server == "":
		return errors.New("--server is required (e.g. --server http://127.0.0.1:8080)")
	case o.dir == "":
		return errors.New("--dir is required")
	case o.id == "":
		return errors.New("--id is empty and the host name is unknown")
	case o.rescanInterval < time.Second:
		return fmt.Errorf("--rescan-interval %s is under 1s", o.rescanInterval)
	case o.maxDeletePercent <= 0 || o.maxDeletePercent > 100:
		return fmt.Errorf("--max-delete-percent %g is not in (0, 100]", o.maxDeletePercent)
	case o.pprof && o.listen == "":
		return errors.New("--pprof needs --listen (the profiles are served on the status listener)")
	}
	if o.memoryLimit != "auto" && o.memoryLimit != "off" {
		if _, err := memlimit.ParseSize(o.memoryLimit); err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
	}
	if o.ignoreFile != "" {
		if _, err := ignore.LoadFile(o.ignoreFile); err != nil {
			return fmt.Errorf("--ignore-file: %w", err)
		}
	}
	switch plan.Mode(o.mode) {
	case plan.TwoWay, plan.SendOnly, plan.ReceiveOnly:
	default:
		return fmt.Errorf("--mode %q: want two-way, send-only or receive-only", o.mode)
	}
	switch o.logFormat {
	case "auto", "json", "text":
	default:
		return fmt.Errorf("--log-format %q: want json, text or auto", o.logFormat)
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("--progress %q: want auto, always or never", o.progress)
	}
	fi, err := os.Stat(o.dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--dir %q is not a directory", o.dir)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newLogger(o options, w io.Writer) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "text" || o.logFormat == "auto" && isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, hopts))
	}
	return slog.New(slog.NewJSONHandler(w, hopts))
}
