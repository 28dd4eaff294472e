package syncserver

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus series, on a registry of its own so that two
// servers in one process (tests) do not collide.
type metrics struct {
	reg           *prometheus.Registry
	uploads       prometheus.Counter
	deletes       prometheus.Counter
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	bytesReceived prometheus.Counter
	bytesSent     prometheus.Counter
	blocksStored  prometheus.Counter
	dedupHits     prometheus.Counter
	conflicts     prometheus.Counter
	waits         prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		uploads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_uploads_total", Help: "File versions committed (uploads, mkdirs, symlinks, restores).",
		}),
		deletes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_deletes_total", Help: "Entries deleted.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_requests_total", Help: "HTTP requests by method and route template.",
		}, []string{"method", "endpoint"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sync_request_duration_seconds", Help: "HTTP request duration by method and route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method", "endpoint"}),
		bytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_received_bytes_total", Help: "Request body bytes read.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_sent_bytes_total", Help: "Response body bytes written.",
		}),
		blocksStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_blocks_stored_total", Help: "New blocks written to the block store.",
		}),
		dedupHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_dedup_hits_total", Help: "Blocks a client did not have to send because the server already had them.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sync_conflicts_total", Help: "Changes refused because their base was stale, and conflict copies made by /upload.",
		}),
		waits: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sync_changes_waiting", Help: "Open long-poll requests on the changes feed (connected agents).",
		}),
	}
	m.reg.MustRegister(m.uploads, m.deletes, m.requests, m.duration, m.bytesReceived, m.bytesSent,
		m.blocksStored, m.dedupHits, m.conflicts, m.waits,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// storeCollector reads the live figures of the stores at scrape time.
type storeCollector struct {
	s          *Server
	entries    *prometheus.Desc
	liveBytes  *prometheus.Desc
	blocks     *prometheus.Desc
	blockBytes *prometheus.Desc
	seq        *prometheus.Desc
	live       *prometheus.Desc
}

func (m *metrics) registerStoreGauges(s *Server) {
	m.reg.MustRegister(&storeCollector{
		s:          s,
		entries:    prometheus.NewDesc("sync_live_entries", "Live entries by type.", []string{"type"}, nil),
		liveBytes:  prometheus.NewDesc("sync_live_bytes", "Sum of the sizes of live files.", nil, nil),
		blocks:     prometheus.NewDesc("sync_blocks", "Blocks in the block store.", nil, nil),
		blockBytes: prometheus.NewDesc("sync_block_bytes", "Bytes in the block store.", nil, nil),
		seq:        prometheus.NewDesc("sync_seq", "The folder's highest committed seq.", nil, nil),
		live:       prometheus.NewDesc("sync_live_conflicts", "Live conflict copies.", nil, nil),
	})
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.liveBytes
	ch <- c.blocks
	ch <- c.blockBytes
	ch <- c.seq
	ch <- c.live
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := c.s.store.Stats(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Files), "file")
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Dirs), "dir")
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Symlinks), "symlink")
		ch <- prometheus.MustNewConstMetric(c.liveBytes, prometheus.GaugeValue, float64(st.Bytes))
		ch <- prometheus.MustNewConstMetric(c.seq, prometheus.GaugeValue, float64(st.Seq))
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(st.Conflicts))
	} else {
		c.s.log.Warn("metrics: store stats", "err", err)
	}
	if blocks, bytes, err := c.s.blocks.Stats(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.blocks, prometheus.GaugeValue, float64(blocks))
		ch <- prometheus.MustNewConstMetric(c.blockBytes, prometheus.GaugeValue, float64(bytes))
	} else {
		c.s.log.Warn("metrics: block stats", "err", err)
	}
}
