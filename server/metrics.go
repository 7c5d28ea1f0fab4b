package server

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/coreos/go-semver/semver"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// clusterMinor is a version's major.minor, as etcd labels
// etcd_cluster_version.
func clusterMinor(v string) string {
	if sv, err := semver.NewVersion(v); err == nil {
		return fmt.Sprintf("%d.%d", sv.Major, sv.Minor)
	}
	return v
}

// metrics are the server's Prometheus metrics, in a registry of its own
// (a process, or a test binary, may run several servers, and etcd's
// packages register etcd_* names in the default registry). The names are
// etcd's for the metrics people alert on.
type metrics struct {
	reg *prometheus.Registry

	grpc             *grpcprom.ServerMetrics
	clientTraffic    *clientTraffic
	proposalsPending prometheus.Gauge
	proposalsFailed  prometheus.Counter
	healthSuccess    prometheus.Counter
	healthFailed     prometheus.Counter
	disk             diskMetrics
	mvccOps          mvccOpMetrics
	peers            *peerMetrics
}

// mvccOpMetrics are etcd's etcd_mvcc_{range,put,delete,txn}_total,
// counted where the request is served: a txn counts its executed
// operations, and counts as a txn when it has more than one (as etcd's).
type mvccOpMetrics struct {
	ranges, puts, deletes, txns prometheus.Counter
}

func (m *mvccOpMetrics) countTxn(r *pb.TxnRequest, resp *pb.TxnResponse) {
	ops := r.Failure
	if resp.GetSucceeded() {
		ops = r.Success
	}
	n := 0
	for i, op := range ops {
		switch {
		case op.GetRequestRange() != nil:
			m.ranges.Inc()
			n++
		case op.GetRequestPut() != nil:
			m.puts.Inc()
			n++
		case op.GetRequestDeleteRange() != nil:
			m.deletes.Inc()
			n++
		case op.GetRequestTxn() != nil && i < len(resp.GetResponses()):
			m.countTxn(op.GetRequestTxn(), resp.Responses[i].GetResponseTxn())
			n += 2 // a nested txn makes this one a txn
		}
	}
	if n > 1 {
		m.txns.Inc()
	}
}

// clientTraffic counts the bytes of client gRPC messages, as etcd's
// etcd_network_client_grpc_{received,sent}_bytes_total: the server's codec
// adds every message's encoded length.
type clientTraffic struct {
	received, sent prometheus.Counter
}

func newClientTraffic() *clientTraffic {
	return &clientTraffic{
		received: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "network",
			Name: "client_grpc_received_bytes_total", Help: "The total number of bytes received from grpc clients."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "network",
			Name: "client_grpc_sent_bytes_total", Help: "The total number of bytes sent to grpc clients."}),
	}
}

// engineCollector exports the engine's own measurements
// (engine.MetricsReporter) as strata_engine_<name>{backend="..."}, read on
// each scrape. It is an unchecked collector: the names depend on the
// engine.
type engineCollector struct{ s *Server }

func (engineCollector) Describe(chan<- *prometheus.Desc) {}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	var ms []engine.Metric
	_ = c.s.node.WithBackend(func(be engine.Backend) error {
		r, ok := be.(engine.MetricsReporter)
		if !ok {
			return nil
		}
		var err error
		ms, err = r.Metrics()
		return err
	})
	labels := prometheus.Labels{"backend": c.s.cfg.Engine.Name}
	for _, m := range ms {
		t := prometheus.GaugeValue
		if m.Counter {
			t = prometheus.CounterValue
		}
		desc := prometheus.NewDesc("strata_engine_"+m.Name, m.Help, nil, labels)
		if cm, err := prometheus.NewConstMetric(desc, t, m.Value); err == nil {
			ch <- cm
		}
	}
}

// peerMetrics are etcd's etcd_network_peer_* metrics, fed by the node's
// peer connections (replication.PeerMetrics).
type peerMetrics struct {
	sent, received             *prometheus.CounterVec
	sentFailures, recvFailures *prometheus.CounterVec
	rtt                        *prometheus.HistogramVec
}

