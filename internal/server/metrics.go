package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/version"
)

var rangeOne = mvcc.RangeOptions{Limit: 1}

// metrics are the member's Prometheus metrics, with etcd's names so
// existing dashboards and alerts keep working.
type metrics struct {
	reg           *prometheus.Registry
	fsync         prometheus.Histogram
	leaderChanges prometheus.Counter
	proposalsFail prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{reg: reg}
	m.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
		Help:    "The latency distributions of fsync called by WAL.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	reg.MustRegister(m.fsync)
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "server", Name: "leader_changes_seen_total",
		Help: "The number of leader changes seen."})
	m.proposalsFail = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "server", Name: "proposals_failed_total",
		Help: "The total number of failed proposals seen."})
	reg.MustRegister(m.leaderChanges, m.proposalsFail)
	gauge := func(sub, name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: sub, Name: name, Help: help}, fn))
	}
	counter := func(sub, name, help string, fn func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "etcd", Subsystem: sub, Name: name, Help: help}, fn))
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
		func() float64 { return b2f(s.HasLeader()) })
	gauge("server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
		func() float64 { return b2f(s.node != nil && s.node.Lead() == s.id.MemberID) })
	gauge("server", "is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
		func() float64 { return b2f(healthSource{s}.IsLearner()) })
	counter("server", "proposals_committed_total", "The total number of consensus proposals committed.",
		func() float64 { return float64(s.node.CommitIndex()) })
	counter("server", "proposals_applied_total", "The total number of consensus proposals applied.",
		func() float64 { return float64(s.applier.Applied()) })
	gauge("server", "proposals_pending", "The current number of pending proposals to commit.",
		func() float64 { return float64(s.prop.Pending()) })
	gauge("server", "quota_backend_bytes", "Current backend storage quota size in bytes.",
		func() float64 { return float64(s.quota()) })
	gauge("mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
		func() float64 { return float64(s.eng.Size()) })
	gauge("mvcc", "db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.",
		func() float64 { return float64(s.sizeInUse()) })
	gauge("debugging", "mvcc_current_revision", "The current revision of store.",
		func() float64 { return float64(s.kv.Rev()) })
	gauge("debugging", "mvcc_compact_revision", "The revision of the last compaction in store.",
		func() float64 { return float64(s.kv.CompactRev()) })
	gauge("server", "lease_count", "The number of leases.",
		func() float64 { return float64(len(s.lessor.Leases())) })
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "version", Help: "Which version is running. 1 for 'server_version' label with current version."}, []string{"server_version"})
	info.WithLabelValues(version.EtcdVersion).Set(1)
	reg.MustRegister(info)
	return m
}

// observeSync records one Raft log fsync and warns when it is slow.
func (s *Server) observeSync(d time.Duration) {
	s.metrics.fsync.Observe(d.Seconds())
	if d > time.Second {
		s.lg.Warn("slow fdatasync", zap.Duration("took", d), zap.Duration("expected-duration", time.Second))
	}
}
