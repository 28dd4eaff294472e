package chart

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncedfolder/synced-folder/internal/testpg"
	"github.com/syncedfolder/synced-folder/internal/testserver"
	"github.com/syncedfolder/synced-folder/syncagent/agent"
	"github.com/syncedfolder/synced-folder/syncagent/plan"
	"github.com/syncedfolder/synced-folder/syncserver/client"
	"github.com/syncedfolder/synced-folder/syncserver/store/postgres"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
	} `json:"datasource"`
	Targets []struct {
		Expr   string `json:"expr"`
		RawSQL string `json:"rawSql"`
		Format string `json:"format"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("want at least two dashboards, found %q (%v)", files, err)
	}
	out := map[string]dashboard{}
	uids := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.Title == "" || d.UID == "" || uids[d.UID] {
			t.Errorf("%s: title %q, uid %q (empty or duplicate)", f, d.Title, d.UID)
		}
		uids[d.UID] = true
		out[filepath.Base(f)] = d
	}
	return out
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// exported scrapes the /metrics of a real sync server and a real agent that synced a file
// through it, and returns every series name they export (histograms with their _bucket,
// _sum and _count series).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	url, _ := testserver.Start(t, t.TempDir(), nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Options{BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Dir: dir, AgentID: "dash", Mode: plan.TwoWay, Server: cl,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Once(ctx); err != nil {
		t.Fatalf("agent pass: %v", err)
	}
	agentSrv := httptest.NewServer(a.Handler())
	t.Cleanup(agentSrv.Close)

	names := map[string]bool{}
	for _, u := range []string{url + "/metrics", agentSrv.URL + "/metrics"} {
		for n, typ := range scrape(t, u) {
			names[n] = true
			switch typ {
			case "histogram":
				names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
			case "summary":
				names[n+"_sum"], names[n+"_count"] = true, true
			}
		}
	}
	return names
}

// scrape returns the metric families of a Prometheus text exposition, name to type.
func scrape(t *testing.T, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("GET %s: no metric families", url)
	}
	return out
}

var (
	// ourMetric matches the names of the server's and the agent's series.
	ourMetric = regexp.MustCompile(`\b(sync|syncagent)_[a-z0-9_]+\b`)
	// selected matches any identifier used as a metric with a selector: name{...}.
	selected = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)
	// quoted matches string literals (label values), which are not metric names.
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// TestDashboardMetricsAreExported checks that every metric the Prometheus dashboard
// queries (panels and variables) is one that the server or the agent really exports.
func TestDashboardMetricsAreExported(t *testing.T) {
	names := exported(t)
	var queries []string
	for file, d := range loadDashboards(t) {
		for _, p := range allPanels(d.Panels) {
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				switch p.Datasource.Type {
				case "prometheus":
					if tg.Expr == "" {
						t.Errorf("%s: panel %q has an empty PromQL query", file, p.Title)
					}
					queries = append(queries, tg.Expr)
				case "grafana-postgresql-datasource":
					if tg.RawSQL == "" {
						t.Errorf("%s: panel %q has an empty SQL query", file, p.Title)
					}
				default:
					t.Errorf("%s: panel %q uses datasource type %q", file, p.Title, p.Datasource.Type)
				}
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil || q.Query == "" {
				t.Errorf("%s: variable %s has no query: %s", file, v.Name, v.Query)
			}
			queries = append(queries, q.Query)
		}
	}
	if len(queries) < 10 {
		t.Fatalf("found %d PromQL queries; the panels were not read", len(queries))
	}
	used := map[string]bool{}
	for _, q := range queries {
		bare := quoted.ReplaceAllString(q, `""`)
		ms := ourMetric.FindAllString(bare, -1)
		for _, m := range selected.FindAllStringSubmatch(bare, -1) {
			if m[1] != "by" && m[1] != "without" {
				ms = append(ms, m[1])
			}
		}
		if len(ms) == 0 {
			t.Errorf("query names no metric: %s", q)
		}
		for _, m := range ms {
			used[m] = true
			if !names[m] {
				t.Errorf("query uses %s, which neither the server nor the agent exports: %s", m, q)
			}
		}
	}
	// The panels the issue asks for are there.
	for _, m := range []string{"sync_uploads_total", "sync_deletes_total", "sync_conflicts_total", "sync_received_bytes_total",
		"sync_sent_bytes_total", "sync_request_duration_seconds_bucket", "sync_changes_waiting", "syncagent_sync_lag_seconds"} {
		if !used[m] {
			t.Errorf("no panel charts %s", m)
		}
	}
}

// grafanaMacros expands the Grafana macros the SQL panels use into plain SQL.
var grafanaMacros = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`)

// TestActivityDashboardSQL runs every SQL panel of the PostgreSQL dashboard against a real
// folder database (the store's migrations) holding a few audit rows.
func TestActivityDashboardSQL(t *testing.T) {
	url := testpg.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	now := time.Now()
	for i, row := range []struct {
		action, path, agent string
		ago                 time.Duration
	}{
		{"upload", "a.txt", "ns/pod-1/sa", 3 * time.Hour},
		{"upload", "a.txt", "ns/pod-2/sa", 2 * time.Hour},
		{"delete", "b.txt", "ns/pod-1/sa", time.Hour},
		{"mkdir", "dir", "ns/pod-1/sa", 30 * time.Minute},
		{"upload", "old.txt", "ns/pod-3/sa", 30 * 24 * time.Hour}, // outside the time range
	} {
		if _, err := conn.Exec(ctx, `INSERT INTO files_log (action, path, version, sha, prev_sha, size, agent, "timestamp")
			VALUES ($1, $2, $3, 'x', 'y', 5, $4, $5)`, row.action, row.path, i+1, row.agent, now.Add(-row.ago)); err != nil {
			t.Fatal(err)
		}
	}
	d := loadDashboards(t)["synced-folder-activity.json"]
	var n int
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			if tg.RawSQL == "" {
				continue
			}
			n++
			q := grafanaMacros.ReplaceAllString(tg.RawSQL, `$1 BETWEEN now() - interval '7 days' AND now()`)
			if strings.Contains(q, "$__") {
				t.Errorf("panel %q uses a Grafana macro this test does not expand: %s", p.Title, q)
				continue
			}
			rows, err := conn.Query(ctx, q)
			if err != nil {
				t.Errorf("panel %q: %v\n%s", p.Title, err, q)
				continue
			}
			var cols []string
			for _, f := range rows.FieldDescriptions() {
				cols = append(cols, f.Name)
			}
			var got int
			for rows.Next() {
				got++
			}
			if err := rows.Err(); err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
			}
			if got == 0 {
				t.Errorf("panel %q returned no row from a log with recent changes", p.Title)
			}
			if tg.Format == "time_series" && !slices.Contains(cols, "time") {
				t.Errorf("panel %q is a time series without a time column: %q", p.Title, cols)
			}
		}
	}
	if n < 3 {
		t.Errorf("%d SQL panels, want activity per hour, top paths and top agents", n)
	}
	for _, title := range []string{"Activity per hour by action", "Top paths", "Top agents"} {
		if !slices.ContainsFunc(allPanels(d.Panels), func(p panel) bool { return p.Title == title }) {
			t.Errorf("no panel %q", title)
		}
	}
}
