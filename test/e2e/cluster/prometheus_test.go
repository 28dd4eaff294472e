//go:build e2e

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// scrapeTarget is one endpoint of a ServiceMonitor, resolved the way the Prometheus Operator
// does: the Services its selector matches, their EndpointSlices' ready addresses on the named
// port, and the endpoint's scheme, path, interval and TLS settings.
type scrapeTarget struct {
	Addresses  []string
	Scheme     string
	Path       string
	Interval   string
	CAPEM      string
	ServerName string
}

// resolveServiceMonitor reads ServiceMonitor ns/name and resolves its first endpoint.
func (e *env) resolveServiceMonitor(ns, name string) (*scrapeTarget, error) {
	var sm monitoringv1.ServiceMonitor
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, &sm); err != nil {
		return nil, fmt.Errorf("get ServiceMonitor %s/%s: %w", ns, name, err)
	}
	if len(sm.Spec.Endpoints) == 0 {
		return nil, fmt.Errorf("ServiceMonitor %s/%s has no endpoints", ns, name)
	}
	ep := sm.Spec.Endpoints[0]
	t := &scrapeTarget{Scheme: "http", Path: ep.Path, Interval: string(ep.Interval)}
	if ep.Scheme != nil {
		t.Scheme = strings.ToLower(string(*ep.Scheme))
	}
	if t.Path == "" {
		t.Path = "/metrics"
	}
	if t.Interval == "" {
		t.Interval = "30s"
	}
	if tc := ep.TLSConfig; tc != nil {
		if tc.ServerName != nil {
			t.ServerName = *tc.ServerName
		}
		if ref := tc.CA.ConfigMap; ref != nil {
			var cm corev1.ConfigMap
			if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &cm); err != nil {
				return nil, fmt.Errorf("get the ServiceMonitor's CA ConfigMap: %w", err)
			}
			t.CAPEM = cm.Data[ref.Key]
		}
		if ref := tc.CA.Secret; ref != nil {
			var s corev1.Secret
			if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &s); err != nil {
				return nil, fmt.Errorf("get the ServiceMonitor's CA Secret: %w", err)
			}
			t.CAPEM = string(s.Data[ref.Key])
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("ServiceMonitor selector: %w", err)
	}
	var svcs corev1.ServiceList
	if err := e.c.List(e.ctx, &svcs, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	for _, svc := range svcs.Items {
		var slices discoveryv1.EndpointSliceList
		if err := e.c.List(e.ctx, &slices, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
			return nil, fmt.Errorf("list EndpointSlices of %s: %w", svc.Name, err)
		}
		for _, sl := range slices.Items {
			port := int32(0)
			for _, p := range sl.Ports {
				if p.Name != nil && *p.Name == ep.Port && p.Port != nil {
					port = *p.Port
				}
			}
			if port == 0 {
				continue
			}
			for _, en := range sl.Endpoints {
				if en.Conditions.Ready != nil && !*en.Conditions.Ready {
					continue
				}
				for _, a := range en.Addresses {
					t.Addresses = append(t.Addresses, net.JoinHostPort(a, fmt.Sprint(port)))
				}
			}
		}
	}
	if len(t.Addresses) == 0 {
		return nil, fmt.Errorf("ServiceMonitor %s/%s: no ready endpoint on port %q among %d Services", ns, name, ep.Port, len(svcs.Items))
	}
	return t, nil
}

// prometheus runs Debian's Prometheus on a free loopback port with a configuration generated
// from t, until the test ends; it returns the base URL of its HTTP API.
func (e *env) startPrometheus(t *testing.T, job string, st *scrapeTarget) string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte(st.CAPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	interval, err := time.ParseDuration(st.Interval)
	if err != nil {
		t.Fatalf("ServiceMonitor interval %q: %v", st.Interval, err)
	}
	timeout := min(interval, 10*time.Second)
	cfg := map[string]any{
		"global": map[string]any{"scrape_interval": st.Interval, "evaluation_interval": st.Interval},
		"scrape_configs": []any{map[string]any{
			"job_name":        job,
			"scheme":          st.Scheme,
			"metrics_path":    st.Path,
			"scrape_interval": st.Interval,
			"scrape_timeout":  timeout.String(),
			"tls_config":      map[string]any{"ca_file": ca, "server_name": st.ServerName},
			"static_configs":  []any{map[string]any{"targets": st.Addresses}},
		}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus.yml:\n%s", b)
	if e.artifacts != "" {
		_ = os.WriteFile(filepath.Join(e.artifacts, "prometheus.yml"), b, 0o644)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	cmd := exec.CommandContext(ctx, e.prometheus, "--config.file="+cfgFile, "--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--log.level=info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logFile.Close()
		if e.artifacts != "" {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				_ = os.WriteFile(filepath.Join(e.artifacts, "prometheus.log"), b, 0o644)
			}
		}
	})
	return "http://" + addr
}

// promQuery runs an instant query and returns the result vector's samples (labels and value).
func promQuery(base, q string) ([]map[string]any, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []map[string]any `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode query %q: %w", q, err)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, out.Error)
	}
	return out.Data.Result, nil
}

// promTargets returns the scrape pools' health and last error, for failure messages.
func promTargets(base string) string {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/targets")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return err.Error()
	}
	var s []string
	for _, a := range out.Data.ActiveTargets {
		s = append(s, fmt.Sprintf("%s %s %s", a.ScrapeURL, a.Health, a.LastError))
	}
	return strings.Join(s, "; ")
}
