package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/sockopt"
	"github.com/strata-kv/strata/mvcc"
)

// Errors returned by a Node. They map onto etcd's Unavailable errors at the
// gRPC boundary.
var (
	// ErrNotLeader is returned for work only the leader does when this
	// node is not the leader.
	ErrNotLeader = errors.New("replication: not the leader")
	// ErrNoLeader is returned when the cluster has no leader.
	ErrNoLeader = errors.New("replication: no leader")
	// ErrLeaderChanged is returned when leadership moved while a request
	// was in flight. For a write the outcome is unknown.
	ErrLeaderChanged = errors.New("replication: leader changed")
	// ErrNotReady is returned by linearizable reads on a leader that has
	// not yet committed an entry of its own term.
	ErrNotReady = errors.New("replication: leader not ready")
	// ErrStopped is returned once the node is closing.
	ErrStopped = errors.New("replication: node stopped")
)

// Peer is one member of the initial cluster.
type Peer struct {
	// ID is the raft server ID: stable and unique in the cluster.
	ID string
	// Addr is the raft (peer) address, host:port.
	Addr string
}

// LogStore is what raft needs to keep its log and its term and vote.
type LogStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// Config configures a Node. Fields without a stated default are required.
type Config struct {
	// ID is this node's raft server ID.
	ID string
	// Dir holds the node's data: data/ (the engine), raft/ (log and
	// snapshots).
	Dir string
	// Engine opens and restores the storage engine.
	Engine engine.Engine
	// EngineOptions are passed to Engine.Open.
	EngineOptions engine.Options
	// VerifyEngine makes Open check the engine's files whole before it
	// reads the store, on engines that can (see Verifier): damage fails
	// Open with an error wrapping engine.ErrCorrupt. etcd's
	// InitialCorruptCheck feature gate sets it.
	VerifyEngine bool
	// OpenLog opens raft's log and stable store in a directory.
	OpenLog func(dir string) (LogStore, error)
	// Bind is the raft listen address, host:port.
	Bind string
	// Advertise is the raft address peers use; the default is Bind.
	Advertise string
	// Bootstrap is the initial cluster, used only when the node has no
	// raft state yet. Nil joins an existing cluster instead.
	Bootstrap []Peer
	// ForceNewCluster makes a node with raft state the only member of its
	// cluster, keeping its data, as etcd's --force-new-cluster: for a
	// cluster that lost its quorum for good. Its other members must not
	// start again on their data. A node without raft state ignores it.
	ForceNewCluster bool
	// SnapshotCount is how many applied entries trigger a snapshot (etcd's
	// --snapshot-count). The default value is 10000.
	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many entries the raft log keeps behind
	// a snapshot, for a slow follower to catch up from without a snapshot
	// (etcd's --snapshot-catchup-entries; raft's TrailingLogs). The default
	// value is SnapshotCount.
	SnapshotCatchUpEntries uint64
	// MaxSnapshots is how many raft snapshots the node keeps (etcd's
	// --max-snapshots): older ones are removed once a new one is
	// written. Each is an engine dump, about the size of the store. A
	// negative value keeps them all (etcd's 0, unlimited). The default
	// value is DefaultMaxSnapshots.
	MaxSnapshots int
	// SnapshotInterval is how often raft checks whether to snapshot. The
	// default value is 30 seconds.
	SnapshotInterval time.Duration
	// HeartbeatTimeout and ElectionTimeout are raft's timers. The defaults
	// are 1 second each.
	HeartbeatTimeout, ElectionTimeout time.Duration
	// CompactionBatchLimit and CompactionSleepInterval are the store's
	// (mvcc.Options; etcd's --compaction-batch-limit and
	// --compaction-sleep-interval). The default values are mvcc's.
	CompactionBatchLimit    int
	CompactionSleepInterval time.Duration
	// SocketOptions are the peer listener's socket options.
	SocketOptions sockopt.Options
	// DisablePreVote turns off raft's Pre-Vote phase (etcd's
	// --pre-vote=false): a candidate then raises the term without first
	// asking whether it could win. The default value runs Pre-Vote.
	DisablePreVote bool
	// MaxBatch is the most client requests one raft entry carries. The
	// default value is 256.
	MaxBatch int
	// ServerTLS and ClientTLS, if set, secure the peer port: accepted
	// connections must complete a TLS handshake with ServerTLS (which
	// decides which peer certificates are accepted) and connections to
	// peers are made with ClientTLS, for raft and the peer service alike.
	// Set both or neither.
	ServerTLS, ClientTLS *tls.Config
	// CheckPeerSAN, with ServerTLS, refuses a peer whose certificate has
	// IP or DNS SANs of which none is the address it connects from, as
	// etcd's peer listener does (--peer-skip-client-san-verification turns
	// it off).
	CheckPeerSAN bool
	// Dial opens connections to peers; the default is plain TCP. Tests
	// use it to inject network faults.
	Dial Dialer
	// Logger receives the node's log lines; nil discards them.
	Logger *slog.Logger
	// AuthToken is etcd's --auth-token: "simple" (the default) or
	// "jwt,sign-method=...,priv-key=...,pub-key=...,ttl=...". An invalid
	// one fails Open with ErrInvalidConfig.
	AuthToken string
	// AuthTokenTTL is etcd's --auth-token-ttl, how long an unused simple
	// token lives. The default value is 300 seconds.
	AuthTokenTTL time.Duration
	// OnApplyCommit, if not nil, is called after each engine commit of
	// applied entries with the time it took (etcd's backend commit
	// duration). It runs on the FSM's goroutine: keep it cheap.
	OnApplyCommit func(took time.Duration)
	// OnApplyFailure, if not nil, is called when the engine fails to
	// begin or commit a batch of applied entries (a full disk): the
	// replica cannot follow the log any more, and going on would make it
	// diverge. It should end the process, as etcd's backend does with
	// lg.Fatal("failed to commit tx"); if it returns, or if it is nil,
	// the FSM panics with the error.
	OnApplyFailure func(err error)
	// WarningApplyDuration is how long applying one request may take
	// before it is logged as "apply request took too long" and counted in
	// SlowApplies (etcd's --warning-apply-duration). The default value is
	// 100ms.
	WarningApplyDuration time.Duration
	// PeerMetrics, if not nil, receives the traffic with every peer and
	// the round trip to it, measured every few seconds.
	PeerMetrics PeerMetrics
}

