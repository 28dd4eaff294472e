package agent

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxReports caps the reports kept for the status endpoint.
const maxReports = 50

// statusState is the agent's live status, shared between its loop and the HTTP handler.
type statusState struct {
	mu            sync.Mutex
	started       time.Time
	serverUp      bool
	pending       int
	lastSync      time.Time
	lastErr       string
	breaker       bool
	breakerLocal  int
	breakerRemote int
	pendingSince  time.Time // oldest remote change (by another agent) not yet synced here
	lastLag       time.Duration
	reports       map[string]string
	folderID      string
	cursor        int64
}

func (s *statusState) setCursor(folderID string, cursor int64) {
	s.mu.Lock()
	s.folderID, s.cursor = folderID, cursor
	s.mu.Unlock()
}

func (s *statusState) setServerUp(up bool) {
	s.mu.Lock()
	s.serverUp = up
	s.mu.Unlock()
}

func (s *statusState) setPending(n int) {
	s.mu.Lock()
	s.pending = n
	s.mu.Unlock()
}

func (s *statusState) setError(err error) {
	s.mu.Lock()
	if err == nil {
		s.lastErr = ""
	} else {
		s.lastErr = err.Error()
	}
	s.mu.Unlock()
}

func (s *statusState) notePending(modifiedAt time.Time) {
	s.mu.Lock()
	if !modifiedAt.IsZero() && (s.pendingSince.IsZero() || modifiedAt.Before(s.pendingSince)) {
		s.pendingSince = modifiedAt
	}
	s.mu.Unlock()
}

// synced records a moment when disk and server agreed.
func (s *statusState) synced(now time.Time) {
	s.mu.Lock()
	s.lastSync = now
	s.serverUp = true
	if !s.pendingSince.IsZero() {
		s.lastLag = max(now.Sub(s.pendingSince), 0)
		s.pendingSince = time.Time{}
	}
	s.mu.Unlock()
}

func (s *statusState) setBreaker(on bool, local, remote int) {
	s.mu.Lock()
	s.breaker, s.breakerLocal, s.breakerRemote = on, local, remote
	s.mu.Unlock()
}

func (s *statusState) breakerTripped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.breaker
}

// setReports replaces the reports with those of the latest plan and returns the new
// ones (a path not reported before, or for another reason).
func (s *statusState) setReports(cur map[string]string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := map[string]string{}
	for p, why := range cur {
		if s.reports[p] != why {
			fresh[p] = why
		}
	}
	s.reports = cur
	return fresh
}

func (s *statusState) lag(now time.Time) time.Duration {
	if !s.pendingSince.IsZero() {
		return max(now.Sub(s.pendingSince), 0)
	}
	return s.lastLag
}

// Status is the agent's JSON status.
type Status struct {
	AgentID           string            `json:"agentId"`
	Dir               string            `json:"dir"`
	Server            string            `json:"server"`
	Mode              string            `json:"mode"`
	ServerReachable   bool              `json:"serverReachable"`
	FolderID          string            `json:"folderId,omitempty"`
	Cursor            int64             `json:"cursor"`
	PendingOps        int               `json:"pendingOperations"`
	LastSync          time.Time         `json:"lastSuccessfulSync,omitzero"`
	SyncLagSeconds    float64           `json:"syncLagSeconds"`
	LastError         string            `json:"lastError,omitempty"`
	Conflicts         int64             `json:"conflicts"`
	BytesUp           int64             `json:"bytesUp"`
	BytesDown         int64             `json:"bytesDown"`
	BytesReused       int64             `json:"bytesReused"`
	PatchedInPlace    int64             `json:"filesPatchedInPlace"`
	MassDeletePaused  bool              `json:"massDeletePaused"`
	HeldLocalDeletes  int               `json:"heldLocalDeletes,omitempty"`
	HeldRemoteDeletes int               `json:"heldRemoteDeletes,omitempty"`
	Reports           map[string]string `json:"reports,omitempty"`
}

// Status returns the agent's status now.
func (a *Agent) Status() Status {
	s := &a.st
	s.mu.Lock()
	defer s.mu.Unlock()
	reports := make(map[string]string, len(s.reports))
	for k, v := range s.reports {
		reports[k] = v
	}
	return Status{
		AgentID: a.cfg.AgentID, Dir: a.cfg.Dir, Server: a.cfg.Server.BaseURL(), Mode: string(a.cfg.Mode),
		ServerReachable: s.serverUp, FolderID: s.folderID, Cursor: s.cursor, PendingOps: s.pending, LastSync: s.lastSync,
		SyncLagSeconds: s.lag(time.Now()).Seconds(), LastError: s.lastErr,
		Conflicts: a.counters.Conflicts.Load(), BytesUp: a.counters.BytesUp.Load(),
		BytesDown: a.counters.BytesDown.Load(), BytesReused: a.counters.BytesReused.Load(),
		PatchedInPlace:   a.counters.PatchedInPlace.Load(),
		MassDeletePaused: s.breaker, HeldLocalDeletes: s.breakerLocal, HeldRemoteDeletes: s.breakerRemote,
		Reports: reports,
	}
}

// Ready reports whether the agent has completed its first full sync: disk and server agreed
// at least once since it started.
func (a *Agent) Ready() bool {
	a.st.mu.Lock()
	defer a.st.mu.Unlock()
	return !a.st.lastSync.IsZero()
}

// Handler serves /healthz, /readyz, /status (JSON) and /metrics (Prometheus). /readyz
// answers 503 until the first full sync pass completes and 200 from then on: in a pod it is
// the native sidecar's startup probe, so the app starts on a synced folder, and a later
// server outage must not take the app out of service.
func (a *Agent) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, fn func(Status) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return fn(a.Status()) }))
	}
	counter := func(name, help string, fn func() int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(fn()) }))
	}
	gauge("syncagent_pending_operations", "Operations of the current plan not yet done.", func(s Status) float64 { return float64(s.PendingOps) })
	gauge("syncagent_last_sync_timestamp_seconds", "When disk and server last agreed (Unix seconds; 0: never).", func(s Status) float64 {
		if s.LastSync.IsZero() {
			return 0
		}
		return float64(s.LastSync.UnixNano()) / 1e9
	})
	gauge("syncagent_sync_lag_seconds", "Age of the oldest remote change not yet applied here, else the last such delay.", func(s Status) float64 { return s.SyncLagSeconds })
	gauge("syncagent_server_up", "1 when the last call to the server succeeded.", func(s Status) float64 { return b2f(s.ServerReachable) })
	gauge("syncagent_mass_delete_paused", "1 while the mass-delete breaker holds deletes back.", func(s Status) float64 { return b2f(s.MassDeletePaused) })
	counter("syncagent_conflicts_total", "Conflict copies made by this agent.", a.counters.Conflicts.Load)
	counter("syncagent_bytes_uploaded_total", "Content bytes sent to the server.", a.counters.BytesUp.Load)
	counter("syncagent_bytes_downloaded_total", "Content bytes fetched from the server.", a.counters.BytesDown.Load)
	counter("syncagent_bytes_reused_total", "Download bytes taken from local files instead of the server.", a.counters.BytesReused.Load)
	counter("syncagent_files_patched_in_place_total", "Downloads written into the large file they replace, the changed bytes only.", a.counters.PatchedInPlace.Load)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !a.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"first sync not complete"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
