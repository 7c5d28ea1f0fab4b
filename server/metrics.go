package server

import (
	"context"
	"runtime"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strata-kv/strata/mvcc"
)

// metrics are the server's Prometheus metrics, in a registry of its own
// (a process, or a test binary, may run several servers, and etcd's
// packages register etcd_* names in the default registry). The names are
// etcd's for the metrics people alert on.
type metrics struct {
	reg *prometheus.Registry

	grpc             *grpcprom.ServerMetrics
	proposalsPending prometheus.Gauge
	proposalsFailed  prometheus.Counter
	healthSuccess    prometheus.Counter
	healthFailed     prometheus.Counter
	disk             diskMetrics
}

// diskMetrics are etcd's disk latency histograms, made before the node
// opens since its log and FSM report to them.
type diskMetrics struct {
	walFsync      prometheus.Histogram
	backendCommit prometheus.Histogram
}

func newDiskMetrics() diskMetrics {
	return diskMetrics{
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "etcd", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
			Help:    "The latency distributions of fsync called by WAL.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		backendCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "etcd", Subsystem: "disk", Name: "backend_commit_duration_seconds",
			Help:    "The latency distributions of commit called by backend.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
}

func newMetrics(s *Server, disk diskMetrics) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), disk: disk}
	m.grpc = grpcprom.NewServerMetrics()
	m.proposalsPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "etcd", Subsystem: "server", Name: "proposals_pending",
		Help: "The current number of pending proposals to commit.",
	})
	m.proposalsFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "server", Name: "proposals_failed_total",
		Help: "The total number of failed proposals seen.",
	})
	m.healthSuccess = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "server", Name: "health_success",
		Help: "The total number of successful health checks",
	})
	m.healthFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "server", Name: "health_failures",
		Help: "The total number of failed health checks",
	})
	gauge := func(subsystem, name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: subsystem, Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	n := s.node
	storeRev := func(get func(*mvcc.Store) int64) func() float64 {
		return func() float64 {
			var v int64
			_ = n.View(context.Background(), false, func(st *mvcc.Store) error { v = get(st); return nil })
			return float64(v)
		}
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "leader_changes_seen_total",
			Help: "The number of leader changes seen.",
		}, func() float64 { return float64(n.LeaderChanges()) }),
		m.proposalsPending, m.proposalsFailed, m.healthSuccess, m.healthFailed,
		disk.walFsync, disk.backendCommit,
		gauge("server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
			func() float64 { id, _ := n.Leader(); return b2f(id != "") }),
		gauge("server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
			func() float64 { return b2f(n.IsLeader()) }),
		gauge("server", "proposals_committed_total", "The total number of consensus proposals committed.",
			func() float64 { return float64(n.CommitIndex()) }),
		gauge("server", "proposals_applied_total", "The total number of consensus proposals applied.",
			func() float64 { return float64(n.AppliedIndex()) }),
		gauge("server", "quota_backend_bytes", "Current backend storage quota size in bytes.",
			func() float64 { return float64(max(s.cfg.QuotaBackendBytes, 0)) }),
		gauge("mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
			func() float64 { size, _ := s.dbSize(); return float64(size) }),
		gauge("mvcc", "db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.",
			func() float64 { _, inUse := s.dbSize(); return float64(inUse) }),
		gauge("debugging_mvcc", "current_revision", "The current revision of store.",
			storeRev(func(st *mvcc.Store) int64 { return st.Rev() })),
		gauge("debugging_mvcc", "compact_revision", "The revision of the last compaction in store.",
			storeRev(func(st *mvcc.Store) int64 { return max(st.CompactRev(), 0) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "version",
			Help:        "Which version is running. 1 for 'server_version' label with current version.",
			ConstLabels: prometheus.Labels{"server_version": ServerVersion},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "go_version",
			Help:        "Which Go version server is running with. 1 for 'server_go_version' label with current version.",
			ConstLabels: prometheus.Labels{"server_go_version": runtime.Version()},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "server", Name: "id",
			Help:        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
			ConstLabels: prometheus.Labels{"server_id": raftID(s.id.MemberID)},
		}, func() float64 { return 1 }),
	)
	return m
}