// DefaultMaxSnapshots is etcd's --max-snapshots.
const DefaultMaxSnapshots = 5

// DefaultWarningApplyDuration is etcd's --warning-apply-duration.
const DefaultWarningApplyDuration = 100 * time.Millisecond

// ErrInvalidConfig is returned by Open for a Config that cannot start a
// node.
var ErrInvalidConfig = errors.New("replication: invalid config")

// EnsureDefaults fills the unset fields of c with their defaults. Open
// calls it on its own copy of the caller's Config.
func (c *Config) EnsureDefaults() {
	if c.Advertise == "" {
		c.Advertise = c.Bind
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = 10000
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = c.SnapshotCount
	}
	if c.MaxSnapshots == 0 {
		c.MaxSnapshots = DefaultMaxSnapshots
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = time.Second
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = time.Second
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.WarningApplyDuration == 0 {
		c.WarningApplyDuration = DefaultWarningApplyDuration
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a Config that cannot start a node, wrapping
// ErrInvalidConfig.
func (c *Config) Validate() error {
	if c.ID == "" || c.Dir == "" || c.Engine.Open == nil || c.OpenLog == nil || c.Bind == "" {
		return fmt.Errorf("%w: it needs ID, Dir, Engine, OpenLog and Bind", ErrInvalidConfig)
	}
	if (c.ServerTLS == nil) != (c.ClientTLS == nil) {
		return fmt.Errorf("%w: ServerTLS and ClientTLS go together", ErrInvalidConfig)
	}
	if c.MaxBatch < 0 || c.HeartbeatTimeout < 0 || c.ElectionTimeout < 0 || c.SnapshotInterval < 0 || c.AuthTokenTTL < 0 {
		return fmt.Errorf("%w: MaxBatch, HeartbeatTimeout, ElectionTimeout, SnapshotInterval and AuthTokenTTL cannot be negative", ErrInvalidConfig)
	}
	return nil
}

// snapshotsRetained is the FileSnapshotStore's retain count for
// MaxSnapshots. The store keeps the newest retain snapshots and needs at
// least one; etcd's 0 (unlimited: its purge of .snap files is off) maps to
// the largest count, so none is ever removed.
func (c *Config) snapshotsRetained() int {
	if c.MaxSnapshots < 0 {
		return math.MaxInt
	}
	return c.MaxSnapshots
}

// Node is one member of a Strata cluster: a raft instance whose FSM is the
// MVCC store.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	fsm       *fsm
	logs      LogStore
	transport tcpTransport
	mux       *peerMux
	peers     peerClients
	// fwdPropose and fwdRead forward proposals and read-index requests to
	// the leader in batches.
	fwdPropose, fwdRead *forwarder
	// requestIDs draws the IDs of the proposals this member forwards.
	requestIDs *requestIDs

	propc    chan *proposal
	inflight chan struct{}
	// deadlines wakes the local proposals waiting with a timeout.
	deadlines deadlineClock
	// applied queues the entries in flight for answerLoop, one per slot
	// taken in inflight.
	applied  chan appliedEntry
	verifier verifier
	leaders  leaderWatch
	peerBook peerBook
	// slowReadIndexes counts read barriers slower than readIndexWarnTime.
	slowReadIndexes atomic.Uint64

	// readyTerm is the term in which this node, as leader, has applied
	// its own first entry; linearizable reads wait for it.
	readyTerm atomic.Uint64

	removedc chan struct{}
	// inConfigSeen is set once removalLoop has seen this node in a
	// committed configuration: only then does a configuration without it
	// mean a removal (see removed).
	inConfigSeen bool
	stopc        chan struct{}
	// ctx is cancelled when the node stops, with stopc closed.
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Open starts a node.
func Open(cfg Config) (*Node, error) {
	cfg.EnsureDefaults() // on Open's own copy
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	raftDir := filepath.Join(cfg.Dir, "raft")
	for _, d := range []string{cfg.Dir, raftDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("replication: %w", err)
		}
	}
	n := &Node{
		cfg:        cfg,
		propc:      make(chan *proposal, 4*cfg.MaxBatch),
		inflight:   make(chan struct{}, maxInflight),
		applied:    make(chan appliedEntry, maxInflight),
		removedc:   make(chan struct{}),
		stopc:      make(chan struct{}),
		requestIDs: newRequestIDs(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	hlog := hclogFor(cfg.Logger)
	var err error
	if n.fsm, err = openFSM(filepath.Join(cfg.Dir, "data"), cfg.Engine, cfg.EngineOptions,
		mvcc.Options{CompactionBatchLimit: cfg.CompactionBatchLimit, CompactionSleepInterval: cfg.CompactionSleepInterval}, cfg.Logger,
		auth.Options{Token: cfg.AuthToken, TokenTTL: cfg.AuthTokenTTL}, cfg.VerifyEngine); err != nil {
		return nil, err
	}
	n.fsm.onCommit = cfg.OnApplyCommit
	n.fsm.onFail = cfg.OnApplyFailure
	n.fsm.warnApply = cfg.WarningApplyDuration
	fail := func(err error) (*Node, error) {
		if n.transport.NetworkTransport != nil {
			n.transport.Close()
		} else if n.mux != nil {
			n.mux.close()
		}
		if n.logs != nil {
			n.logs.Close()
		}
		n.fsm.close()
		return nil, err
	}
	// Assigned only on success: a failed OpenLog may return a typed nil
	// (a nil *wal.Store in the interface), which fail must not close.
	logs, err := cfg.OpenLog(filepath.Join(raftDir, "log"))
	if err != nil {
		return fail(fmt.Errorf("replication: open raft log: %w", err))
	}
	n.logs = logs
	snaps, err := openSnapshots(raftDir, cfg.snapshotsRetained(), hlog, n.fsm.dumpAtLeast)
	if err != nil {
		return fail(err)
	}
	if cfg.ForceNewCluster {
		forced, err := forceNewCluster(cfg.ID, cfg.Advertise, n.logs, snaps)
		if err != nil {
			return fail(err)
		}
		if forced {
			cfg.Logger.Warn("forcing a new cluster of this member alone; its other members are removed", "id", cfg.ID)
		}
	}
	if n.mux, err = listenPeers(cfg.Bind, cfg.Advertise, cfg.Dial, cfg.ServerTLS, cfg.ClientTLS, cfg.SocketOptions); err != nil {
		return fail(err)
	}
	n.mux.checkSAN = cfg.CheckPeerSAN
	n.peers.m = n.mux
	n.peers.member = cfg.ID
	n.peers.term = func() uint64 {
		if n.raft == nil {
			return 0 // not started: no term to vouch for
		}
		return n.raft.CurrentTerm()
	}
	n.mux.book, n.mux.metrics = &n.peerBook, cfg.PeerMetrics
	n.peerBook.set(bootstrapMembers(cfg.Bootstrap))
	n.peers.ctx, n.peers.cancel = context.WithCancel(context.Background())
	n.transport = newTCPTransport(n.mux, 10*time.Second, hlog)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.PreVoteDisabled = cfg.DisablePreVote
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotCount
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.SnapshotCatchUpEntries
	// Restart without replay: the store keeps its applied index with the
	// data, so raft need not restore the newest snapshot at start, unless
	// the store is behind it (a fresh or lost data directory); skipping the
	// restore then would leave the entries between them unapplied here. A
	// snapshot that names the store cannot fill that gap.
	rc.NoSnapshotRestoreOnStart = true
	if metas, err := snaps.List(); err == nil && len(metas) > 0 && metas[0].Index > n.fsm.applied.get() {
		ref, err := snaps.isRef(metas[0].ID)
		if err != nil {
			return fail(fmt.Errorf("replication: open snapshot %s: %w", metas[0].ID, err))
		}
		if ref {
			return fail(fmt.Errorf("%w: applied index %d, snapshot %s at index %d; the data directory %s was lost or replaced: restore it from a backup, or remove this member and add it back with an empty data directory",
				ErrStoreBehindSnapshot, n.fsm.applied.get(), metas[0].ID, metas[0].Index, n.fsm.dataDir))
		}
		rc.NoSnapshotRestoreOnStart = false
		cfg.Logger.Info("store is behind the newest snapshot; restoring it",
			"applied-index", n.fsm.applied.get(), "snapshot-index", metas[0].Index)
	}

	if len(cfg.Bootstrap) > 0 {
		existing, err := raft.HasExistingState(n.logs, n.logs, snaps)
		if err != nil {
			return fail(fmt.Errorf("replication: %w", err))
		}
		if !existing {
			var servers []raft.Server
			for _, p := range cfg.Bootstrap {
				servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
			if err := raft.BootstrapCluster(rc, n.logs, n.logs, snaps, n.transport, raft.Configuration{Servers: servers}); err != nil {
				return fail(fmt.Errorf("replication: bootstrap: %w", err))
			}
		}
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.logs, n.logs, snaps, n.transport); err != nil {
		return fail(fmt.Errorf("replication: start raft: %w", err))
	}
	n.verifier.init(n.raft, n.transport, rc.LocalID, n.transport.LocalAddr(), n.stopc)
	n.leaders.init(n.raft)
	n.fwdPropose = newForwarder(n, maxForwardSending, n.sendProposals)
	n.fwdRead = newForwarder(n, maxReadIndexInflight, n.sendReadIndex)
	n.mux.start(newPeerServer(n))
	n.wg.Add(7)
	go n.leaderWatchLoop()
	go n.removalLoop()
	go n.leaseLoop()
	go n.proposeLoop()
	go n.answerLoop()
	go n.leaderLoop()
	go n.verifier.loop(&n.wg)
	if cfg.PeerMetrics != nil {
		n.wg.Add(1)
		go n.probePeersLoop()
	}
	return n, nil
}

// Close stops the node: raft, the proposer, the store and the log.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		close(n.stopc)
		n.cancel()
		n.deadlines.stop()
		n.fwdPropose.close()
		n.fwdRead.close()
		err = n.raft.Shutdown().Error()
		n.wg.Wait()
		n.peers.close()
		if cerr := n.transport.Close(); err == nil {
			err = cerr
		}
		if cerr := n.logs.Close(); err == nil {
			err = cerr
		}
		if cerr := n.fsm.close(); err == nil {
			err = cerr
		}
	})
	return err
}

// ID returns the node's raft server ID.
func (n *Node) ID() string { return n.cfg.ID }

// Addr returns the node's raft address.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and address, empty when unknown.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Term returns the current raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// AppliedIndex returns the index of the last entry applied to the store.
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.get() }

// SnapshotRestores returns how many raft snapshots (sent by a leader) the
// node has restored into its store since it opened.
func (n *Node) SnapshotRestores() uint64 { return n.fsm.restores.Load() }

// CommitIndex returns raft's commit index.
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// View runs fn with the store, after a linearizable read barrier when
// linearizable is set (the store then reflects every write acknowledged
// before View was called). fn must not keep the store.
func (n *Node) View(ctx context.Context, linearizable bool, fn func(*mvcc.Store) error) error {
	if linearizable {
		if err := n.ReadBarrier(ctx); err != nil {
			return err
		}
	}
	return n.fsm.view(fn)
}

// Auth returns the member's auth store: users, roles and permissions as
// applied here, and the tokens this member knows. It stays the same across
// snapshot restores (which reload it).
func (n *Node) Auth() *auth.Store { return n.fsm.auth }

// Snapshot asks raft for a snapshot now (for tests and operators).
func (n *Node) Snapshot() error { return awaitFuture(n.raft.Snapshot(), n.stopc) }

// Propose replicates req and returns its result once applied. Any member
// takes proposals: a follower forwards them to the leader. A physical
// compaction returns once it is on disk.
func (n *Node) Propose(ctx context.Context, req *pb.InternalRaftRequest) (Result, error) {
	return n.ProposeWithin(ctx, req, 0)
}

// ProposeWithin is Propose giving up after timeout (none if zero) with
// context.DeadlineExceeded, as if ctx had that timeout. The timeout costs
// the proposal no timer and no context, on the leader or on a follower
// forwarding it (and on the leader the forwarded proposal's): it is checked
// at the ticks of the node's deadline clock (within deadlineTick of it).
func (n *Node) ProposeWithin(ctx context.Context, req *pb.InternalRaftRequest, timeout time.Duration) (Result, error) {
	var dw deadlineWait
	if timeout > 0 {
		dw = deadlineWait{deadline: time.Now().Add(timeout), clock: &n.deadlines}
	}
	return atLeader(ctx, n,
		func() (Result, error) { return n.proposeLocal(ctx, req, dw) },
		func(addr string) (Result, error) { return n.forwardPropose(ctx, addr, req, dw) })
}

// atLeader runs a request only the leader serves: local on the leader,
// remote (forwarded to the leader's peer address) on any other member. While
// no leader is known, or the answer proves the request was not served
// (ErrNotLeader, ErrNoLeader, ErrNotReady: a proposal answered so never
// entered the log), it tries again every 20 ms, for as long as an election
// may take (two election timeouts and a second) or until ctx ends.
func atLeader[T any](ctx context.Context, n *Node, local func() (T, error), remote func(addr string) (T, error)) (T, error) {
	giveUp := time.Now().Add(2*n.cfg.ElectionTimeout + time.Second)
	for {
		var v T
		var err error
		if n.IsLeader() {
			v, err = local()
		} else if _, addr := n.Leader(); addr != "" {
			v, err = remote(addr)
		} else {
			err = ErrNoLeader
		}
		retry := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotReady)
		if !retry || time.Now().After(giveUp) {
			return v, err
		}
		if werr := n.sleep(ctx, 20*time.Millisecond); werr != nil {
			var zero T
			return zero, err
		}
	}
}

