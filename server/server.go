package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/sockopt"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
	"github.com/strata-kv/strata/replication/wal"
)

// Versions reported to clients (Status, /version, etcd_server_version,
// etcd_cluster_version), as etcd v3.7.3 reports them: its server version,
// and the cluster and storage versions at major.minor.0. Strata serves
// every etcd 3.7 API addition (server/doc.go lists them), and
// kube-apiserver parses the version as semver to enable features (watch
// progress requests need >= 3.5.13).
const (
	ServerVersion  = "3.7.3"
	ClusterVersion = "3.7.0"
	StorageVersion = "3.7.0"
)

// warnSyncDuration is etcd's: a WAL fsync slower than it is logged as
// "slow fdatasync".
const warnSyncDuration = time.Second

// Server is one Strata member serving etcd's v3 API: a replication.Node
// behind etcd's gRPC services and HTTP endpoints.
type Server struct {
	cfg  *config
	id   *identity
	node *replication.Node

	grpc       *grpc.Server
	health     *health.Server
	httpServer *http.Server
	// metricsHTTP serves the http metrics URLs: the HTTP endpoints
	// without the gateway.
	metricsHTTP *http.Server
	gateway     *gateway // nil without EnableGRPCGateway
	// tlsHTTP serves the https client URLs: gRPC and the HTTP endpoints
	// over one TLS port, as etcd does.
	tlsHTTP *http.Server
	// tlsGRPC serves gRPC alone on https client URLs when
	// --listen-client-http-urls takes the HTTP endpoints elsewhere.
	tlsGRPC      *http.Server
	clientLs     []*splitListener
	clientHTTPLs []*splitListener // --listen-client-http-urls
	metricsLs    []net.Listener
	metricsTLS   []*splitListener // https metrics URLs
	clientURLs   []string
	// metricsURLs are the --listen-metrics-urls with the ports bound.
	metricsURLs []string

	metrics   *metrics
	quota     quota
	compactor *compactor
	self      selfClient // Lock and Election's client of this member

	// size caches the engine's size, refreshed by the monitor loop.
	size, sizeInUse atomic.Int64
	// slowReads counts the reads served locally that took longer than
	// WarningApplyDuration (in etcd_server_slow_apply_total, as etcd's).
	slowReads atomic.Uint64

	readyc    chan struct{}
	stopc     chan struct{}
	donec     chan struct{} // closed once Close has finished
	watchDone chan struct{} // closed when watchRemoval returns
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	// failc is closed, with failErr set, when the server stops itself on
	// an error (see Err).
	failc    chan struct{}
	failOnce sync.Once
	failErr  error
	// corruptOnce raises the CORRUPT alarm for this member once, on the
	// first read that finds its data damaged.
	corruptOnce sync.Once
	closeLog    func() error // flushes and closes a logger Start built
}

