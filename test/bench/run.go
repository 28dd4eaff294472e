// Package bench is the side-by-side benchmark of the engine (one syncserver, agents as
// separate processes) against an rsync daemon and a Syncthing pair, on the workloads W1–W9
// of docs/benchmarks.md. Every system connects through a counting TCP relay (wire bytes),
// CPU and peak memory come from /proc, every repetition uses freshly generated data, and
// the content is verified (SHA-256 manifests) after every workload. Figures on a shared
// machine are noisy, so the comparison that counts is the per-repetition ratio.
package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Sizes are a run's data sizes.
type Sizes struct {
	SmallFiles int   `json:"smallFiles"` // W1: files of 1–16 KiB
	BigFile    int64 `json:"bigFile"`    // W2, W3, W6, W7: bytes of the one big file
	ManyFiles  int   `json:"manyFiles"`  // W4, W9: files indexed
	Writes     int   `json:"writes"`     // W5: single 4 KiB writes
	Agents     int   `json:"agents"`     // W8: receiving agents
}

// FullSizes are the sizes.
var FullSizes = Sizes{SmallFiles: 10_000, BigFile: 1 << 30, ManyFiles: 100_000, Writes: 50, Agents: 10}

// QuickSizes are for development: the same shapes, minutes instead of hours.
var QuickSizes = Sizes{SmallFiles: 500, BigFile: 32 << 20, ManyFiles: 2_000, Writes: 15, Agents: 3}

// AllWorkloads lists the workloads in run order.
var AllWorkloads = []string{"W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"}

// group is a set of workloads run in one start of a system, in order: W3, W6 and W7
// change W2's file, W9 reads the memory of W4's agents.
type group struct {
	key       string
	workloads []string
	oursOnly  bool
	run       func(r *runner, sys System, g *Gen, sz Sizes) ([]Record, error)
	// disk estimates the bytes one run of the group takes in the work dir.
	disk func(sz Sizes) int64
	// manyFiles: the group's folders hold thousands of files, so their removal is
	// followed by the settle (see cleanup.go).
	manyFiles bool
}

var groups = []group{
	{key: "W1", workloads: []string{"W1"}, run: (*runner).smallFiles, manyFiles: true,
		disk: func(sz Sizes) int64 { return smallTreeBytes(sz.SmallFiles) }},
	// Writer, reader, the server's store or a peer's copies, and W6's staged copy.
	{key: "W2", workloads: []string{"W2", "W3", "W6", "W7"}, run: (*runner).bigFile,
		disk: func(sz Sizes) int64 { return 5 * sz.BigFile }},
	{key: "W4", workloads: []string{"W4", "W9"}, run: (*runner).manyFiles, manyFiles: true,
		disk: func(sz Sizes) int64 { return smallTreeBytes(sz.ManyFiles) }},
	{key: "W5", workloads: []string{"W5"}, run: (*runner).latency,
		disk: func(sz Sizes) int64 { return 64 << 20 }},
	{key: "W8", workloads: []string{"W8"}, oursOnly: true, run: (*runner).fanOut, manyFiles: true,
		disk: func(sz Sizes) int64 { return smallTreeBytes(sz.SmallFiles) * int64(sz.Agents+3) / 4 }},
}

// Config is one harness run.
type Config struct {
	Workloads []string        // subset of AllWorkloads; all when empty
	Systems   []string        // "ours", "rsync", "syncthing"; all when empty
	Reps      int             // repetitions of every workload and system
	Quick     bool            // QuickSizes for every workload
	QuickFor  map[string]bool // QuickSizes for these workloads' groups only
	WorkDir   string          // scratch space (big: 3 GiB per system in full mode)
	Seed      uint64          // base of every repetition's data seed
	Timeout   time.Duration   // longest wait for one workload to converge
	Settle    time.Duration   // wait after removing folders of many files (cleanup.go); 0: none
	Bins      Bins
	Log       io.Writer
}