func (n *Node) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
}

// proposeLocal proposes on this node, which should be the leader.
func (n *Node) proposeLocal(ctx context.Context, req *pb.InternalRaftRequest, dw deadlineWait) (Result, error) {
	p := newProposal(req)
	if err := n.submit(ctx, p, dw); err != nil {
		return Result{}, err
	}
	return n.result(ctx, p, dw)
}

// result waits for the answer of p, submitted, and for its Done (a
// physical compaction on disk) if it has one.
func (n *Node) result(ctx context.Context, p *proposal, dw deadlineWait) (Result, error) {
	r, err := n.answer(ctx, p, dw)
	if err != nil {
		return Result{}, err
	}
	if r.err == nil {
		if err := n.awaitDone(ctx, r.res, dw); err != nil {
			return Result{}, err
		}
	}
	return r.res, r.err
}

// awaitDone waits for res's Done, if it has one: a physical compaction
// (or one refused as compacted, behind those already scheduled) answers
// once it is on disk on the member serving it, as etcd's does.
func (n *Node) awaitDone(ctx context.Context, res Result, dw deadlineWait) error {
	if res.Done == nil {
		return nil
	}
	_, err := receive(n, ctx, res.Done, dw)
	return err
}

// proposeLocalAll proposes reqs on this node, which should be the leader,
// all at once (proposeLoop packs them into as few entries as MaxBatch
// allows), and returns the error of each proposal (not its Result's Err).
func (n *Node) proposeLocalAll(ctx context.Context, reqs []*pb.InternalRaftRequest) []error {
	errs := make([]error, len(reqs))
	ps := make([]*proposal, len(reqs))
	for i, req := range reqs {
		ps[i] = newProposal(req)
		if errs[i] = n.submit(ctx, ps[i], deadlineWait{}); errs[i] != nil {
			for j := i + 1; j < len(reqs); j++ {
				errs[j] = errs[i]
			}
			break
		}
	}
	for i, p := range ps {
		if errs[i] != nil {
			break
		}
		r, err := n.answer(ctx, p, deadlineWait{})
		if err == nil {
			err = r.err
		}
		errs[i] = err
	}
	return errs
}