// Start opens the member's data, joins or bootstraps its cluster and
// starts serving clients once the member is ready (a leader is known):
// see ReadyNotify. Close stops it.
func Start(cfg Config) (_ *Server, err error) {
	c, err := newConfig(cfg)
	if err != nil {
		return nil, err
	}
	closeLog := func() error { return nil }
	if c.Logger == nil {
		newLog := NewLogger
		if c.EnableLogRotation {
			newLog = func(level string, outputs []string, format string) (*slog.Logger, func() error, error) {
				return NewRotatingLogger(level, outputs, format, c.LogRotationConfigJSON)
			}
		}
		if c.Logger, closeLog, err = newLog(c.LogLevel, c.LogOutputs, c.LogFormat); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			closeLog()
		}
	}()
	if c.EngineOptions.Logger == nil {
		c.EngineOptions.Logger = c.Logger.With("component", "engine")
	}
	c.EngineOptions.NoSync = c.EngineOptions.NoSync || c.UnsafeNoFsync
	id, err := loadIdentity(c)
	if err != nil {
		return nil, err
	}
	// Snapshots being sent when the process stopped leave temporary files.
	if stale, _ := filepath.Glob(filepath.Join(c.DataDir, snapshotTempPattern)); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	s := &Server{cfg: c, id: id, closeLog: closeLog, readyc: make(chan struct{}), stopc: make(chan struct{}), donec: make(chan struct{}),
		watchDone: make(chan struct{}), failc: make(chan struct{})}
	s.quota = quota{s: s, max: c.QuotaBackendBytes}
	defer func() {
		if err != nil {
			s.gateway.close()
			s.closeListeners()
			if s.node != nil {
				s.node.Close()
			}
		}
	}()

	clientTLS, peerTLS, err := c.tlsConfigs()
	if err != nil {
		return nil, err
	}

	// Client listeners first, so that a busy port fails the start before
	// anything else happens.
	for _, u := range c.listenClient {
		l, err := sockopt.Listen(u.Host, c.socketOptions())
		if err != nil {
			return nil, fmt.Errorf("server: listen on %s: %w", u, err)
		}
		var tc *tls.Config
		if u.Scheme == "https" {
			tc = clientTLS.server
		} else if !c.ClientTLSInfo.Empty() {
			c.Logger.Warn("scheme is http while key and cert files are present; ignoring key and cert files", "client_url", u.String())
		}
		var only byte
		if len(c.listenHTTP) > 0 {
			only = onlyGRPC
		}
		s.clientLs = append(s.clientLs, newSplitListener(l, tc, only))
		bound := *u
		bound.Host = l.Addr().String()
		s.clientURLs = append(s.clientURLs, bound.String())
	}
	for _, u := range c.listenHTTP {
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			return nil, fmt.Errorf("server: listen on %s: %w", u, err)
		}
		var tc *tls.Config
		if u.Scheme == "https" {
			tc = clientTLS.server
		}
		s.clientHTTPLs = append(s.clientHTTPLs, newSplitListener(l, tc, onlyHTTP))
	}
	for _, u := range c.listenMetrics {
		l, err := sockopt.Listen(u.Host, c.socketOptions())
		if err != nil {
			return nil, fmt.Errorf("server: listen on %s: %w", u, err)
		}
		bound := *u
		bound.Host = l.Addr().String()
		s.metricsURLs = append(s.metricsURLs, bound.String())
		if u.Scheme == "https" {
			s.metricsTLS = append(s.metricsTLS, newSplitListener(l, clientTLS.server, 0))
			continue
		}
		s.metricsLs = append(s.metricsLs, l)
	}

	disk := newDiskMetrics()
	peers := newPeerMetrics()
	rc := replication.Config{
		ID:            raftID(id.MemberID),
		Dir:           filepath.Join(c.DataDir, "member"),
		Engine:        c.Engine,
		EngineOptions: c.EngineOptions,
		OpenLog: func(dir string) (replication.LogStore, error) {
			if err := c.checkWALDir(dir); err != nil {
				return nil, err
			}
			return wal.Open(c.walDir(dir), &wal.Options{
				Logger:      c.Logger.With("component", "wal"),
				MaxSegments: c.MaxWALs,
				OnFail:      s.walFailed,
				SyncFault:   c.WALSyncFault,
				NoSync:      c.UnsafeNoFsync,
				OnSync: func(_ int, took time.Duration) {
					disk.walFsync.Observe(took.Seconds())
					if took > warnSyncDuration {
						c.Logger.Warn("slow fdatasync", "took", took, "expected-duration", warnSyncDuration)
					}
				},
			})
		},
		OnApplyCommit:  func(took time.Duration) { disk.backendCommit.Observe(took.Seconds()) },
		OnApplyFailure: s.applyFailed,
		Bind:           c.listenPeer.Host,
		// The configured address, not the stored one: a member moved by
		// MemberUpdate restarts announcing its new address.
		Advertise:              c.advertisePeer[0].Host,
		SnapshotCount:          c.SnapshotCount,
		SnapshotCatchUpEntries: c.SnapshotCatchUpEntries,
		MaxSnapshots:           c.MaxSnapshots,
		ForceNewCluster:        c.ForceNewCluster,
		// etcd's initial corruption check also has the engine check its
		// own files (checksums, page structure) before the store is read.
		VerifyEngine: c.InitialCorruptCheck,
		// hashicorp/raft's heartbeat timeout is how long a follower
		// waits for the leader (etcd's election timeout); the leader
		// heartbeats every tenth of it (etcd's heartbeat interval).
		HeartbeatTimeout:     min(c.ElectionTimeout, 10*c.HeartbeatInterval),
		ElectionTimeout:      c.ElectionTimeout,
		DisablePreVote:       c.DisablePreVote,
		SocketOptions:        c.socketOptions(),
		Logger:               c.Logger.With("component", "replication"),
		WarningApplyDuration: c.WarningApplyDuration,
		PeerMetrics:          peers,
		// etcd's compaction batches (mvcc's defaults are etcd's).
		CompactionBatchLimit:    c.CompactionBatchLimit,
		CompactionSleepInterval: c.CompactionSleepInterval,
		AuthToken:               c.AuthToken,
		AuthTokenTTL:            c.AuthTokenTTL,
	}
	if c.listenPeer.Scheme == "https" {
		rc.ServerTLS, rc.ClientTLS = peerTLS.server, peerTLS.client
		rc.CheckPeerSAN = !c.PeerTLSInfo.SkipClientSANVerify
	}
	if c.InitialClusterState == ClusterStateNew {
		for _, urls := range c.initialCluster {
			rc.Bootstrap = append(rc.Bootstrap, replication.Peer{
				ID:   raftID(memberID(urls, c.InitialClusterToken)),
				Addr: mustURL(urls[0]).Host,
			})
		}
	}
	if c.ForceNewCluster {
		c.Logger.Warn("forcing restart member", "cluster-id", raftID(id.ClusterID), "local-member-id", raftID(id.MemberID))
	}
	c.Logger.Info("starting member", "name", id.Name, "local-member-id", raftID(id.MemberID), "cluster-id", raftID(id.ClusterID),
		"data-dir", c.DataDir, "backend", c.Engine.Name, "listen-peer-urls", []string{c.listenPeer.String()}, "listen-client-urls", s.clientURLs,
		"initial-cluster", c.InitialCluster, "initial-cluster-state", c.InitialClusterState)
	if s.node, err = replication.Open(rc); err != nil {
		return nil, err
	}
	if err := s.maybeDefragAtStart(); err != nil {
		return nil, err
	}
	s.refreshSize()
	s.metrics = newMetrics(s, disk, peers)
	s.buildGRPC()
	if *c.EnableGRPCGateway {
		if s.gateway, err = s.newGateway(clientTLS); err != nil {
			s.grpc.Stop() // ends its stream workers
			return nil, err
		}
	}
	s.buildHTTP()
	// The metrics URLs answer from now on, as etcd's: before the member is
	// ready, /health and /readyz say why it is not (kubelet probes them).
	for _, l := range s.metricsLs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.metricsHTTP.Serve(l)
		}()
	}
	for _, l := range s.metricsTLS {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.metricsHTTP.Serve(l.http)
		}()
	}

	s.wg.Add(3)
	go s.serveWhenReady()
	go s.monitor()
	go s.corruptionLoop()
	go s.watchRemoval()
	s.startCompactor()
	return s, nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err) // validated before
	}
	return u
}

