package testpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Server is a private PostgreSQL server of one test, which the test may stop and start
// again (on the same port, with the same data) to see how a client lives through it.
type Server struct {
	dir   string
	url   string
	port  int
	pgbin string

	mu      sync.Mutex
	running bool
}

// Start starts a private server for t in a temporary directory and removes it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "testpg-private-")
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	u, err := startDir(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if err := stopDir(dir); err != nil {
			t.Errorf("testpg: %v", err)
		}
	})
	// After hack/postgres.sh start, which installs PostgreSQL when it is missing.
	pgbin, err := findPGBin()
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "port"))
	if err != nil {
		t.Fatalf("testpg: read port: %v", err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("testpg: read port: %v", err)
	}
	return &Server{dir: dir, url: u, port: port, pgbin: pgbin, running: true}
}

// URL is the connection URL of the server's postgres database. It stays the same across
// Stop and Start.
func (s *Server) URL() string { return s.url }

// Stop shuts the server down (fast mode: open connections are closed) and keeps its data.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return errors.New("testpg: server is not running")
	}
	if err := s.pgctl("-m", "fast", "-w", "stop"); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Start starts the stopped server again on the same port.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("testpg: server is already running")
	}
	// The same settings as hack/postgres.sh start.
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c max_connections=200", s.port, s.dir)
	if err := s.pgctl("-l", filepath.Join(s.dir, "log"), "-w", "-t", "30", "-o", opts, "start"); err != nil {
		return err
	}
	s.running = true
	return nil
}

func (s *Server) pgctl(args ...string) error {
	args = append([]string{"-D", filepath.Join(s.dir, "data")}, args...)
	name := filepath.Join(s.pgbin, "pg_ctl")
	if os.Geteuid() == 0 {
		// The data directory belongs to the postgres user (initdb refuses root).
		args = append([]string{"-u", "postgres", "--", name}, args...)
		name = "runuser"
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testpg: pg_ctl %s: %w: %s", args[len(args)-1], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// findPGBin looks where hack/postgres.sh looks.
func findPGBin() (string, error) {
	candidates := []string{os.Getenv("PGBIN"), "/usr/lib/postgresql/15/bin"}
	more, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for _, d := range append(candidates, more...) {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL binaries (pg_ctl) under /usr/lib/postgresql/*/bin or $PGBIN")
}
