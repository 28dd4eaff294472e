package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// placeTree generates count small files under stage/name and returns the change that
// moves the whole tree into the writer in one rename, so no system sees it half-written.
func (r *runner) placeTree(sys System, g *Gen, stage, name string, count int) (*Expect, func() error, error) {
	sizes, err := g.SmallTree(stage, name, count)
	if err != nil {
		return nil, nil, err
	}
	e := &Expect{Sizes: sizes}
	return e, func() error {
		return os.Rename(filepath.Join(stage, name), filepath.Join(sys.Writer(), name))
	}, nil
}

// dirOf is the folder of a system's workspace (the parent of its writer folder).
func dirOf(sys System) string { return filepath.Dir(sys.Writer()) }

// smallFiles is W1: the initial sync of SmallFiles files of 1–16 KiB.
func (r *runner) smallFiles(sys System, g *Gen, sz Sizes) ([]Record, error) {
	rec, err := r.change(sys, dirOf(sys), "W1", func(stage string) (*Expect, func() error, error) {
		return r.placeTree(sys, g, stage, "w1", sz.SmallFiles)
	})
	rec.setExtra("files", float64(sz.SmallFiles))
	return records(rec, err)
}

func records(rec Record, err error) ([]Record, error) {
	if err != nil {
		rec.Error = err.Error()
	}
	return []Record{rec}, err
}

const bigName, bigRenamed = "big.bin", "big-renamed.bin"

// bigFile is W2 (a new big file), W3 (one byte changed in its middle), W6 (one byte
// inserted at its start) and W7 (its rename), in that order on the same file.
func (r *runner) bigFile(sys System, g *Gen, sz Sizes) ([]Record, error) {
	dir := dirOf(sys)
	var out []Record
	add := func(rec Record, err error) error {
		if err != nil {
			rec.Error = err.Error()
		}
		rec.setExtra("fileBytes", float64(sz.BigFile))
		out = append(out, rec)
		return err
	}
	path := filepath.Join(sys.Writer(), bigName)
	err := add(r.change(sys, dir, "W2", func(stage string) (*Expect, func() error, error) {
		tmp := filepath.Join(stage, bigName)
		if err := g.WriteFile(tmp, sz.BigFile); err != nil {
			return nil, nil, err
		}
		return &Expect{Sizes: map[string]int64{bigName: sz.BigFile}}, func() error { return os.Rename(tmp, path) }, nil
	}))
	if err != nil {
		return out, err
	}
	err = add(r.change(sys, dir, "W3", func(string) (*Expect, func() error, error) {
		return &Expect{Sizes: map[string]int64{bigName: sz.BigFile}}, func() error {
			return flipByte(path, sz.BigFile/2)
		}, nil
	}))
	if err != nil {
		return out, err
	}
	err = add(r.change(sys, dir, "W6", func(stage string) (*Expect, func() error, error) {
		tmp := filepath.Join(stage, bigName)
		if err := prependByte(path, tmp, g.Bytes(1)[0]); err != nil {
			return nil, nil, err
		}
		return &Expect{Sizes: map[string]int64{bigName: sz.BigFile + 1}}, func() error { return os.Rename(tmp, path) }, nil
	}))
	if err != nil {
		return out, err
	}
	err = add(r.change(sys, dir, "W7", func(string) (*Expect, func() error, error) {
		return &Expect{Sizes: map[string]int64{bigRenamed: sz.BigFile + 1}, Gone: []string{bigName}}, func() error {
			return os.Rename(path, filepath.Join(sys.Writer(), bigRenamed))
		}, nil
	}))
	return out, err
}

// flipByte changes the byte at off in place (same size: the case one peer missed).
func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", path, err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return fmt.Errorf("read %q: %w", path, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return f.Close()
}

// prependByte writes b followed by src's content to dst.
func prependByte(src, dst string, b byte) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %q: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create %q: %w", dst, err)
	}
	if _, err := out.Write([]byte{b}); err != nil {
		out.Close()
		return fmt.Errorf("write %q: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %q: %w", dst, err)
	}
	return out.Close()
}

