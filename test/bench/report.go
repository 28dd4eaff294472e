package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is one harness run, as saved in JSON.
type Report struct {
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	GoVersion string    `json:"goVersion"`
	CPUs      int       `json:"cpus"`
	LoadStart string    `json:"loadAverageAtStart"`
	LoadEnd   string    `json:"loadAverageAtEnd"`
	Peers     []string  `json:"peers"` // versions
	// Machine is the machine's speed measured before the workloads (absent in reports
	// made before it was).
	Machine *MachineSpeed `json:"machine,omitempty"`
	Reps    int           `json:"reps"`
	Sizes   struct {
		Full  Sizes `json:"full"`
		Quick Sizes `json:"quick"`
	} `json:"sizes"`
	Records []Record `json:"records"`
	Summary []Row    `json:"summary"`
}

// Row is one metric of one workload: the median per system, the per-repetition ratios
// of ours to each peer, and the target.
type Row struct {
	Workload string               `json:"workload"`
	Metric   string               `json:"metric"`
	Unit     string               `json:"unit"`
	Quick    bool                 `json:"quick"`
	Medians  map[string]float64   `json:"medians"`
	Ratios   map[string][]float64 `json:"ratios"` // "rsync" → ours/rsync per repetition
	Failures map[string]int       `json:"failures,omitempty"`
	Target   string               `json:"target,omitempty"`
	Met      *bool                `json:"met,omitempty"`
}

// LoadAverage is /proc/loadavg's first three fields.
func LoadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// NewReport fills the machine facts of a run started at start.
func NewReport(start time.Time, reps int, peers []string) *Report {
	r := &Report{Started: start.UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), LoadStart: LoadAverage(), Reps: reps, Peers: peers}
	r.Sizes.Full, r.Sizes.Quick = FullSizes, QuickSizes
	return r
}

// metric is one figure read from a record.
type metric struct {
	name, unit string
	get        func(Record) (float64, bool)
}

func fromSeconds(r Record) (float64, bool) { return r.Seconds, true }
func fromWire(r Record) (float64, bool)    { return float64(r.WireBytes), true }
func fromCPU(r Record) (float64, bool)     { v, ok := r.CPU["total"]; return v, ok }
func fromExtra(k string) func(Record) (float64, bool) {
	return func(r Record) (float64, bool) { v, ok := r.Extra[k]; return v, ok }
}

// metricsOf lists what the table shows per workload.
func metricsOf(w string) []metric {
	durable := metric{"time until on disk", "s", fromExtra(durableKey)}
	timeWireCPU := []metric{{"time", "s", fromSeconds}, durable, {"wire", "bytes", fromWire}, {"cpu", "s", fromCPU}}
	switch w {
	case "W4":
		// Nothing is written: the flush measures nothing of the system.
		return []metric{{"time", "s", fromSeconds}, {"wire", "bytes", fromWire}, {"cpu", "s", fromCPU}}
	case "W5":
		return []metric{{"p50", "s", fromExtra("p50")}, {"p99", "s", fromExtra("p99")}, {"wire", "bytes", fromWire}, {"cpu", "s", fromCPU}}
	case "W8":
		return []metric{{"time", "s", fromSeconds}, durable, {"server cpu per agent", "s", fromExtra("serverCpuPerAgent")}, {"wire", "bytes", fromWire}}
	case "W9":
		return []metric{{"peak rss", "bytes", fromExtra("peakRssBytes")}, {"peak rss, restarted agent", "bytes", fromExtra("oncePeakRssBytes")}}
	}
	return timeWireCPU
}