// streamWorkers is the number of goroutines that serve gRPC streams;
// Stop ends them.
const streamWorkers = 64

func (s *Server) buildGRPC() {
	m := s.metrics.grpc
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newCodec(s.metrics.clientTraffic)),
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor(), s.unaryInterceptor),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor(), s.streamInterceptor),
		grpc.MaxRecvMsgSize(int(s.cfg.MaxRequestBytes) + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(s.cfg.MaxConcurrentStreams),
		// Streams run on long-lived workers (a new goroutine only when
		// all are busy): a fresh goroutine per request grows and copies
		// its stack on every request (runtime.newstack was 10-19% of a
		// member's CPU under etcd's benchmark tool, etcd's alike).
		grpc.NumStreamWorkers(streamWorkers),
	}
	// etcd's keepalive (embed.serveClients): clients (kube-apiserver
	// pings every 30s) may ping every --grpc-keepalive-min-time; the
	// server pings idle connections every --grpc-keepalive-interval.
	if s.cfg.GRPCKeepAliveMinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.GRPCKeepAliveMinTime}))
	}
	if s.cfg.GRPCKeepAliveInterval > 0 && s.cfg.GRPCKeepAliveTimeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: s.cfg.GRPCKeepAliveInterval, Timeout: s.cfg.GRPCKeepAliveTimeout}))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterKVServer(s.grpc, &kvServer{s: s})
	pb.RegisterWatchServer(s.grpc, &watchServer{s: s})
	pb.RegisterLeaseServer(s.grpc, &leaseServer{s: s})
	pb.RegisterClusterServer(s.grpc, &clusterServer{s: s})
	pb.RegisterMaintenanceServer(s.grpc, &maintenanceServer{s: s})
	pb.RegisterAuthServer(s.grpc, &authServer{s: s})
	s.self.s = s
	v3lockpb.RegisterLockServer(s.grpc, &lockServer{c: &s.self})
	v3electionpb.RegisterElectionServer(s.grpc, &electionServer{c: &s.self})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	m.InitializeMetrics(s.grpc)
}