// manyFiles is W4 (ManyFiles files, nothing changed: how long until the writer knows)
// and W9 (the memory of the processes that index them). The tree is synced first,
// untimed.
func (r *runner) manyFiles(sys System, g *Gen, sz Sizes) ([]Record, error) {
	setup, err := r.change(sys, dirOf(sys), "W4-setup", func(stage string) (*Expect, func() error, error) {
		return r.placeTree(sys, g, stage, "w4", sz.ManyFiles)
	})
	if err != nil {
		return nil, fmt.Errorf("sync %d files: %w", sz.ManyFiles, err)
	}
	r.logf("W4 setup %s: %d files in %.1fs", sys.Name(), sz.ManyFiles, setup.Seconds)
	w9 := Record{Workload: "W9", Verified: true, Extra: map[string]float64{"files": float64(sz.ManyFiles), "setupSeconds": setup.Seconds}}
	r.usage(sys, &w9)
	// W9 is about the syncing process's memory: our server is left out (its own row
	// in the JSON), the peers' processes are all the syncing ones.
	for role, v := range w9.PeakRSS {
		if role != "server" {
			w9.Extra["peakRssBytes"] = max(w9.Extra["peakRssBytes"], float64(v))
		}
	}
	w4 := Record{Workload: "W4", Extra: map[string]float64{"files": float64(sz.ManyFiles)}}
	for _, p := range sys.Procs() {
		p.markCPU()
	}
	sys.ClientUsage()
	wire0 := sys.Wire().Load()
	if ours, ok := sys.(*Ours); ok {
		// Our agent knows at start-up: the time of a --once pass of a restarted agent
		// over the unchanged tree (the running agent learns of changes from its watcher).
		ours.StopWriter()
		for _, p := range sys.Procs() {
			p.markCPU()
		}
		cmd := exec.CommandContext(r.ctx, r.cfg.Bins.Agent, ours.WriterOnceArgs()...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		t0 := time.Now()
		cpu, rss, err := runMeasured(cmd)
		w4.Seconds = time.Since(t0).Seconds()
		w4.WireBytes = sys.Wire().Load() - wire0
		r.usage(sys, &w4)
		w4.CPU["agent-once"], w4.PeakRSS["agent-once"] = cpu, rss
		w4.CPU["total"] += cpu
		w9.Extra["oncePeakRssBytes"] = float64(rss)
		if err != nil {
			w4.Error = fmt.Sprintf("syncagent --once: %v: %s", err, lastLines(buf.String(), 5))
			return []Record{w4, w9}, nil
		}
	} else {
		// rsync: a client run over the unchanged tree; Syncthing: a rescan (the REST
		// call returns when it is done).
		t0 := time.Now()
		err := sys.Changed(r.ctx)
		w4.Seconds = time.Since(t0).Seconds()
		w4.WireBytes = sys.Wire().Load() - wire0
		r.usage(sys, &w4)
		if err != nil {
			w4.Error = err.Error()
			return []Record{w4, w9}, nil //nolint:nilerr // the failure is the workload's result (Record.Error), not the harness's
		}
	}
	if err := r.verifyUntil(sys); err != nil {
		w4.Error = err.Error()
	} else {
		w4.Verified = true
	}
	return []Record{w4, w9}, nil
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// latency is W5: Writes single 4 KiB writes, one after the other, each timed from the
// write until the reader holds the content; p50 and p99.
func (r *runner) latency(sys System, g *Gen, sz Sizes) ([]Record, error) {
	rec := Record{Workload: "W5"}
	for _, p := range sys.Procs() {
		p.markCPU()
	}
	sys.ClientUsage()
	wire0 := sys.Wire().Load()
	var lat []float64
	reader := sys.Readers()[0]
	for i := range sz.Writes {
		rel := fmt.Sprintf("warmup/w5-%03d.bin", i) // warmup/ exists on both sides already
		data := g.Bytes(4096)
		t0 := time.Now()
		if err := os.WriteFile(filepath.Join(sys.Writer(), rel), data, 0o644); err != nil {
			return records(rec, fmt.Errorf("write %s: %w", rel, err))
		}
		if err := sys.Changed(r.ctx); err != nil {
			return records(rec, err)
		}
		deadline := t0.Add(r.cfg.Timeout)
		for {
			got, err := os.ReadFile(filepath.Join(reader, rel))
			if err == nil && bytes.Equal(got, data) {
				break
			}
			if aerr := sys.Alive(); aerr != nil {
				return records(rec, aerr)
			}
			if time.Now().After(deadline) {
				return records(rec, fmt.Errorf("write %d: %w after %v", i, errTimeout, r.cfg.Timeout))
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0).Seconds())
		time.Sleep(50 * time.Millisecond) // one write at a time, not a burst
	}
	time.Sleep(300 * time.Millisecond)
	rec.WireBytes = sys.Wire().Load() - wire0
	r.usage(sys, &rec)
	slices.Sort(lat)
	rec.Extra = map[string]float64{"writes": float64(len(lat)), "p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": lat[len(lat)-1]}
	rec.Seconds = rec.Extra["p50"]
	if err := r.verifyUntil(sys); err != nil {
		return records(rec, err)
	}
	rec.Verified = true
	return []Record{rec}, nil
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// fanOut is W8: one server, Agents receiving agents, W1's tree from one writer; the
// server's CPU per receiving agent.
func (r *runner) fanOut(sys System, g *Gen, sz Sizes) ([]Record, error) {
	rec, err := r.change(sys, dirOf(sys), "W8", func(stage string) (*Expect, func() error, error) {
		return r.placeTree(sys, g, stage, "w8", sz.SmallFiles)
	})
	rec.setExtra("files", float64(sz.SmallFiles))
	rec.setExtra("agents", float64(len(sys.Readers())))
	if rec.CPU != nil {
		rec.Extra["serverCpuPerAgent"] = rec.CPU["server"] / float64(len(sys.Readers()))
	}
	return records(rec, err)
}
