// Command syncbench runs the side-by-side benchmark of the engine against rsync and
// Syncthing (workloads W1–W9), saves the records as JSON and renders the medians and
// ratios into the marked section of docs/benchmarks.md. `make bench` runs it; QUICK=1
// (or -quick) uses the small sizes.
//
//	syncbench [-quick] [-quick-for W4,W8] [-workloads W1,W2] [-systems ours,rsync] [-reps 3]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/syncedfolder/synced-folder/internal/modroot"
	"github.com/syncedfolder/synced-folder/test/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("syncbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		quick                                  bool
		quickFor, workloads, systems           string
		reps                                   int
		workDir, jsonPath, docPath, renderOnly string
		timeout, settle                        time.Duration
		serverBin, agentBin                    string
	)
	fs.BoolVar(&quick, "quick", os.Getenv("BENCH_QUICK") != "", "small sizes for every workload (also BENCH_QUICK=1)")
	fs.StringVar(&quickFor, "quick-for", "", "comma list of workloads that use the small sizes in a full run (e.g. W4,W8,W9)")
	fs.StringVar(&workloads, "workloads", "", "comma list of workloads (default all: W1–W9)")
	fs.StringVar(&systems, "systems", "ours,rsync,syncthing", "comma list of systems")
	fs.IntVar(&reps, "reps", 3, "repetitions per workload and system, interleaved")
	fs.StringVar(&workDir, "work-dir", "", "scratch directory (default bin/bench/work; needs ~3 GiB per system in full mode)")
	fs.StringVar(&jsonPath, "json", "", "where to save the records (default bin/bench/results-<time>.json, also copied to bin/bench/latest.json)")
	fs.StringVar(&docPath, "doc", "docs/benchmarks.md", "document whose marked section receives the table (empty: none)")
	fs.StringVar(&renderOnly, "render", "", "only render this saved JSON report into -doc")
	fs.DurationVar(&timeout, "timeout", 10*time.Minute, "longest wait for one workload")
	fs.DurationVar(&settle, "settle", 61*time.Second, "after removing a workload's folders of many files, wait this long before measuring anything (ext4 skips inodes deleted in the last minute; 0: no wait)")
	fs.StringVar(&serverBin, "server-bin", "", "syncserver program to measure (default: built from this tree into bin/)")
	fs.StringVar(&agentBin, "agent-bin", "", "syncagent program to measure (default: built from this tree into bin/); e.g. an older build for an A/B")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	root, err := modroot.Find()
	if err != nil {
		fmt.Fprintln(stderr, "syncbench: find module root:", err)
		return 1
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	if renderOnly != "" {
		rep, err := bench.LoadReport(abs(renderOnly))
		if err == nil {
			rep.Summarize()
			err = rep.RenderInto(abs(docPath))
		}
		if err != nil {
			fmt.Fprintln(stderr, "syncbench:", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := bench.Config{Workloads: list(strings.ToUpper(workloads)), Systems: list(systems), Reps: reps, Quick: quick,
		QuickFor: map[string]bool{}, WorkDir: abs(workDir), Timeout: timeout, Settle: settle, Log: stderr, Seed: uint64(time.Now().UnixNano())}
	for _, w := range list(strings.ToUpper(quickFor)) {
		cfg.QuickFor[w] = true
	}
	binDir := filepath.Join(root, "bin")
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(binDir, "bench", "work")
	}
	start := time.Now()
	peers, err := bench.EnsurePeers(ctx, cfg.Systems, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "syncbench:", err)
		return 1
	}
	if serverBin == "" || agentBin == "" {
		if cfg.Bins, err = bench.BuildEngine(ctx, root, binDir); err != nil {
			fmt.Fprintln(stderr, "syncbench:", err)
			return 1
		}
	}
	if serverBin != "" {
		cfg.Bins.Server = abs(serverBin)
	}
	if agentBin != "" {
		cfg.Bins.Agent = abs(agentBin)
	}
	cfg.Bins.Syncthing = "syncthing"
	if jsonPath == "" {
		jsonPath = filepath.Join(binDir, "bench", "results-"+start.UTC().Format("20060102T150405Z")+".json")
	}
	// The report's dirs are made before the run: a run of half an hour must not end
	// unable to save what it measured.
	for _, d := range []string{cfg.WorkDir, filepath.Dir(abs(jsonPath)), filepath.Join(binDir, "bench")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fmt.Fprintln(stderr, "syncbench:", err)
			return 1
		}
	}
	rep := bench.NewReport(start, reps, peers)
	speed, err := bench.MeasureMachine(cfg.WorkDir)
	if err != nil {
		fmt.Fprintln(stderr, "syncbench:", err)
		return 1
	}
	rep.Machine = &speed
	fmt.Fprintf(stderr, "machine: %s\n", speed)
	rep.Records, err = bench.Run(ctx, cfg)
	rep.Finished, rep.LoadEnd = time.Now().UTC(), bench.LoadAverage()
	rep.Summarize()
	if serr := rep.Save(abs(jsonPath)); serr != nil {
		fmt.Fprintln(stderr, "syncbench:", serr)
		return 1
	}
	_ = rep.Save(filepath.Join(binDir, "bench", "latest.json"))
	fmt.Fprintf(stderr, "records saved to %s\n", abs(jsonPath))
	fmt.Fprint(os.Stdout, rep.Markdown())
	if docPath != "" {
		if derr := rep.RenderInto(abs(docPath)); derr != nil {
			fmt.Fprintln(stderr, "syncbench:", derr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "syncbench:", err)
		return 1
	}
	for _, r := range rep.Records {
		if r.Error != "" {
			fmt.Fprintf(stderr, "syncbench: %s on %s (rep %d) failed: %s\n", r.Workload, r.System, r.Rep, r.Error)
			return 1
		}
	}
	return 0
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