// serveWhenReady starts serving clients once the node is ready, as etcd
// serves only after its member is ready.
func (s *Server) serveWhenReady() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.stopc:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer cancel()
	if err := s.node.WaitReady(ctx); err != nil {
		return
	}
	if s.cfg.InitialCorruptCheck {
		if err := s.initialCorruptCheck(ctx); err != nil {
			if ctx.Err() == nil {
				s.fail(err)
			}
			return
		}
	}
	// As etcd: the member publishes its name and client URLs, and says
	// ready only once that is done (member list then shows it started)
	// and it has caught up with the leader.
	if !s.publish(ctx) {
		return
	}
	if err := s.catchUp(ctx); err != nil {
		return
	}
	for _, l := range s.clientLs {
		if l.tls != nil {
			hs := s.tlsHTTP
			if l.only == onlyGRPC {
				hs = s.tlsGRPC
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				hs.Serve(l.http)
			}()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.grpc.Serve(l.grpc)
		}()
		if l.only != onlyGRPC {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.httpServer.Serve(l.http)
			}()
		}
	}
	for _, l := range s.clientHTTPLs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.httpServer.Serve(l.http)
		}()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.cfg.Logger.Info("ready to serve client requests", "local-member-id", raftID(s.id.MemberID), "client-urls", s.clientURLs)
	close(s.readyc)
}

