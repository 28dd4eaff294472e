// Package syncserver is the sync server's HTTP layer: the /v1 protocol, the original
// system's API, authentication, metrics, request logging and background maintenance, on
// top of a metadata store (syncserver/store) and a block store (syncserver/blobs).
package syncserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncedfolder/synced-folder/syncserver/blobs"
	"github.com/syncedfolder/synced-folder/syncserver/store"
)

// BlockStore is what the server needs of the content-addressed block store; *blobs.Store
// implements it.
type BlockStore interface {
	Has(hash string) (bool, error)
	Missing(hashes []string) ([]string, error)
	Put(hash string, r io.Reader, maxSize int64) (n int64, created bool, err error)
	PutMany(blocks []blobs.BlockData) (created int, createdBytes int64, err error)
	Open(hash string) (io.ReadSeekCloser, int64, error)
	// Sync makes the named blocks durable; Put may answer before they are.
	Sync(hashes []string) error
	GC(ctx context.Context, referenced func(hash string) bool, olderThan time.Time) (removed int, freed int64, err error)
	Stats() (blocks, bytes int64, err error)
}

// Config holds the server's limits and policies. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// MaxFileSize is the largest file a commit or an upload may create.
	MaxFileSize int64
	// MaxBlockSize is the largest block PUT accepts (after decompression).
	MaxBlockSize int64
	// MaxInlineSize is the largest file content a commit item may inline.
	MaxInlineSize int64
	// MaxCommitBody caps the body of a commit request (inlined data included).
	MaxCommitBody int64
	// MaxJSONBody caps the body of every other JSON request.
	MaxJSONBody int64
	// MaxBatchItems caps the items of one commit or delete batch and the hashes of one
	// missing-blocks query.
	MaxBatchItems int
	// MaxWait caps the long-poll wait of the changes feed.
	MaxWait time.Duration
	// Retention says which superseded versions maintenance keeps; nil takes the default
	// (a pointer, because keeping no superseded version at all is a valid choice).
	Retention *store.Retention
	// GCInterval is the period of the prune + block GC maintenance; negative disables it.
	GCInterval time.Duration
	// GCGrace keeps unreferenced blocks younger than this, so that blocks uploaded for a
	// commit still to come survive.
	GCGrace time.Duration
	// AnonymousAgent names the agent in the audit log when no authenticator is set.
	AnonymousAgent string
}

// DefaultConfig returns the defaults every zero field of a Config takes.
func DefaultConfig() Config {
	return Config{
		MaxFileSize:    64 << 30,
		MaxBlockSize:   16 << 20,
		MaxInlineSize:  1 << 20,
		MaxCommitBody:  64 << 20,
		MaxJSONBody:    4 << 20,
		MaxBatchItems:  10000,
		MaxWait:        5 * time.Minute,
		Retention:      &store.Retention{Keep: 10, MaxAge: 30 * 24 * time.Hour},
		GCInterval:     time.Hour,
		GCGrace:        time.Hour,
		AnonymousAgent: "anonymous",
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = d.MaxFileSize
	}
	if c.MaxBlockSize <= 0 {
		c.MaxBlockSize = d.MaxBlockSize
	}
	if c.MaxInlineSize <= 0 {
		c.MaxInlineSize = d.MaxInlineSize
	}
	if c.MaxCommitBody <= 0 {
		c.MaxCommitBody = d.MaxCommitBody
	}
	if c.MaxJSONBody <= 0 {
		c.MaxJSONBody = d.MaxJSONBody
	}
	if c.MaxBatchItems <= 0 {
		c.MaxBatchItems = d.MaxBatchItems
	}
	if c.MaxWait <= 0 {
		c.MaxWait = d.MaxWait
	}
	if c.Retention == nil {
		c.Retention = d.Retention
	}
	if c.GCInterval == 0 {
		c.GCInterval = d.GCInterval
	}
	if c.GCGrace <= 0 {
		c.GCGrace = d.GCGrace
	}
	if c.AnonymousAgent == "" {
		c.AnonymousAgent = d.AnonymousAgent
	}
	return c
}