// maxInflight is how many entries proposeLoop has in flight at most.
const maxInflight = 8

type proposal struct {
	req  *pb.InternalRaftRequest
	done chan proposalResult
}

func newProposal(req *pb.InternalRaftRequest) *proposal {
	return &proposal{req: req, done: make(chan proposalResult, 1)}
}

// submit queues p for proposeLoop.
func (n *Node) submit(ctx context.Context, p *proposal, dw deadlineWait) error {
	select { // no deadline tick while there is room
	case n.propc <- p:
		return nil
	default:
	}
	for tick := dw.tick(); ; {
		select {
		case n.propc <- p:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopc:
			return ErrStopped
		case <-tick:
			if dw.expired() {
				return context.DeadlineExceeded
			}
			tick = dw.tick()
		}
	}
}

// answer waits for p's answer from answerLoop.
func (n *Node) answer(ctx context.Context, p *proposal, dw deadlineWait) (proposalResult, error) {
	return receive(n, ctx, p.done, dw)
}

// receive waits for a value from ch until ctx ends, n stops or dw's
// deadline passes (context.DeadlineExceeded).
func receive[T any](n *Node, ctx context.Context, ch <-chan T, dw deadlineWait) (T, error) {
	var zero T
	for tick := dw.tick(); ; {
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-n.stopc:
			return zero, ErrStopped
		case <-tick:
			if dw.expired() {
				return zero, context.DeadlineExceeded
			}
			tick = dw.tick()
		}
	}
}