func newPeerMetrics() *peerMetrics {
	counter := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "network", Name: name, Help: help}, []string{label})
	}
	return &peerMetrics{
		sent:         counter("peer_sent_bytes_total", "The total number of bytes sent to peers.", "To"),
		received:     counter("peer_received_bytes_total", "The total number of bytes received from peers.", "From"),
		sentFailures: counter("peer_sent_failures_total", "The total number of send failures from peers.", "To"),
		recvFailures: counter("peer_received_failures_total", "The total number of receive failures from peers.", "From"),
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "etcd", Subsystem: "network", Name: "peer_round_trip_time_seconds",
			Help: "Round-Trip-Time histogram between peers",
			// etcd's: lowest bucket 0.1ms, highest 0.1ms * 2^15 = 3.2s.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"To"}),
	}
}

// ForPeer implements replication.PeerMetrics; it makes the peer's
// counters exist, at zero, from its first connection (its round-trip
// histogram from its first probe).
func (p *peerMetrics) ForPeer(peer string) replication.PeerCounters {
	sent, recv := p.sent.WithLabelValues(peer), p.received.WithLabelValues(peer)
	sf, rf := p.sentFailures.WithLabelValues(peer), p.recvFailures.WithLabelValues(peer)
	return replication.PeerCounters{
		Sent:          func(n int) { sent.Add(float64(n)) },
		Received:      func(n int) { recv.Add(float64(n)) },
		SendFailed:    sf.Inc,
		ReceiveFailed: rf.Inc,
		RoundTrip:     func(d time.Duration) { p.rtt.WithLabelValues(peer).Observe(d.Seconds()) },
	}
}

func (p *peerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.sent, p.received, p.sentFailures, p.recvFailures, p.rtt}
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

func newMetrics(s *Server, disk diskMetrics, peers *peerMetrics) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), disk: disk, peers: peers}
	var opts []grpcprom.ServerMetricsOption
	if s.cfg.Metrics == MetricsExtensive {
		// etcd's --metrics=extensive: grpc_prometheus's handling-time
		// histogram, with its default buckets.
		opts = append(opts, grpcprom.WithServerHandlingTimeHistogram())
	}
	m.grpc = grpcprom.NewServerMetrics(opts...)
	mvccCounter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "etcd", Subsystem: "mvcc", Name: name, Help: help})
	}
	m.mvccOps = mvccOpMetrics{
		ranges:  mvccCounter("range_total", "Total number of ranges seen by this member."),
		puts:    mvccCounter("put_total", "Total number of puts seen by this member."),
		deletes: mvccCounter("delete_total", "Total number of deletes seen by this member."),
		txns:    mvccCounter("txn_total", "Total number of txns seen by this member."),
	}
	m.reg.MustRegister(m.mvccOps.ranges, m.mvccOps.puts, m.mvccOps.deletes, m.mvccOps.txns)
	m.reg.MustRegister(peers.collectors()...)
	m.reg.MustRegister(engineCollector{s})
	m.clientTraffic = newClientTraffic()
	m.reg.MustRegister(m.clientTraffic.received, m.clientTraffic.sent)
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "heartbeat_send_failures_total",
			Help: "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
		}, func() float64 { return float64(n.HeartbeatSendFailures()) }),
		m.proposalsPending, m.proposalsFailed, m.healthSuccess, m.healthFailed,
		disk.walFsync, disk.backendCommit,
		gauge("server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
			func() float64 { id, _ := n.Leader(); return b2f(id != "") }),
		gauge("server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
			func() float64 { return b2f(n.IsLeader()) }),
		gauge("server", "is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
			func() float64 { return b2f(s.isLearner()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "slow_apply_total",
			Help: "The total number of slow apply requests (likely overloaded from slow disk).",
		}, func() float64 { return float64(n.SlowApplies() + s.slowReads.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "etcd", Subsystem: "server", Name: "slow_read_indexes_total",
			Help: "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
		}, func() float64 { return float64(n.SlowReadIndexes()) }),
		gauge("debugging_mvcc", "keys_total", "Total number of keys.",
			storeRev(func(st *mvcc.Store) int64 { return int64(st.KeyCount()) })),
		gauge("debugging_mvcc", "watcher_total", "Total number of watchers.",
			storeRev(func(st *mvcc.Store) int64 { w, _ := st.WatcherCounts(); return int64(w) })),
		gauge("debugging_mvcc", "slow_watcher_total", "Total number of unsynced slow watchers.",
			storeRev(func(st *mvcc.Store) int64 { _, w := st.WatcherCounts(); return int64(w) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: "cluster", Name: "version",
			Help:        "Which version is running. 1 for 'cluster_version' label with current cluster version",
			ConstLabels: prometheus.Labels{"cluster_version": clusterMinor(ClusterVersion)},
		}, func() float64 { return 1 }),
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