// Bins are the programs under test.
type Bins struct {
	Server, Agent, Syncthing string
}

// Record is one workload on one system in one repetition.
type Record struct {
	Workload  string             `json:"workload"`
	System    string             `json:"system"`
	Rep       int                `json:"rep"`
	Quick     bool               `json:"quick"`
	Seconds   float64            `json:"seconds"`
	WireBytes int64              `json:"wireBytes"`
	CPU       map[string]float64 `json:"cpuSeconds"`   // per process role, and "total"
	PeakRSS   map[string]int64   `json:"peakRssBytes"` // per process role (VmHWM)
	Extra     map[string]float64 `json:"extra,omitempty"`
	Verified  bool               `json:"verified"`
	Error     string             `json:"error,omitempty"`
}

// durableKey names the Extra figure of the seconds until the change was shown by every
// reader and their file systems were flushed.
const durableKey = "durableSeconds"

// setExtra sets one of the record's extra figures.
func (rec *Record) setExtra(key string, v float64) {
	if rec.Extra == nil {
		rec.Extra = map[string]float64{}
	}
	rec.Extra[key] = v
}

// syncReaders flushes the file system of every reader's folder (once per file system
// would do; a second syncfs of one already flushed costs little).
func syncReaders(readers []string) error {
	for _, dir := range readers {
		if err := syncFS(dir); err != nil {
			return err
		}
	}
	return nil
}

type runner struct {
	cfg Config
	ctx context.Context
	rep int
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
}

// newSystem returns a fresh instance of the named system.
func (r *runner) newSystem(name string) (System, error) {
	switch name {
	case "ours":
		return &Ours{ServerBin: r.cfg.Bins.Server, AgentBin: r.cfg.Bins.Agent}, nil
	case "rsync":
		return &Rsync{}, nil
	case "syncthing":
		return &Syncthing{Bin: r.cfg.Bins.Syncthing}, nil
	}
	return nil, fmt.Errorf("unknown system %q (want ours, rsync or syncthing)", name)
}