type proposalResult struct {
	res Result
	err error
}

// proposeLoop packs waiting proposals into raft entries. While entries are
// in flight (the log is being fsynced and replicated), new proposals queue up
// and go out together in the next entry: proposal batching.
func (n *Node) proposeLoop() {
	defer n.wg.Done()
	var (
		batch []*proposal
		body  []byte // the batch's requests, encoded
	)
	add := func(p *proposal) {
		var err error
		if body, err = appendRequest(body, p.req); err != nil {
			p.done <- proposalResult{err: err}
			return
		}
		batch = append(batch, p)
	}
	for {
		batch, body = batch[:0], body[:0]
		// Take an in-flight slot before gathering the entry: while every
		// slot is taken, proposals queue up and the next entry carries them
		// all, rather than the few that had arrived when the previous one
		// went out.
		select {
		case n.inflight <- struct{}{}:
		case <-n.stopc:
			return
		}
		select {
		case p := <-n.propc:
			add(p)
		case <-n.stopc:
			return
		}
	drain:
		for len(batch) < n.cfg.MaxBatch && len(body) < maxEntryBytes {
			select {
			case p := <-n.propc:
				add(p)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			<-n.inflight
			continue
		}
		// raft keeps the entry until it is stored: newEntry's is its own.
		data := newEntry(len(batch), body)
		reqs := make([]*pb.InternalRaftRequest, len(batch))
		for i, p := range batch {
			reqs[i] = p.req
		}
		n.fsm.proposed.add(data, reqs)
		f := n.raft.Apply(data, 0)
		// answerLoop frees the slot; the queue has room for every slot.
		n.applied <- appliedEntry{f: f, data: data, batch: append([]*proposal(nil), batch...)}
	}
}

// appliedEntry is an entry proposeLoop gave raft, with the proposals it
// carries.
type appliedEntry struct {
	f     raft.ApplyFuture
	data  []byte // the entry, in fsm.proposed until raft answers it
	batch []*proposal
}

// answerLoop waits for the entries in flight in the order they were
// proposed (raft applies them in that order) and answers their proposals,
// freeing an in-flight slot for each.
func (n *Node) answerLoop() {
	defer n.wg.Done()
	for {
		select {
		case e := <-n.applied:
			n.finish(e.f, e.batch)
			n.fsm.proposed.remove(e.data)
			<-n.inflight
		case <-n.stopc:
			return
		}
	}
}

func (n *Node) finish(f raft.ApplyFuture, batch []*proposal) {
	if err := awaitFuture(f, n.stopc); err != nil {
		err = translateRaftError(err)
		for _, p := range batch {
			p.done <- proposalResult{err: err}
		}
		return
	}
	results, _ := f.Response().([]Result)
	for i, p := range batch {
		switch {
		case i < len(results):
			r := results[i]
			r.Index = f.Index()
			p.done <- proposalResult{res: r}
		case len(results) == 1 && results[0].Err != nil:
			p.done <- proposalResult{err: results[0].Err}
		default:
			p.done <- proposalResult{err: fmt.Errorf("replication: entry %d answered %d of %d requests", f.Index(), len(results), len(batch))}
		}
	}
}

func translateRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w", ErrLeaderChanged, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrStopped
	}
	return err
}