// catchUp returns once a member that does not lead has applied everything
// the leader had committed when it asked (a read barrier), retrying until
// ctx ends. etcd's members say ready once they have applied their own
// publish entry; so a learner just added says ready only in sync with the
// leader, and `member promote` right after succeeds.
func (s *Server) catchUp(ctx context.Context) error {
	for {
		if s.node.IsLeader() {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
		err := s.node.ReadBarrier(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.cfg.Logger.Warn("waiting to catch up with the leader before serving", "local-member-id", raftID(s.id.MemberID), "error", err)
		t := time.NewTimer(s.cfg.HeartbeatInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// monitor refreshes the engine size for Status, the metrics and the
// quota. (Leader changes are counted and logged by the node, from raft's
// observations.)
func (s *Server) monitor() {
	defer s.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		s.refreshSize()
	}
}

// walFailed ends the process when the raft log cannot be saved (a failed
// fsync or file operation: see wal.Options.OnFail), as etcd's raft loop
// does with lg.Fatal("failed to save Raft hard state and entries"): raft
// cannot go on without its log, and nothing written since the failure may
// be acknowledged. A graceful stop would leave raft running meanwhile, and
// raft panics when it cannot save a new term. The process exits with
// status 1, as zap's Fatal.
func (s *Server) walFailed(err error) {
	s.cfg.Logger.Error("failed to save Raft hard state and entries", "error", err)
	os.Exit(1)
}

// applyFailed ends the process when the engine cannot commit applied
// entries (a full disk: see replication.Config.OnApplyFailure), as etcd's
// backend does with lg.Fatal("failed to commit tx"): a clean log line and
// status 1, not a panic's stack.
func (s *Server) applyFailed(err error) {
	s.cfg.Logger.Error("failed to commit tx", "error", err)
	os.Exit(1)
}

// fail stops the server on its own because of err, which Err then
// returns (etcd exits on such errors).
func (s *Server) fail(err error) {
	s.failOnce.Do(func() {
		s.cfg.Logger.Error("stopping the member", "error", err)
		s.failErr = err
		close(s.failc)
	})
}

// Err returns the error on which the server stopped on its own (its data
// differs from its peers', see InitialCorruptCheck), nil if none. It is
// meaningful once StopNotify is closed.
func (s *Server) Err() error {
	select {
	case <-s.failc:
		return s.failErr
	default:
		return nil
	}
}

// ReadyNotify returns a channel closed once the server serves clients.
func (s *Server) ReadyNotify() <-chan struct{} { return s.readyc }

// ClientURLs returns the URLs the server listens on for clients, with
// the ports bound (a configured port 0 shows the port picked).
func (s *Server) ClientURLs() []string { return append([]string(nil), s.clientURLs...) }

// MetricsURLs returns the URLs the server serves its HTTP endpoints on
// besides the client URLs (ListenMetricsURLs), with the ports bound.
func (s *Server) MetricsURLs() []string { return append([]string(nil), s.metricsURLs...) }

// MemberID returns the member's ID.
func (s *Server) MemberID() uint64 { return s.id.MemberID }

// ClusterID returns the cluster's ID.
func (s *Server) ClusterID() uint64 { return s.id.ClusterID }

// Logger returns the server's logger: Config.Logger, or the one built from
// LogLevel, LogOutputs and LogFormat.
func (s *Server) Logger() *slog.Logger { return s.cfg.Logger }

// Node returns the member's replication node.
func (s *Server) Node() *replication.Node { return s.node }

// StopNotify returns a channel closed once the server has stopped: after
// Close, or on its own when the member was removed from the cluster.
func (s *Server) StopNotify() <-chan struct{} { return s.donec }

// watchRemoval stops the server once its member learns that it was removed
// from the cluster. It is not in s.wg, which the stop waits for: Close waits
// for it after the stop.
func (s *Server) watchRemoval() {
	defer close(s.watchDone)
	select {
	case <-s.stopc:
	case <-s.failc:
		s.closeOnce.Do(s.stop)
	case <-s.node.Removed():
		// As etcd: the member stops, and its data directory is of no more
		// use.
		s.cfg.Logger.Warn("server error", "error", replication.ErrRemoved)
		s.cfg.Logger.Warn("data-dir used by this member must be removed", "data-dir", s.cfg.DataDir)
		s.closeOnce.Do(s.stop)
	}
}

// Close stops serving (letting requests in flight finish for up to a few
// seconds), hands leadership to a caught-up voter if the member leads (as
// etcd's Stop), then stops the node. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(s.stop)
	<-s.watchDone
	return s.closeErr
}

// stop does Close's work, once.
func (s *Server) stop() {
	close(s.stopc)
	s.health.Shutdown()
	s.self.close()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		s.grpc.Stop()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	s.httpServer.Shutdown(ctx)
	s.metricsHTTP.Shutdown(ctx)
	s.tlsHTTP.Shutdown(ctx)
	s.tlsGRPC.Shutdown(ctx)
	cancel()
	s.gateway.close()
	s.closeListeners()
	s.stopCompactor()
	s.wg.Wait()
	s.transferLeadershipOnShutdown()
	s.closeErr = s.node.Close()
	s.cfg.Logger.Info("stopped member", "name", s.id.Name, "local-member-id", raftID(s.id.MemberID))
	s.closeLog()
	close(s.donec)
}

// transferLeadershipOnShutdown hands leadership to the most caught-up
// other voter before the member stops, as etcd's Stop does: the others
// then need no election timeout, and the term rises by one. It is bounded
// by the request timeout and skipped by a follower or a lone voter; a
// failure is logged, and the stop goes on.
func (s *Server) transferLeadershipOnShutdown() {
	lg := s.cfg.Logger
	local := raftID(s.id.MemberID)
	lead, _ := s.node.Leader()
	if !s.node.IsLeader() {
		lg.Info("skipped leadership transfer; local server is not leader",
			"local-member-id", local, "current-leader-member-id", lead)
		return
	}
	members, err := s.node.Members()
	if err != nil {
		lg.Warn("leadership transfer failed", "local-member-id", local, "error", err)
		return
	}
	voters := 0
	for _, m := range members {
		if !m.Learner {
			voters++
		}
	}
	if voters < 2 {
		lg.Info("skipped leadership transfer for single voting member cluster",
			"local-member-id", local, "current-leader-member-id", lead)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.reqTimeout())
	defer cancel()
	if err := s.moveLeaderOnShutdown(ctx, local); err != nil {
		lg.Warn("leadership transfer failed", "local-member-id", local, "error", err)
	}
}

// moveLeaderOnShutdown picks the transferee and waits until it leads
// (etcd's MoveLeader, with its log lines).
func (s *Server) moveLeaderOnShutdown(ctx context.Context, local string) error {
	transferee, err := s.node.CaughtUpVoter(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	s.cfg.Logger.Info("leadership transfer starting", "local-member-id", local,
		"current-leader-member-id", local, "transferee-member-id", transferee)
	if err := s.node.TransferLeadership(ctx, transferee); err != nil {
		return err
	}
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		if id, _ := s.node.Leader(); id == transferee {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: leadership transfer timed out waiting for %s to lead: %w", transferee, ctx.Err())
		case <-tick.C:
		}
	}
	s.cfg.Logger.Info("leadership transfer finished", "local-member-id", local,
		"old-leader-member-id", local, "new-leader-member-id", transferee, "took", time.Since(start))
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.clientLs {
		l.Close()
	}
	for _, l := range s.clientHTTPLs {
		l.Close()
	}
	for _, l := range s.metricsLs {
		l.Close()
	}
	for _, l := range s.metricsTLS {
		l.Close()
	}
}

// view runs fn with the store: after a linearizable read barrier bounded
// by the request timeout when linearizable is set.
func (s *Server) view(ctx context.Context, linearizable bool, fn func(*mvcc.Store) error) error {
	if linearizable {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.reqTimeout())
		defer cancel()
	}
	err := s.node.View(ctx, linearizable, fn)
	if errors.Is(err, engine.ErrCorrupt) || errors.Is(err, mvcc.ErrCorrupt) {
		s.reportCorruption(err)
	}
	return err
}

// fillHeader completes a response header as etcd does: cluster and member
// IDs, raft term, and the store's current revision if the response did
// not set one.
func (s *Server) fillHeader(h *pb.ResponseHeader) {
	if h == nil {
		return
	}
	h.ClusterId = s.id.ClusterID
	h.MemberId = s.id.MemberID
	h.RaftTerm = s.node.Term()
	if h.Revision == 0 {
		_ = s.node.View(context.Background(), false, func(st *mvcc.Store) error {
			h.Revision = st.Rev()
			return nil
		})
	}
}

func (s *Server) header() *pb.ResponseHeader {
	h := &pb.ResponseHeader{}
	s.fillHeader(h)
	return h
}

// leaderID returns the leader's member ID, 0 if none is known.
func (s *Server) leaderID() uint64 {
	id, _ := s.node.Leader()
	return parseRaftID(id)
}

// dbSize returns the cached size of the engine on disk and the part in
// use.
func (s *Server) dbSize() (size, inUse int64) { return s.size.Load(), s.sizeInUse.Load() }

// refreshSize reads the store's Stats (the engine's size, and the part in
// use: bbolt's pages in use, the live bytes of the store on pebble and
// badger), or, if that fails, the size of the engine's directory (then in
// use = size).
func (s *Server) refreshSize() {
	if st, err := s.storeStats(); err == nil {
		s.size.Store(st.Size)
		s.sizeInUse.Store(st.InUse)
		return
	}
	size := dirSize(filepath.Join(s.cfg.DataDir, "member", "data"))
	s.size.Store(size)
	s.sizeInUse.Store(size)
}

// storeStats returns the store's Stats, as of now (mvcc.Store.Stats).
func (s *Server) storeStats() (engine.Stats, error) {
	var st engine.Stats
	err := s.node.View(context.Background(), false, func(store *mvcc.Store) error {
		var err error
		st, err = store.Stats()
		return err
	})
	return st, err
}

// dirSize is the space the files under dir take on disk.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