// Run runs the configured workloads: for every group and repetition, every system in turn
// (A B C A B C …) on fresh data, and returns the records. A failed workload is recorded
// with its error and the run goes on. A group's folders are removed when all its runs
// are done (or earlier when the disk runs short), never between two of its runs.
func Run(ctx context.Context, cfg Config) ([]Record, error) {
	if cfg.Reps < 1 {
		return nil, fmt.Errorf("reps %d: want at least 1", cfg.Reps)
	}
	if len(cfg.Workloads) == 0 {
		cfg.Workloads = AllWorkloads
	}
	if len(cfg.Systems) == 0 {
		cfg.Systems = []string{"ours", "rsync", "syncthing"}
	}
	for _, w := range cfg.Workloads {
		if !slices.Contains(AllWorkloads, w) {
			return nil, fmt.Errorf("unknown workload %q (want W1–W9)", w)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	r := &runner{cfg: cfg, ctx: ctx}
	var plan []group
	for _, g := range groups {
		for _, w := range g.workloads {
			if slices.Contains(cfg.Workloads, w) {
				plan = append(plan, g)
				break
			}
		}
	}
	r.removeStale(plan)
	var out []Record
	for _, g := range plan {
		quick := cfg.Quick || cfg.QuickFor[g.key]
		for _, w := range g.workloads {
			quick = quick || cfg.QuickFor[w]
		}
		sz := FullSizes
		if quick {
			sz = QuickSizes
		}
		var pending []string // this group's finished folders
		for rep := range cfg.Reps {
			r.rep = rep
			for _, name := range cfg.Systems {
				if g.oursOnly && name != "ours" {
					continue
				}
				if err := ctx.Err(); err != nil {
					r.removeFolders(pending, false)
					return out, err
				}
				if free, err := freeSpace(cfg.WorkDir); err == nil {
					r.makeRoom(&pending, g.disk(sz), free, g.manyFiles)
				}
				recs, dir := r.runGroup(g, name, rep, quick, sz)
				if dir != "" {
					pending = append(pending, dir)
					// Its files leave the page cache now: the next run would otherwise
					// pay for reclaiming them (a 1 GiB group leaves three copies).
					if err := evictCache(dir); err != nil {
						r.logf("evict %s from the page cache: %v", dir, err)
					}
				}
				for _, rec := range recs {
					if slices.Contains(cfg.Workloads, rec.Workload) {
						out = append(out, rec)
					}
				}
			}
		}
		// The settle also follows the last group: the next invocation's runs (an A/B
		// alternation) must not pay for this one's removal either.
		r.removeFolders(pending, g.manyFiles)
	}
	return out, nil
}

// removeStale removes folders an earlier invocation left in the work dir under the
// names this one will use (a failed run's, or SYNCBENCH_KEEP's), settling after them.
func (r *runner) removeStale(plan []group) {
	var stale []string
	many := false
	for _, g := range plan {
		for rep := range r.cfg.Reps {
			for _, name := range r.cfg.Systems {
				dir := r.dirOf(g, name, rep)
				if _, err := os.Lstat(dir); err == nil {
					stale = append(stale, dir)
					many = many || g.manyFiles
				}
			}
		}
	}
	if len(stale) > 0 {
		r.logf("removing %d folder(s) left by an earlier run", len(stale))
		r.remove(stale, many)
	}
}

func (r *runner) dirOf(g group, name string, rep int) string {
	return filepath.Join(r.cfg.WorkDir, fmt.Sprintf("%s-%s-%d", g.key, name, rep))
}

// runGroup runs one system's repetition of a group in a fresh folder and returns the
// records and the folder, for the caller to remove when the group is done ("" when the
// folder stays for the post-mortem of a failure).
func (r *runner) runGroup(g group, name string, rep int, quick bool, sz Sizes) (recs []Record, remove string) {
	var keep bool
	dir := r.dirOf(g, name, rep)
	defer func() { // runs after every return below has set recs
		if !keep {
			remove = dir
		}
	}()
	fail := func(err error) []Record {
		keep = true
		r.logf("%s %s rep %d: %v", g.key, name, rep, err)
		var out []Record
		for _, w := range g.workloads {
			out = append(out, Record{Workload: w, System: name, Rep: rep, Quick: quick, Error: err.Error()})
		}
		return out
	}
	sys, err := r.newSystem(name)
	if err != nil {
		return fail(err), ""
	}
	// A stale folder was removed (and settled) before the first group.
	if err := os.MkdirAll(filepath.Join(dir, "stage"), 0o755); err != nil {
		return fail(err), ""
	}
	// A failed group's folders and logs stay for the post-mortem (keep).
	readers := 1
	if g.key == "W8" {
		readers = sz.Agents
	}
	r.logf("%s %s rep %d: starting", g.key, name, rep)
	if err := sys.Start(r.ctx, dir, readers); err != nil {
		sys.Stop()
		return fail(fmt.Errorf("start %s: %w", name, err)), ""
	}
	defer sys.Stop()
	gen := NewGen(seedOf(r.cfg.Seed, g.key, name, rep))
	// Warm-up: one small file end to end, so every process is connected and idle.
	if _, err := r.change(sys, dir, "warmup", func(stage string) (*Expect, func() error, error) {
		return r.placeTree(sys, gen, stage, "warmup", 1)
	}); err != nil {
		return fail(fmt.Errorf("warm up: %w", err)), ""
	}
	recs, err = g.run(r, sys, gen, sz)
	for i := range recs {
		recs[i].System, recs[i].Rep, recs[i].Quick = name, rep, quick
		r.logf("%s %s rep %d: %.3fs wire %d cpu %.2fs %v %s", recs[i].Workload, name, rep,
			recs[i].Seconds, recs[i].WireBytes, recs[i].CPU["total"], recs[i].Extra, recs[i].Error)
	}
	for _, rec := range recs {
		keep = keep || rec.Error != ""
	}
	if err != nil {
		// The workloads not reached are recorded as failed too.
		done := map[string]bool{}
		for _, rec := range recs {
			done[rec.Workload] = true
		}
		for _, f := range fail(err) {
			if !done[f.Workload] {
				recs = append(recs, f)
			}
		}
	}
	return recs, "" // remove is set by the deferred func
}

func seedOf(base uint64, parts ...any) uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, base)
	for _, p := range parts {
		fmt.Fprint(h, "/", p)
	}
	return h.Sum64()
}