// leaderLoop commits an empty entry whenever this node becomes leader; once
// it is applied, the node serves linearizable reads in that term.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stopc:
			return
		case leader := <-n.raft.LeaderCh():
			n.readyTerm.Store(0)
			if !leader {
				n.fsm.setPrimary(false, 0)
				continue
			}
			term := n.raft.CurrentTerm()
			entry, _ := encodeEntry(nil, nil)
			if err := awaitFuture(n.raft.Apply(entry, 0), n.stopc); err != nil {
				n.cfg.Logger.Warn("leader barrier failed", "term", term, "error", err)
				continue
			}
			if n.raft.CurrentTerm() == term && n.raft.State() == raft.Leader {
				// Lease clocks start here, with an election timeout of grace
				// on top of every remaining TTL (etcd's Promote).
				n.fsm.setPrimary(true, n.cfg.ElectionTimeout)
				n.readyTerm.Store(term)
				n.cfg.Logger.Info("leader ready", "term", term)
			}
		}
	}
}

// ReadBarrier returns once the store reflects every write committed before
// it was called: the ReadIndex recipe. The leader reads its commit index,
// confirms its leadership with a quorum (one round serves every read waiting
// for it) and checks its term did not change; a follower asks the leader for
// that index. Then the node waits until its store has applied it.
func (n *Node) ReadBarrier(ctx context.Context) error {
	began := time.Now()
	ri, err := atLeader(ctx, n,
		func() (uint64, error) { return n.leaderReadIndex(ctx) },
		func(addr string) (uint64, error) { return n.forwardReadIndex(ctx, addr) })
	if took := time.Since(began); took > readIndexWarnTime {
		// etcd warns (and counts) once a ReadIndex has waited its retry
		// time, 500ms.
		n.slowReadIndexes.Add(1)
		n.cfg.Logger.Warn("waiting for ReadIndex response took too long, retrying",
			"local-member-id", n.cfg.ID, "took", took, "retry-timeout", readIndexWarnTime)
	}
	if err != nil {
		return err
	}
	return n.fsm.applied.wait(ctx, ri)
}

