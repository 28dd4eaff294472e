// Command syncserver serves one synced folder: the /v1 sync protocol, the original HTTP
// API, health probes and Prometheus metrics. Every flag can also be set from the
// environment as SYNCSERVER_<FLAG_IN_UPPER_SNAKE>; the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/syncedfolder/synced-folder/syncserver"
	"github.com/syncedfolder/synced-folder/syncserver/kubeauth"
	"github.com/syncedfolder/synced-folder/syncserver/store"
	"github.com/syncedfolder/synced-folder/syncserver/store/postgres"
	"github.com/syncedfolder/synced-folder/syncserver/store/sqlite"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// minGCGrace keeps GC's grace well above the block store's touch interval (one minute):
// a block reported present, or deduplicated, must survive until the commit that uses it.
const minGCGrace = 5 * time.Minute

// envPrefix is the prefix of the environment variable of every flag.
const envPrefix = "SYNCSERVER_"

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("syncserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := syncserver.DefaultConfig()
	opts := syncserver.Options{Config: def}
	var (
		databaseURL  string
		keepVersions int
		keepAge      = durationFlag{d: def.Retention.MaxAge}
		maxFileSize  = sizeFlag{n: def.MaxFileSize}
		maxBlockSize = sizeFlag{n: def.MaxBlockSize}
		logLevel     slog.Level
		logFormat    string
		review       reviewFlags
		pprofListen  string
	)
	fs.StringVar(&opts.Listen, "listen", "127.0.0.1:8080", "TCP address to listen on (without --token-file or --tokenreview-audience only a loopback address is allowed)")
	fs.StringVar(&opts.DataDir, "data-dir", "./data", "directory of the blocks and of the embedded database")
	fs.BoolVar(&opts.DirectIO, "direct-io", false, "write and read the blocks of 64 KiB or more of large files around the page cache (O_DIRECT, where the file system allows it): spares memory and CPU on large uploads, costs a disk read for each download and each commit check of such a block")
	fs.StringVar(&databaseURL, "database-url", "", "PostgreSQL URL (postgres://...); empty uses the embedded database in --data-dir")
	fs.StringVar(&opts.TokenFile, "token-file", "", `file of bearer tokens, one "TOKEN NAME" per line (NAME is the agent identity in the audit log)`)
	fs.StringVar(&opts.TLSCertFile, "tls-cert-file", "", "TLS certificate (PEM); with --tls-key-file serves HTTPS")
	fs.StringVar(&opts.TLSKeyFile, "tls-key-file", "", "TLS private key (PEM)")
	fs.IntVar(&keepVersions, "keep-versions", def.Retention.Keep, "superseded versions kept per path (besides --keep-versions-age)")
	fs.Var(&keepAge, "keep-versions-age", "keep superseded versions younger than this (e.g. 720h or 30d; 0 keeps by count only)")
	fs.Var(&maxFileSize, "max-file-size", "largest file accepted (bytes, or with a unit: 512MiB, 64GiB)")
	fs.Var(&maxBlockSize, "max-block-size", "largest block accepted (bytes, or with a unit)")
	fs.DurationVar(&opts.Config.GCInterval, "gc-interval", def.GCInterval, "period of version pruning and block garbage collection (negative disables)")
	fs.DurationVar(&opts.Config.GCGrace, "gc-grace", def.GCGrace, "unreferenced blocks younger than this survive GC (uploads awaiting their commit)")
	fs.DurationVar(&opts.Config.MaxWait, "max-wait", def.MaxWait, "longest long-poll wait of the changes feed")
	fs.DurationVar(&opts.ShutdownGrace, "shutdown-grace", 25*time.Second, "time in-flight requests get to finish on SIGTERM")
	fs.StringVar(&review.audience, "tokenreview-audience", "", "accept Kubernetes service-account tokens with this audience, verified by TokenReview (the folder's: sync.syncedfolder.io/NAMESPACE/NAME)")
	fs.StringVar(&review.namespace, "tokenreview-namespace", "", "the folder's namespace (default: the namespace of the pod the server runs in)")
	fs.StringVar(&review.allowed, "allowed-service-accounts", "", `comma list of "namespace/name" or "namespace/*" that may sync (empty: any service account of --tokenreview-namespace)`)
	fs.StringVar(&review.kubeconfig, "kubeconfig", "", "kubeconfig for TokenReview calls (empty: the pod's in-cluster configuration)")
	fs.StringVar(&pprofListen, "pprof-listen", "", "loopback TCP address of a listener of its own serving Go's profiles under /debug/pprof/ (debugging; empty: off)")
	fs.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	fs.StringVar(&logFormat, "log-format", "auto", "log format: json, text, or auto (JSON unless stderr is a terminal)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "syncserver: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := applyEnv(fs, getenv); err != nil {
		fmt.Fprintf(stderr, "syncserver: %v\n", err)
		return 2
	}
	if err := validate(opts, keepVersions, logFormat, review); err != nil {
		fmt.Fprintf(stderr, "syncserver: %v\n", err)
		return 2
	}
	if err := checkPprofListen(pprofListen); err != nil {
		fmt.Fprintf(stderr, "syncserver: %v\n", err)
		return 2
	}
	if review.audience != "" {
		a, err := review.authenticator(kubeauth.InClusterNamespace)
		if err != nil {
			fmt.Fprintf(stderr, "syncserver: %v\n", err)
			return 2
		}
		opts.Authenticator = a
	}
	opts.Config.Retention = &store.Retention{Keep: keepVersions, MaxAge: keepAge.d}
	opts.Config.MaxFileSize = maxFileSize.n
	opts.Config.MaxBlockSize = maxBlockSize.n
	logger := newLogger(stderr, logLevel, logFormat)
	if review.audience != "" {
		logger.Info("TokenReview authentication", "audience", review.audience, "allowedServiceAccounts", review.allowed)
	}
	opts.OpenStore = func(ctx context.Context) (store.Store, error) {
		if databaseURL != "" {
			return postgres.Open(ctx, databaseURL, postgres.WithLogger(logger))
		}
		return sqlite.Open(filepath.Join(opts.DataDir, "meta.db"))
	}

	if pprofListen != "" {
		_, stopPprof, err := servePprof(pprofListen, logger)
		if err != nil {
			fmt.Fprintf(stderr, "syncserver: %v\n", err)
			return 1
		}
		defer stopPprof()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := syncserver.Run(ctx, opts, logger); err != nil {
		logger.Error("syncserver stopped", "err", err)
		fmt.Fprintf(stderr, "syncserver: %v\n", err)
		return 1
	}
	logger.Info("syncserver stopped")
	return 0
}

// applyEnv sets every flag not given on the command line from its environment variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid value %q for %s (flag --%s): %w", v, name, f.Name, serr)
		}
	})
	return err
}