// change prepares a change (prepare gets a staging dir beside the folders and returns
// what the readers must show plus the change itself), then times the change until every
// reader shows it, and verifies the content. CPU, memory and wire bytes cover the same span.
func (r *runner) change(sys System, dir, workload string, prepare func(stage string) (*Expect, func() error, error)) (Record, error) {
	rec := Record{Workload: workload}
	stage := filepath.Join(dir, "stage")
	e, apply, err := prepare(stage)
	if err != nil {
		return rec, fmt.Errorf("prepare %s: %w", workload, err)
	}
	// The generated data goes to disk before the clock starts: otherwise whichever system
	// flushes the file system (our reader's syncfs) or meets the kernel's writeback of
	// dirty pages writes the generator's output inside its measured time.
	if err := syncFS(dir); err != nil {
		r.logf("flush %s before %s: %v", dir, workload, err)
	}
	e.snapshot(sys.Readers())
	for _, p := range sys.Procs() {
		p.markCPU()
	}
	sys.ClientUsage()
	wire0 := sys.Wire().Load()
	t0 := time.Now()
	if err := apply(); err != nil {
		return rec, fmt.Errorf("apply %s: %w", workload, err)
	}
	if err := sys.Changed(r.ctx); err != nil {
		return rec, err
	}
	if err := waitMet(e, sys.Readers(), r.cfg.Timeout, sys.Alive); err != nil {
		return rec, fmt.Errorf("%s: %w", workload, err)
	}
	rec.Seconds = time.Since(t0).Seconds()
	// A system may show its files before they are on disk (rsync and Syncthing leave
	// them to the kernel's writeback; ours flushes before it records a file as synced),
	// so the time until every reader's file system is flushed is measured too: what a
	// crash of the receiving machine right after the change would keep.
	if err := syncReaders(sys.Readers()); err != nil {
		return rec, fmt.Errorf("%s: %w", workload, err)
	}
	rec.setExtra(durableKey, time.Since(t0).Seconds())
	// Let trailing acknowledgements (the reader's commit of its sync state, index
	// updates) land in the wire and CPU counts before reading them.
	time.Sleep(300 * time.Millisecond)
	rec.WireBytes = sys.Wire().Load() - wire0
	r.usage(sys, &rec)
	if err := r.verifyUntil(sys); err != nil {
		return rec, fmt.Errorf("verify %s: %w", workload, err)
	}
	rec.Verified = true
	return rec, nil
}

func (r *runner) usage(sys System, rec *Record) {
	rec.CPU, rec.PeakRSS = map[string]float64{}, map[string]int64{}
	var total float64
	for _, p := range sys.Procs() {
		cpu, rss := p.usage()
		rec.CPU[p.Role] += cpu
		rec.PeakRSS[p.Role] = rss
		total += cpu
	}
	if cpu, rss := sys.ClientUsage(); cpu > 0 || rss > 0 {
		rec.CPU["client"] = cpu
		rec.PeakRSS["client"] = rss
		total += cpu
	}
	rec.CPU["total"] = total
}

// verifyUntil compares the manifests, retrying a little: the stat check can pass a
// moment before a system's last rename of a same-size file.
func (r *runner) verifyUntil(sys System) error {
	deadline := time.Now().Add(min(r.cfg.Timeout, time.Minute))
	for {
		err := verify(sys.Writer(), sys.Readers())
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if aerr := sys.Alive(); aerr != nil {
			return errors.Join(err, aerr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