// leaderReadIndex returns an index at or below which every write
// acknowledged before the call is committed, after confirming this node
// still leads.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	ri, _, err := n.readIndex(func() error { return n.verifier.verify(ctx) })
	return ri, err
}

// readIndex takes this leader's commit index, in its term, once it applied
// an entry of that term; confirm (nil: none) runs after the index is
// taken, and the term must not have changed meanwhile.
func (n *Node) readIndex(confirm func() error) (ri, term uint64, err error) {
	if n.raft.State() != raft.Leader {
		return 0, 0, ErrNotLeader
	}
	term = n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		return 0, 0, ErrNotReady
	}
	ri = n.raft.CommitIndex()
	if confirm != nil {
		if err := confirm(); err != nil {
			return 0, 0, err
		}
	}
	if n.raft.CurrentTerm() != term {
		return 0, 0, ErrLeaderChanged
	}
	return ri, term, nil
}

// followerReadIndex answers a follower's read index: as leaderReadIndex,
// or, when this node and the follower are a quorum of the voters, without
// a round, with this node's term for the follower to confirm it against
// its own (peerpb.ReadIndexResponse.term). Term is zero when confirmed
// here.
func (n *Node) followerReadIndex(ctx context.Context, member string) (ri, term uint64, err error) {
	if member == "" || !n.verifier.pairQuorum(raft.ServerID(member)) {
		ri, err = n.leaderReadIndex(ctx)
		return ri, 0, err
	}
	if ri, term, err = n.readIndex(nil); err != nil {
		return 0, 0, err
	}
	if n.raft.State() != raft.Leader {
		return 0, 0, ErrLeaderChanged
	}
	return ri, term, nil
}