// Server serves the sync protocol for one folder. It is an http.Handler.
type Server struct {
	cfg     Config
	store   store.Store
	blocks  BlockStore
	auth    Authenticator
	log     *slog.Logger
	metrics *metrics
	notify  *notifier
	streams *hashStreams
	// checkpoints holds SHA-256 states of block-list prefixes (checkpoint.go).
	checkpoints *checkpoints
	mux         *http.ServeMux
	handler     http.Handler

	// gcMu keeps block GC from running between a commit's check that its blocks exist
	// and the store recording the version that refers to them: commits hold it shared,
	// GC exclusively.
	gcMu sync.RWMutex

	waits atomic.Int64 // open long polls, for Stats

	stopOnce sync.Once
	stop     chan struct{} // closed by Shutdown: long polls return, maintenance ends
	wg       sync.WaitGroup
}

// New returns a server over st and blocks. auth may be nil: every request is then made by
// cfg.AnonymousAgent (callers must make sure such a server listens on loopback only).
func New(cfg Config, st store.Store, blocks BlockStore, auth Authenticator, logger *slog.Logger) (*Server, error) {
	if st == nil || blocks == nil {
		return nil, errors.New("syncserver: a store and a block store are required")
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		store:   st,
		blocks:  blocks,
		auth:    auth,
		log:     logger,
		metrics: newMetrics(),
		stop:    make(chan struct{}),
		mux:     http.NewServeMux(),
	}
	seq, err := s.currentSeq(context.Background())
	if err != nil {
		return nil, fmt.Errorf("read the store's current seq: %w", err)
	}
	s.notify = newNotifier(seq)
	s.checkpoints = newCheckpoints()
	s.streams = newHashStreams(blocks, s.checkpoints)
	s.routes()
	s.handler = s.observe(s.mux)
	s.metrics.registerStoreGauges(s)
	return s, nil
}

// waiting returns how many changes requests are long-polling now.
func (s *Server) waiting() int64 { return s.waits.Load() }

func (s *Server) currentSeq(ctx context.Context) (int64, error) {
	st, err := s.store.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.Seq, nil
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Registry returns the Prometheus registry holding the server's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// Start launches background maintenance (prune and block GC) until Shutdown.
func (s *Server) Start() {
	if s.cfg.GCInterval < 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.GCInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				// Shutdown cancels a pass in progress rather than wait for it.
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.GCInterval)
				go func() {
					select {
					case <-s.stop:
						cancel()
					case <-ctx.Done():
					}
				}()
				if _, err := s.Maintain(ctx); err != nil && ctx.Err() == nil {
					s.log.Error("maintenance", "err", err)
				}
				cancel()
			}
		}
	}()
}

// Shutdown wakes every long-polling changes request (they answer at once) and stops
// maintenance. Register it with http.Server.RegisterOnShutdown. It does not close the
// stores: the caller owns them.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// MaintenanceResult tells what one maintenance pass did.
type MaintenanceResult struct {
	PrunedVersions int
	RemovedBlocks  int
	FreedBytes     int64
}

// Maintain prunes superseded versions by the retention policy, then removes the blocks
// that no retained version refers to and that are older than the GC grace period.
func (s *Server) Maintain(ctx context.Context) (MaintenanceResult, error) {
	var res MaintenanceResult
	start := time.Now()
	pruned, err := s.store.Prune(ctx, *s.cfg.Retention, start)
	if err != nil {
		return res, fmt.Errorf("prune versions: %w", err)
	}
	res.PrunedVersions = pruned

	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	refs := make(map[string]struct{})
	if err := s.store.BlockRefs(ctx, func(h string) error {
		refs[h] = struct{}{}
		return nil
	}); err != nil {
		return res, fmt.Errorf("list referenced blocks: %w", err)
	}
	removed, freed, err := s.blocks.GC(ctx, func(h string) bool {
		_, ok := refs[h]
		return ok
	}, time.Now().Add(-s.cfg.GCGrace))
	res.RemovedBlocks, res.FreedBytes = removed, freed
	if err != nil {
		return res, fmt.Errorf("collect blocks: %w", err)
	}
	s.log.Info("maintenance", "prunedVersions", pruned, "removedBlocks", removed, "freedBytes", freed,
		"referencedBlocks", len(refs), "duration", time.Since(start))
	return res, nil
}

// routeMethods are the methods handleNoRoute tries when it looks for the methods a path
// allows. HEAD is allowed wherever GET is, as the mux serves it.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// handleNoRoute answers a request that no route took: 405 with an Allow header when the
// path is a known route for other methods, 404 otherwise; JSON either way. The mux's
// own 405 never happens because the catch-all route matches every method.
func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range routeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	path := truncateForError(r.URL.Path)
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s %s", r.Method, path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; allowed: %s",
		r.Method, path, strings.Join(allow, ", ")))
}