func validate(opts syncserver.Options, keepVersions int, logFormat string, review reviewFlags) error {
	switch {
	case opts.Listen == "":
		return errors.New("--listen must not be empty")
	case opts.DataDir == "":
		return errors.New("--data-dir must not be empty")
	case keepVersions < 0:
		return fmt.Errorf("--keep-versions %d must not be negative", keepVersions)
	case opts.Config.GCGrace < minGCGrace:
		return fmt.Errorf("--gc-grace %v is below %v: blocks a client was just told are stored could be collected before its commit", opts.Config.GCGrace, minGCGrace)
	case opts.Config.GCInterval == 0:
		return errors.New("--gc-interval must not be 0 (negative disables maintenance)")
	case opts.Config.MaxWait <= 0:
		return errors.New("--max-wait must be positive")
	case opts.ShutdownGrace < 0:
		return errors.New("--shutdown-grace must not be negative")
	case logFormat != "auto" && logFormat != "json" && logFormat != "text":
		return fmt.Errorf("--log-format %q is not json, text or auto", logFormat)
	case (opts.TLSCertFile == "") != (opts.TLSKeyFile == ""):
		return errors.New("TLS needs both --tls-cert-file and --tls-key-file")
	}
	if err := review.validate(); err != nil {
		return err
	}
	return syncserver.CheckListen(opts.Listen, opts.TokenFile != "" || review.audience != "")
}