// readIndexWarnTime is etcd's ReadIndex retry time: a read barrier slower
// than it is logged and counted.
const readIndexWarnTime = 500 * time.Millisecond

// SlowReadIndexes returns the number of read barriers that took longer
// than 500ms (etcd's etcd_server_slow_read_indexes_total).
func (n *Node) SlowReadIndexes() uint64 { return n.slowReadIndexes.Load() }

// SlowApplies returns the number of requests whose apply took longer than
// WarningApplyDuration (etcd's etcd_server_slow_apply_total).
func (n *Node) SlowApplies() uint64 { return n.fsm.slowApplies.Load() }

// WaitReady waits until this node leads and serves linearizable reads, or
// until another node is known to lead.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if n.readyTerm.Load() == n.raft.CurrentTerm() && n.IsLeader() {
			return nil
		}
		if id, _ := n.Leader(); id != "" && id != n.cfg.ID {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopc:
			return ErrStopped
		case <-t.C:
		}
	}
}

// awaitFuture waits for f, or for stopc to close (then it returns
// ErrStopped), without a goroutine of its own.
//
// raft v1.8.0 does not resolve every future that is in flight when it shuts
// down: an apply still in its apply channel's buffer or in the FSM's queue,
// or a VerifyLeader that reaches the leader loop as it exits, is never
// answered, and only the future's Error can wait for it. Error also returns
// (raft.ErrRaftShutdown) once the future's ShutdownCh closes, a field raft
// sets on a few futures of its own but not on those its API returns;
// awaitFuture points it at stopc, so that the node's Close ends every wait.
// The field is reached by reflection (the future types are unexported);
// TestAwaitFutureEndsAtStop fails if a raft upgrade moves it.
func awaitFuture(f raft.Future, stopc chan struct{}) error {
	// A future without the field (raft's errorFuture) is resolved already.
	watchStop(f, stopc)
	err := f.Error()
	if errors.Is(err, raft.ErrRaftShutdown) && stopped(stopc) {
		return ErrStopped
	}
	return err
}

// watchStop sets f's ShutdownCh to stopc and reports whether it could.
func watchStop(f raft.Future, stopc chan struct{}) bool {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return false
	}
	ch := v.Elem().FieldByName("ShutdownCh")
	if !ch.IsValid() || !ch.CanSet() || ch.Type() != reflect.TypeOf(stopc) {
		return false
	}
	if ch.IsNil() {
		ch.Set(reflect.ValueOf(stopc))
	}
	return true
}

func stopped(stopc chan struct{}) bool {
	select {
	case <-stopc:
		return true
	default:
		return false
	}
}

// hclogFor adapts a slog logger for raft: each raft line reaches l at its
// own level (hclog's Trace as slog's Debug-4), with raft's key/value pairs
// as attributes and raft's call site as the record's source.
func hclogFor(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Off, // the sink below is the only output
		Output: io.Discard,
	})
	il.RegisterSink(slogSink{l})
	return il
}

// slogSink forwards hclog's lines to a slog logger.
type slogSink struct{ l *slog.Logger }

// hclogCallerSkip is the number of frames between slogSink.Accept and
// raft's call: runtime.Callers, Accept, interceptLogger.log and
// interceptLogger.Info (or Warn, Log, ...).
const hclogCallerSkip = 4

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	var lvl slog.Level
	switch {
	case level <= hclog.Trace:
		lvl = slog.LevelDebug - 4
	case level == hclog.Debug:
		lvl = slog.LevelDebug
	case level == hclog.Info:
		lvl = slog.LevelInfo
	case level == hclog.Warn:
		lvl = slog.LevelWarn
	default:
		lvl = slog.LevelError
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, lvl) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(hclogCallerSkip, pcs[:])
	r := slog.NewRecord(time.Now(), lvl, msg, pcs[0])
	r.AddAttrs(slog.String("logger", name))
	for i := 0; i+1 < len(args); i += 2 {
		k, ok := args[i].(string)
		if !ok {
			k = fmt.Sprint(args[i])
		}
		v := args[i+1]
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			format, _ := f[0].(string)
			v = fmt.Sprintf(format, f[1:]...)
		}
		r.AddAttrs(slog.Any(k, v))
	}
	if len(args)%2 == 1 {
		r.AddAttrs(slog.Any("EXTRA_VALUE_AT_END", args[len(args)-1]))
	}
	_ = s.l.Handler().Handle(ctx, r)
}