// Summarize computes the table from the records.
func (r *Report) Summarize() {
	r.Summary = nil
	for _, w := range AllWorkloads {
		var recs []Record
		for _, rec := range r.Records {
			if rec.Workload == w {
				recs = append(recs, rec)
			}
		}
		if len(recs) == 0 {
			continue
		}
		for _, m := range metricsOf(w) {
			row := Row{Workload: w, Metric: m.name, Unit: m.unit, Quick: recs[0].Quick, Medians: map[string]float64{},
				Ratios: map[string][]float64{}, Failures: map[string]int{}}
			perSys := map[string]map[int]float64{}
			for _, rec := range recs {
				if rec.Error != "" || !rec.Verified {
					row.Failures[rec.System]++
					continue
				}
				v, ok := m.get(rec)
				if !ok {
					continue
				}
				if perSys[rec.System] == nil {
					perSys[rec.System] = map[int]float64{}
				}
				perSys[rec.System][rec.Rep] = v
			}
			for sys, reps := range perSys {
				var vals []float64
				for _, v := range reps {
					vals = append(vals, v)
				}
				row.Medians[sys] = median(vals)
			}
			for peer, reps := range perSys {
				if peer == "ours" {
					continue
				}
				var ratios []float64
				for rep := range r.Reps {
					o, ok1 := perSys["ours"][rep]
					p, ok2 := reps[rep]
					if ok1 && ok2 && p > 0 {
						ratios = append(ratios, o/p)
					}
				}
				if len(ratios) > 0 {
					row.Ratios[peer] = ratios
				}
			}
			if len(row.Failures) == 0 {
				row.Failures = nil
			}
			row.Target, row.Met = target(w, m.name, row.Medians, recs)
			r.Summary = append(r.Summary, row)
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// target states the target for a row and whether the medians meet it.
func target(w, metric string, med map[string]float64, recs []Record) (string, *bool) {
	ours, haveOurs := med["ours"]
	if !haveOurs {
		return "", nil
	}
	verdict := func(ok bool) *bool { return &ok }
	rsync, haveRsync := med["rsync"]
	st, haveST := med["syncthing"]
	switch {
	case w == "W1" && metric == "time":
		t := "≤ 2× rsync, ≥ 5× faster than Syncthing"
		if !haveRsync || !haveST {
			return t, nil
		}
		return t, verdict(ours <= 2*rsync && st >= 5*ours)
	case w == "W2" && metric == "time":
		if !haveRsync {
			return "≤ 2× rsync", nil
		}
		return "≤ 2× rsync", verdict(ours <= 2*rsync)
	case (w == "W3" || w == "W6") && metric == "wire":
		return "≤ 512 KiB", verdict(ours <= 512<<10)
	case (w == "W3" || w == "W6") && metric == "time":
		return "≤ 1.5 s", verdict(ours <= 1.5)
	case w == "W4" && metric == "time":
		return "≤ 0.6 s", verdict(ours <= 0.6)
	case w == "W5" && metric == "p50":
		return "≤ 100 ms", verdict(ours <= 0.1)
	case w == "W5" && metric == "p99":
		return "≤ 500 ms", verdict(ours <= 0.5)
	case w == "W7" && metric == "wire":
		return "≤ 64 KiB", verdict(ours <= 64<<10)
	case w == "W9" && metric == "peak rss":
		files := 0.0
		for _, r := range recs {
			if r.System == "ours" {
				files = r.Extra["files"]
			}
		}
		limit := 30<<20 + 300*files
		return fmt.Sprintf("≤ 30 MiB + 300 B × %.0f files = %s", files, human(limit, "bytes")), verdict(ours <= limit)
	}
	return "", nil
}

// Save writes the report as indented JSON.
func (r *Report) Save(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %q: %w", path, err)
	}
	return nil
}

// LoadReport reads a saved report.
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report %q: %w", path, err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode report %q: %w", path, err)
	}
	return &r, nil
}

func human(v float64, unit string) string {
	switch unit {
	case "s":
		if v < 1 {
			return fmt.Sprintf("%.0f ms", v*1000)
		}
		return fmt.Sprintf("%.2f s", v)
	case "bytes":
		switch {
		case v >= 1<<30:
			return fmt.Sprintf("%.2f GiB", v/(1<<30))
		case v >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%g", v)
}

// Markers delimit the part of docs/benchmarks.md the harness rewrites.
const (
	BeginMarker = "<!-- syncbench:begin (written by `make bench`; edits inside are lost) -->"
	EndMarker   = "<!-- syncbench:end -->"
)

// Markdown renders the summary.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s UTC, %d repetition(s), %d CPUs, load average %s at start and %s at end, %s; peers: %s.\n\n",
		r.Started.Format("2006-01-02 15:04"), r.Reps, r.CPUs, r.LoadStart, r.LoadEnd, r.GoVersion, strings.Join(r.Peers, ", "))
	if r.Machine != nil {
		fmt.Fprintf(&b, "Machine, measured before the workloads: %s.\n\n", r.Machine)
	}
	fmt.Fprintf(&b, "Sizes: full = %+v; quick = %+v. Workloads marked *quick* ran with the quick sizes.\n\n", r.Sizes.Full, r.Sizes.Quick)
	b.WriteString("| Workload | Metric | ours | rsync | Syncthing | ours / rsync (per rep) | ours / Syncthing (per rep) | Target (ours, medians) | Met |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Summary {
		w := row.Workload
		if row.Quick {
			w += " *quick*"
		}
		cell := func(sys string) string {
			s := "—"
			if v, ok := row.Medians[sys]; ok {
				s = human(v, row.Unit)
			}
			if n := row.Failures[sys]; n > 0 {
				s += fmt.Sprintf(" (%d failed)", n)
			}
			return s
		}
		ratios := func(peer string) string {
			var parts []string
			for _, v := range row.Ratios[peer] {
				parts = append(parts, fmt.Sprintf("%.2f", v))
			}
			if len(parts) == 0 {
				return "—"
			}
			return strings.Join(parts, ", ")
		}
		met := ""
		if row.Met != nil {
			met = "not met"
			if *row.Met {
				met = "met"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, row.Metric, cell("ours"), cell("rsync"),
			cell("syncthing"), ratios("rsync"), ratios("syncthing"), row.Target, met)
	}
	return b.String()
}

// RenderInto replaces the marked section of the document at path with the report (the
// section is appended, with its markers, when the document has none).
func (r *Report) RenderInto(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %q: %w", path, err)
	}
	doc := string(raw)
	section := BeginMarker + "\n" + r.Markdown() + EndMarker
	i, j := strings.Index(doc, BeginMarker), strings.Index(doc, EndMarker)
	switch {
	case i >= 0 && j > i:
		doc = doc[:i] + section + doc[j+len(EndMarker):]
	case i < 0 && j < 0:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section + "\n"
	default:
		return fmt.Errorf("render into %q: the markers are out of order or one is missing", path)
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}