// checkPprofListen accepts an empty --pprof-listen (off) or a loopback address.
func checkPprofListen(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pprof-listen %q: %w", addr, err)
	}
	if !syncserver.IsLoopbackHost(host) {
		return fmt.Errorf("--pprof-listen %q: profiles reveal paths and memory, so they are served only on a loopback address (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// reviewFlags configure Kubernetes TokenReview authentication.
type reviewFlags struct {
	audience, namespace, allowed, kubeconfig string
}

// validate checks the flags without touching the cluster.
func (r reviewFlags) validate() error {
	if r.audience == "" {
		for name, v := range map[string]string{"--tokenreview-namespace": r.namespace, "--allowed-service-accounts": r.allowed, "--kubeconfig": r.kubeconfig} {
			if v != "" {
				return fmt.Errorf("%s is set but --tokenreview-audience is not: TokenReview authentication needs the audience", name)
			}
		}
		return nil
	}
	if strings.ContainsAny(r.audience, " ,\t\n") {
		return fmt.Errorf("--tokenreview-audience %q must be one audience without spaces or commas", r.audience)
	}
	if r.namespace != "" {
		if errs := validation.IsDNS1123Label(r.namespace); len(errs) > 0 {
			return fmt.Errorf("--tokenreview-namespace %q: %s", r.namespace, strings.Join(errs, "; "))
		}
	}
	if _, err := kubeauth.ParseAllowList(r.allowed); err != nil {
		return fmt.Errorf("--allowed-service-accounts: %w", err)
	}
	if r.kubeconfig != "" {
		if _, err := os.Stat(r.kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
	}
	return nil
}

// authenticator builds the TokenReview authenticator; inClusterNamespace supplies the
// namespace when --tokenreview-namespace is not given.
func (r reviewFlags) authenticator(inClusterNamespace func() (string, error)) (*kubeauth.Authenticator, error) {
	ns := r.namespace
	if ns == "" {
		var err error
		if ns, err = inClusterNamespace(); err != nil {
			return nil, fmt.Errorf("--tokenreview-namespace not given and not running in a pod: %w", err)
		}
	}
	allowed, err := kubeauth.ParseAllowList(r.allowed)
	if err != nil {
		return nil, fmt.Errorf("--allowed-service-accounts: %w", err)
	}
	rc, err := kubeauth.RESTConfig(r.kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubeauth.NewForConfig(rc, kubeauth.Config{Audience: r.audience, Namespace: ns, Allowed: allowed})
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == "text" || (format == "auto" && isTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// durationFlag is a time.Duration flag that also takes days ("30d").
type durationFlag struct{ d time.Duration }

func (f *durationFlag) String() string { return f.d.String() }

func (f *durationFlag) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 {
			return fmt.Errorf("%q is not a number of days", s)
		}
		f.d = time.Duration(days * 24 * float64(time.Hour))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is not a non-negative duration such as 720h or 30d", s)
	}
	f.d = d
	return nil
}

// sizeFlag is a byte count with an optional unit (KiB, MiB, GiB, TiB, or K, M, G, T
// meaning the same powers of 1024).
type sizeFlag struct{ n int64 }

func (f *sizeFlag) String() string { return strconv.FormatInt(f.n, 10) }

func (f *sizeFlag) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a positive size such as 1048576, 512MiB or 64GiB", s)
	}
	f.n = n * mult
	return nil
}
