package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/sockopt"
	"github.com/strata-kv/strata/internal/tlsutil"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// Defaults, etcd's unless stated.
const (
	// DefaultName is the member name when none is given.
	DefaultName = "default"
	// DefaultListenClientURL and DefaultListenPeerURL are the client and
	// peer URLs when none are given.
	DefaultListenClientURL = "http://127.0.0.1:2379"
	DefaultListenPeerURL   = "http://127.0.0.1:2380"
	// DefaultInitialClusterToken is etcd's --initial-cluster-token default.
	DefaultInitialClusterToken = "etcd-cluster"
	// DefaultMaxRequestBytes is etcd's --max-request-bytes: 1.5 MiB.
	DefaultMaxRequestBytes = 1536 * 1024
	// DefaultQuotaBackendBytes is etcd's default backend quota: 2 GiB.
	DefaultQuotaBackendBytes = 2 << 30
	// DefaultSnapshotCount is etcd's --snapshot-count.
	DefaultSnapshotCount = 10000
	// DefaultSnapshotCatchUpEntries is etcd's --snapshot-catchup-entries.
	DefaultSnapshotCatchUpEntries = 5000
	// DefaultMaxSnapshots and DefaultMaxWALs are etcd's --max-snapshots
	// and --max-wals.
	DefaultMaxSnapshots = 5
	DefaultMaxWALs      = 5
	// DefaultMaxLearners is etcd's --max-learners.
	DefaultMaxLearners = 1
	// DefaultGRPCKeepAliveMinTime, DefaultGRPCKeepAliveInterval and
	// DefaultGRPCKeepAliveTimeout are etcd's --grpc-keepalive-* flags.
	DefaultGRPCKeepAliveMinTime  = 5 * time.Second
	DefaultGRPCKeepAliveInterval = 2 * time.Hour
	DefaultGRPCKeepAliveTimeout  = 20 * time.Second
	// DefaultCompactHashCheckTime is etcd's --compact-hash-check-time.
	DefaultCompactHashCheckTime = time.Minute
	// DefaultAuthTokenTTL is etcd's --auth-token-ttl.
	DefaultAuthTokenTTL = 300 * time.Second
	// DefaultHeartbeatInterval and DefaultElectionTimeout are etcd's.
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = 1000 * time.Millisecond

	// DefaultSelfSignedCertValidity is etcd's --self-signed-cert-validity,
	// in years.
	DefaultSelfSignedCertValidity = 1

	// grpcOverheadBytes is what etcd adds to --max-request-bytes for the
	// gRPC receive limit.
	grpcOverheadBytes = 512 * 1024
)

// Cluster states (etcd's --initial-cluster-state).
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
)

// Metrics levels (etcd's --metrics).
const (
	MetricsBasic     = "basic"
	MetricsExtensive = "extensive"
)

// Auto-compaction modes (etcd's --auto-compaction-mode).
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// Config configures a Server. The fields are etcd's flags of the same
// names; zero values take etcd's defaults.
type Config struct {
	// Name is the member's name (--name). The default value is "default".
	Name string
	// DataDir is the member's data directory (--data-dir). The default
	// value is "<Name>.strata".
	DataDir string
	// WALDir is the directory of the member's raft log (--wal-dir, etcd's
	// dedicated WAL directory, e.g. on a faster disk). The default value
	// is <DataDir>/member/raft/log. Start refuses a WALDir without a log
	// when the default directory has one: move the log there first.
	WALDir string
	// WALSyncFault is fault injection, for tests only (cmd/strata sets it
	// from STRATA_FAULT_INJECT_WAL_FSYNC): see wal.Options.SyncFault. The
	// default value is nil.
	WALSyncFault func() error
	// Engine is the storage engine (--backend).
	Engine engine.Engine
	// EngineOptions are passed to the engine.
	EngineOptions engine.Options
	// UnsafeNoFsync turns off the fsyncs of the raft log (wal.Options.
	// NoSync) and of the engine (engine.Options.NoSync), as etcd's
	// --unsafe-no-fsync turns off its WAL's and bbolt's. Unsafe: a crash
	// of the machine may lose acknowledged writes. The default value is
	// false.
	UnsafeNoFsync bool

	// ListenClientURLs are the URLs served for clients, gRPC and HTTP on
	// the same port (--listen-client-urls). The default value is
	// http://127.0.0.1:2379. Port 0 picks a free port (see ClientURLs).
	ListenClientURLs []string
	// ListenClientHTTPURLs, if set, are the URLs serving the HTTP
	// endpoints (health, metrics, version, the gateway) to clients, and
	// ListenClientURLs then serve gRPC only (--listen-client-http-urls).
	ListenClientHTTPURLs []string
	// AdvertiseClientURLs are the client URLs announced to clients
	// (--advertise-client-urls). The default value is ListenClientURLs.
	AdvertiseClientURLs []string
	// ListenMetricsURLs are extra URLs serving only the HTTP endpoints
	// (--listen-metrics-urls). The default value is none.
	ListenMetricsURLs []string
	// ListenPeerURLs is the URL the raft transport listens on
	// (--listen-peer-urls); only one is supported. The default value is
	// http://127.0.0.1:2380.
	ListenPeerURLs []string
	// InitialAdvertisePeerURLs are the peer URLs announced to the cluster
	// (--initial-advertise-peer-urls). The default value is
	// ListenPeerURLs.
	InitialAdvertisePeerURLs []string
	// InitialCluster is the initial cluster, "name=peerURL,..."
	// (--initial-cluster). The default value is
	// "<Name>=<InitialAdvertisePeerURLs[0]>".
	InitialCluster string
	// InitialClusterState is "new" or "existing"
	// (--initial-cluster-state). The default value is "new".
	InitialClusterState string
	// InitialClusterToken seeds the member and cluster IDs
	// (--initial-cluster-token). The default value is "etcd-cluster".
	InitialClusterToken string

	// ForceNewCluster makes a member that has data the only member of its
	// cluster, keeping its data, its member ID and its cluster ID
	// (--force-new-cluster): for a cluster that lost its quorum for good.
	// The other members must not start again on their data directories.
	// A member without data ignores it, as etcd does.
	ForceNewCluster bool

	// InitialCorruptCheck makes the member compare its HashKV with its
	// peers' before it serves clients, and stop if one differs at the same
	// compact revision (etcd's InitialCorruptCheck feature gate): Err then
	// says "found data inconsistency with peers".
	InitialCorruptCheck bool
	// BootstrapDefragThresholdMegabytes, if not 0, defragments the engine
	// at start when that would give back at least this many MiB (its size
	// minus its size in use; see engine.Stats), as etcd's
	// --bootstrap-defrag-threshold-megabytes. The default value 0 never
	// does.
	BootstrapDefragThresholdMegabytes uint
	// CorruptCheckTime is how often the leader compares its HashKV with
	// its followers' and raises the CORRUPT alarm on a mismatch
	// (--corrupt-check-time). The default value 0 disables the check.
	CorruptCheckTime time.Duration
	// CompactHashCheck enables the leader's check of the hashes computed
	// at compactions across members, every CompactHashCheckTime (etcd's
	// CompactHashCheck feature gate and --compact-hash-check-time, whose
	// default value is 1 minute); a mismatch raises the CORRUPT alarm for
	// the members outside the majority.
	CompactHashCheck     bool
	CompactHashCheckTime time.Duration

	// SnapshotCount is the number of applied entries between raft
	// snapshots (--snapshot-count). The default value is 10000.
	SnapshotCount uint64
	// SnapshotCatchUpEntries is the number of raft log entries kept behind
	// a snapshot for a slow follower to catch up from, as etcd's
	// --snapshot-catchup-entries: a follower further behind gets a
	// snapshot. The default value is 5000.
	SnapshotCatchUpEntries uint64
	// MaxSnapshots is how many raft snapshots the member keeps
	// (--max-snapshots); each is an engine dump, about the size of the
	// store. The default value is 5; a negative value keeps every one
	// (etcd's 0, unlimited).
	MaxSnapshots int
	// MaxWALs is how many raft log segment files the member keeps
	// (--max-wals), as etcd counts its WAL files: a segment whose entries
	// raft's compaction after a snapshot has all removed is kept, the
	// oldest removed while there are more than MaxWALs files; a segment
	// holding entries raft may still read (those after the snapshot and
	// the SnapshotCatchUpEntries before it) is never removed. The default
	// value is 5; a negative value keeps every one (etcd's 0, unlimited).
	MaxWALs int
	// QuotaBackendBytes is the space quota (--quota-backend-bytes): puts
	// are refused with "database space exceeded" once the engine is
	// larger. The default value is 2 GiB; a negative value disables it.
	QuotaBackendBytes int64
	// MaxRequestBytes is the largest request proposed
	// (--max-request-bytes). The default value is 1.5 MiB.
	MaxRequestBytes uint
	// MaxTxnOps is the most operations in a txn (--max-txn-ops). The
	// default value is 128.
	MaxTxnOps uint
	// HeartbeatInterval is how often the leader heartbeats
	// (--heartbeat-interval). The default value is 100ms.
	HeartbeatInterval time.Duration
	// ElectionTimeout is how long a follower waits for the leader before
	// it stands for election (--election-timeout). The default value is
	// 1s.
	ElectionTimeout time.Duration
	// AutoCompactionMode is "periodic" or "revision"
	// (--auto-compaction-mode). The default value is "periodic".
	AutoCompactionMode string
	// AutoCompactionRetention is the periodic mode's window ("1" hours,
	// or a duration such as "30m") or the revision mode's number of
	// revisions kept (--auto-compaction-retention). The default value "0"
	// disables auto-compaction.
	AutoCompactionRetention string

	// CompactionBatchLimit is how many revisions a compaction deletes per
	// engine commit, and CompactionSleepInterval the pause between two
	// batches (--compaction-batch-limit, --compaction-sleep-interval). The
	// default values are etcd's: 1000 and 10ms; a negative
	// CompactionSleepInterval pauses not at all.
	CompactionBatchLimit    int
	CompactionSleepInterval time.Duration

	// WatchProgressNotifyInterval is the period of the progress
	// notifications sent to watchers created with progress_notify
	// (--watch-progress-notify-interval). The default value is 10
	// minutes, etcd's; a negative value sends none.
	WatchProgressNotifyInterval time.Duration

	// ClientTLSInfo is the TLS of the https client and metrics URLs
	// (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth,
	// --client-crl-file). An https URL needs it, or ClientAutoTLS.
	ClientTLSInfo tlsutil.Info
	// ClientAutoTLS makes a self-signed client certificate in
	// <DataDir>/fixtures/client when ClientTLSInfo has none (--auto-tls).
	ClientAutoTLS bool
	// PeerTLSInfo is the TLS of the peer port, for the raft transport and
	// the peer service alike (--peer-cert-file, --peer-key-file,
	// --peer-trusted-ca-file, --peer-client-cert-auth, --peer-crl-file,
	// --peer-cert-allowed-cn, --peer-cert-allowed-hostname). An https peer
	// URL needs it, or PeerAutoTLS.
	PeerTLSInfo tlsutil.Info
	// PeerAutoTLS makes a self-signed peer certificate in
	// <DataDir>/fixtures/peer when PeerTLSInfo has none (--peer-auto-tls).
	PeerAutoTLS bool
	// SelfSignedCertValidity is the validity of auto-TLS certificates in
	// years (--self-signed-cert-validity). The default value is 1.
	SelfSignedCertValidity uint
	// CipherSuites are the TLS cipher suites of client and peer
	// connections, by name (--cipher-suites); empty lets Go choose.
	CipherSuites []string
	// TLSMinVersion and TLSMaxVersion bound the TLS versions of client and
	// peer connections, "TLS1.2" or "TLS1.3" (--tls-min-version,
	// --tls-max-version). The default minimum is TLS1.2; an empty maximum
	// lets Go choose.
	TLSMinVersion, TLSMaxVersion string
	// AuthToken is the token type (--auth-token): "simple", or
	// "jwt,sign-method=<alg>,priv-key=<file>,pub-key=<file>[,ttl=<dur>]".
	// The default value is "simple".
	AuthToken string
	// AuthTokenTTL is how long an unused simple token lives
	// (--auth-token-ttl, in seconds there). The default value is 300
	// seconds.
	AuthTokenTTL time.Duration
	// BcryptCost is the bcrypt cost of the password hashes
	// (--bcrypt-cost). The default value is 10; a cost bcrypt refuses is
	// replaced by it, with a warning, as etcd does.
	BcryptCost int

	// WarningApplyDuration is how long applying one request may take
	// before it is logged as "apply request took too long" and counted in
	// etcd_server_slow_apply_total (--warning-apply-duration). The default
	// value is 100ms.
	WarningApplyDuration time.Duration

	// Metrics is "basic" or "extensive" (--metrics); extensive adds
	// grpc_server_handling_seconds, the per-RPC latency histogram. The
	// default value is "basic".
	Metrics string

	// WarningUnaryRequestDuration is how long a unary request may take
	// before etcd's "request stats" warning is logged for it
	// (--warning-unary-request-duration). The default value is 300ms.
	WarningUnaryRequestDuration time.Duration

	// EnableGRPCGateway serves etcd's gRPC gateway, the JSON API under
	// /v3/ on the client URLs (--enable-grpc-gateway). The default value
	// (nil) is true, as etcd's.
	EnableGRPCGateway *bool

	// CORS are the origins a browser may call the client HTTP endpoints
	// from (--cors): etcd's CORS headers are sent for "*" (etcd's
	// default) or for a request whose Origin is listed. The default value
	// (empty) allows every origin, as "*".
	CORS []string
	// HostWhitelist are the Host names a plain-http client request may
	// name (--host-whitelist); others are refused with etcd's 421
	// (DNS rebinding, CVE-2018-5702). The default value (empty) allows
	// every host, as "*".
	HostWhitelist []string

	// EnablePprof serves Go's profiles under /debug/pprof/ on the HTTP
	// endpoints (--enable-pprof).
	EnablePprof bool

	// SocketReusePort and SocketReuseAddress set SO_REUSEPORT and
	// SO_REUSEADDR on the client, metrics and peer listeners
	// (--socket-reuse-port, --socket-reuse-address; Go sets SO_REUSEADDR
	// on Unix anyway).
	SocketReusePort    bool
	SocketReuseAddress bool

	// DisablePreVote turns off raft's Pre-Vote (--pre-vote=false). The
	// default value runs it, as etcd's --pre-vote=true.
	DisablePreVote bool

	// DisableStrictReconfigCheck turns off etcd's strict reconfiguration
	// check (--strict-reconfig-check=false): MemberAdd and MemberRemove no
	// longer refuse a change that would leave too few started or reachable
	// members for a quorum. A learner is still promoted only once it has
	// caught up, as etcd's. The default value (false) checks.
	DisableStrictReconfigCheck bool

	// MaxLearners is the most learners the cluster may have: MemberAdd
	// of one more is refused with "etcdserver: too many learner members
	// in cluster" (--max-learners). The default value is 1, etcd's.
	MaxLearners int

	// MaxConcurrentStreams is the most concurrent gRPC streams a client
	// connection may open (--max-concurrent-streams). The default value
	// is math.MaxUint32, etcd's.
	MaxConcurrentStreams uint32
	// GRPCKeepAliveMinTime is the shortest interval between a client's
	// pings: a client pinging faster is sent GOAWAY
	// (--grpc-keepalive-min-time). GRPCKeepAliveInterval is how often the
	// server pings an idle connection, and GRPCKeepAliveTimeout how long
	// it waits for the answer before it closes the connection
	// (--grpc-keepalive-interval, --grpc-keepalive-timeout). The default
	// values are etcd's: 5s, 2h and 20s. A negative value, as etcd's 0,
	// leaves gRPC's own defaults: the minimum time, or the pings (either
	// of the last two).
	GRPCKeepAliveMinTime  time.Duration
	GRPCKeepAliveInterval time.Duration
	GRPCKeepAliveTimeout  time.Duration

	// Logger receives the server's log lines (and the engine's, unless
	// EngineOptions has a logger). When nil, the server builds etcd's zap
	// logger from LogLevel, LogOutputs and LogFormat (see NewLogger).
	Logger *slog.Logger
	// LogLevel is the least level logged: debug, info, warn, error,
	// dpanic, panic or fatal (--log-level). The default value is "info".
	LogLevel string
	// LogOutputs are where the lines go: "default" (stderr), "stderr",
	// "stdout", "systemd/journal" or file paths (--log-outputs). The
	// default value is "default".
	LogOutputs []string
	// LogFormat is "json" or "console" (--log-format). The default value
	// is "json".
	LogFormat string
	// EnableLogRotation rotates the one file of LogOutputs as
	// LogRotationConfigJSON says (--enable-log-rotation; see
	// NewRotatingLogger). The default value is false.
	EnableLogRotation bool
	// LogRotationConfigJSON is etcd's --log-rotation-config-json. The
	// default value ("") is DefaultLogRotationConfig.
	LogRotationConfigJSON string

	// revisionCompactInterval is how often the revision auto-compaction
	// runs; tests shorten it (see export_test.go).
	revisionCompactInterval time.Duration
}

// ErrInvalidConfig is wrapped by the errors of Config.Validate, whose
// texts are etcd's: they name the flag at fault.
var ErrInvalidConfig = errors.New("server: invalid configuration")

// configError is an error of Config.Validate: it reads as err and wraps
// both err and ErrInvalidConfig.
type configError struct{ err error }

func (e *configError) Error() string   { return e.err.Error() }
func (e *configError) Unwrap() []error { return []error{ErrInvalidConfig, e.err} }

func invalid(err error) error { return &configError{err} }

// EnsureDefaults sets the unset fields of c to their default values (see
// each field). Start calls it on its own copy of the caller's Config.
func (c *Config) EnsureDefaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.DataDir == "" {
		c.DataDir = c.Name + ".strata"
	}
	if len(c.ListenClientURLs) == 0 {
		c.ListenClientURLs = []string{DefaultListenClientURL}
	}
	if len(c.ListenPeerURLs) == 0 {
		c.ListenPeerURLs = []string{DefaultListenPeerURL}
	}
	if len(c.InitialAdvertisePeerURLs) == 0 {
		c.InitialAdvertisePeerURLs = c.ListenPeerURLs
	}
	if c.InitialCluster == "" {
		var parts []string
		for _, u := range c.InitialAdvertisePeerURLs {
			parts = append(parts, c.Name+"="+u)
		}
		c.InitialCluster = strings.Join(parts, ",")
	}
	if c.InitialClusterState == "" {
		c.InitialClusterState = ClusterStateNew
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = DefaultInitialClusterToken
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = DefaultSnapshotCatchUpEntries
	}
	if c.MaxSnapshots == 0 {
		c.MaxSnapshots = DefaultMaxSnapshots
	}
	if c.MaxWALs == 0 {
		c.MaxWALs = DefaultMaxWALs
	}
	if c.CompactHashCheckTime == 0 {
		c.CompactHashCheckTime = DefaultCompactHashCheckTime
	}
	if c.MaxLearners == 0 {
		c.MaxLearners = DefaultMaxLearners
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = math.MaxUint32
	}
	if c.GRPCKeepAliveMinTime == 0 {
		c.GRPCKeepAliveMinTime = DefaultGRPCKeepAliveMinTime
	}
	if c.GRPCKeepAliveInterval == 0 {
		c.GRPCKeepAliveInterval = DefaultGRPCKeepAliveInterval
	}
	if c.GRPCKeepAliveTimeout == 0 {
		c.GRPCKeepAliveTimeout = DefaultGRPCKeepAliveTimeout
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = mvcc.DefaultMaxTxnOps
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.AutoCompactionMode == "" {
		c.AutoCompactionMode = CompactionPeriodic
	}
	if c.AutoCompactionRetention == "" {
		c.AutoCompactionRetention = "0"
	}
	if c.SelfSignedCertValidity == 0 {
		c.SelfSignedCertValidity = DefaultSelfSignedCertValidity
	}
	if c.TLSMinVersion == "" {
		c.TLSMinVersion = tlsutil.VersionTLS12
	}
	if c.WarningUnaryRequestDuration == 0 {
		c.WarningUnaryRequestDuration = DefaultWarningUnaryRequestDuration
	}
	if c.EnableGRPCGateway == nil {
		on := true
		c.EnableGRPCGateway = &on
	}
	if c.Metrics == "" {
		c.Metrics = MetricsBasic
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if len(c.LogOutputs) == 0 {
		c.LogOutputs = []string{LogOutputDefault}
	}
	if c.LogFormat == "" {
		c.LogFormat = LogFormatJSON
	}
	if c.AuthToken == "" {
		c.AuthToken = auth.TokenTypeSimple
	}
	if c.AuthTokenTTL == 0 {
		c.AuthTokenTTL = DefaultAuthTokenTTL
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = bcrypt.DefaultCost
	}
	if c.revisionCompactInterval <= 0 {
		c.revisionCompactInterval = defaultRevisionCompactInterval
	}
}

// Validate reports a configuration that cannot work, with an error
// wrapping ErrInvalidConfig whose text is etcd's for the flag at fault.
// It expects EnsureDefaults to have run.
func (c *Config) Validate() error {
	_, err := c.parse()
	return err
}

// config is a validated Config with its defaults and parsed values. It is
// not changed once Start has it.
type config struct {
	Config
	listenClient    []*url.URL
	listenHTTP      []*url.URL // --listen-client-http-urls
	advertiseClient []*url.URL
	listenMetrics   []*url.URL
	listenPeer      *url.URL
	advertisePeer   []*url.URL
	initialCluster  map[string][]string // name -> peer URLs
	compactPeriod   time.Duration       // periodic mode
	compactRevs     int64               // revision mode
	// TLS versions and cipher suites, parsed.
	tlsMin, tlsMax uint16
	cipherSuites   []uint16
}

// newConfig is how Start takes cfg, its own copy of the caller's Config:
// defaults, validation, then the parsed values.
func newConfig(cfg Config) (*config, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg.parse()
}

// parse checks c, whose defaults are filled in, and returns it with its
// values parsed. Its errors are Validate's.
func (c *Config) parse() (*config, error) {
	o := &config{Config: *c}
	if o.Engine.Open == nil {
		return nil, invalid(errors.New("server: config needs an Engine"))
	}
	if _, _, _, err := logConfig(o.LogLevel, o.LogOutputs, o.LogFormat); err != nil {
		return nil, invalid(err)
	}
	if o.Metrics != MetricsBasic && o.Metrics != MetricsExtensive {
		return nil, invalid(fmt.Errorf("server: --metrics must be %q or %q, got %q", MetricsBasic, MetricsExtensive, o.Metrics))
	}
	if o.ElectionTimeout < 5*o.HeartbeatInterval {
		return nil, invalid(fmt.Errorf("server: --election-timeout[%v] should be at least 5 times --heartbeat-interval[%v]", o.ElectionTimeout, o.HeartbeatInterval))
	}
	var err error
	if o.listenClient, err = parseURLs("--listen-client-urls", o.ListenClientURLs); err != nil {
		return nil, invalid(err)
	}
	if o.listenHTTP, err = parseURLs("--listen-client-http-urls", o.ListenClientHTTPURLs); err != nil {
		return nil, invalid(err)
	}
	if len(o.AdvertiseClientURLs) > 0 {
		if o.advertiseClient, err = parseURLs("--advertise-client-urls", o.AdvertiseClientURLs); err != nil {
			return nil, invalid(err)
		}
	}
	if o.listenMetrics, err = parseURLs("--listen-metrics-urls", o.ListenMetricsURLs); err != nil {
		return nil, invalid(err)
	}
	peers, err := parseURLs("--listen-peer-urls", o.ListenPeerURLs)
	if err != nil {
		return nil, invalid(err)
	}
	if len(peers) != 1 {
		return nil, invalid(fmt.Errorf("server: --listen-peer-urls: exactly one URL is supported, got %d", len(peers)))
	}
	o.listenPeer = peers[0]
	if o.advertisePeer, err = parseURLs("--initial-advertise-peer-urls", o.InitialAdvertisePeerURLs); err != nil {
		return nil, invalid(err)
	}
	if o.initialCluster, err = parseInitialCluster(o.InitialCluster); err != nil {
		return nil, invalid(err)
	}
	if _, ok := o.initialCluster[o.Name]; !ok {
		return nil, invalid(fmt.Errorf("server: --initial-cluster %q does not name this member %q", o.InitialCluster, o.Name))
	}
	if !sameURLs(o.initialCluster[o.Name], o.InitialAdvertisePeerURLs) {
		return nil, invalid(fmt.Errorf("server: --initial-cluster has %s=%v but --initial-advertise-peer-urls is %v", o.Name, o.initialCluster[o.Name], o.InitialAdvertisePeerURLs))
	}
	switch o.InitialClusterState {
	case ClusterStateNew, ClusterStateExisting:
	default:
		return nil, invalid(fmt.Errorf("server: --initial-cluster-state must be %q or %q, got %q", ClusterStateNew, ClusterStateExisting, o.InitialClusterState))
	}
	if o.CorruptCheckTime < 0 {
		return nil, invalid(fmt.Errorf("server: --corrupt-check-time %v is negative", o.CorruptCheckTime))
	}
	if o.CompactHashCheckTime < 0 {
		return nil, invalid(fmt.Errorf("server: --compact-hash-check-time %v is negative", o.CompactHashCheckTime))
	}
	if err := o.parseCompaction(); err != nil {
		return nil, invalid(err)
	}
	if err := o.parseTLS(); err != nil {
		return nil, invalid(err)
	}
	if err := auth.ValidateTokenOptions(o.AuthToken); err != nil {
		return nil, invalid(fmt.Errorf("server: --auth-token %q: %w", o.AuthToken, err))
	}
	if !validBcryptCost(o.BcryptCost) {
		o.Logger.Warn("use default bcrypt cost instead of the invalid given cost",
			"min-cost", bcrypt.MinCost, "max-cost", bcrypt.MaxCost, "default-cost", bcrypt.DefaultCost, "given-cost", o.BcryptCost)
		o.BcryptCost = bcrypt.DefaultCost
	}
	if o.AuthTokenTTL < 0 {
		return nil, invalid(fmt.Errorf("server: --auth-token-ttl cannot be negative, got %v", o.AuthTokenTTL))
	}
	return o, nil
}

// parseTLS checks the TLS settings: versions and cipher suites, and a
// certificate (or auto TLS) for every https URL, with etcd's errors.
func (c *config) parseTLS() error {
	var err error
	if c.tlsMin, err = tlsutil.ParseVersion(c.TLSMinVersion); err != nil {
		return err
	}
	if c.tlsMax, err = tlsutil.ParseVersion(c.TLSMaxVersion); err != nil {
		return err
	}
	if c.tlsMax != 0 && c.tlsMin > c.tlsMax {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", c.TLSMinVersion, c.TLSMaxVersion)
	}
	if c.tlsMin == tls.VersionTLS13 && len(c.CipherSuites) > 0 {
		return errors.New("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	if c.cipherSuites, err = tlsutil.ParseCipherSuites(c.CipherSuites); err != nil {
		return err
	}
	clientTLS := !c.ClientTLSInfo.Empty() || c.ClientAutoTLS
	for _, u := range append(slices.Clone(c.listenClient), c.listenHTTP...) {
		if u.Scheme == "https" && !clientTLS {
			return fmt.Errorf("TLS key/cert (--cert-file, --key-file) must be provided for client url %s with HTTPS scheme", u)
		}
	}
	for _, u := range c.listenMetrics {
		if u.Scheme == "https" && !clientTLS {
			return errors.New("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")
		}
	}
	if c.listenPeer.Scheme == "https" && c.PeerTLSInfo.Empty() && !c.PeerAutoTLS {
		return fmt.Errorf("cannot listen on TLS for %s: KeyFile and CertFile are not presented", c.listenPeer.Host)
	}
	for _, side := range []struct {
		name string
		info tlsutil.Info
	}{{"client", c.ClientTLSInfo}, {"peer", c.PeerTLSInfo}} {
		if !side.info.Empty() {
			if err := side.info.Validate(); err != nil {
				return fmt.Errorf("server: %s TLS: %w", side.name, err)
			}
		}
	}
	return nil
}

// tlsInfo completes a side's Info with the member-wide versions and
// cipher suites.
func (c *config) tlsInfo(i tlsutil.Info) tlsutil.Info {
	i.MinVersion, i.MaxVersion = c.tlsMin, c.tlsMax
	if len(i.CipherSuites) == 0 {
		i.CipherSuites = c.cipherSuites
	}
	return i
}

// advertiseClientURLs are the client URLs the member announces: the
// configured ones, or else those it listens on, with the ports it bound.
func (s *Server) advertiseClientURLs() []string {
	if len(s.cfg.advertiseClient) > 0 {
		// As etcd's URL flags keep them: each URL once, sorted.
		out := make([]string, 0, len(s.cfg.advertiseClient))
		for _, u := range s.cfg.advertiseClient {
			out = append(out, u.String())
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return s.clientURLs
}

func (c *config) socketOptions() sockopt.Options {
	return sockopt.Options{ReusePort: c.SocketReusePort, ReuseAddress: c.SocketReuseAddress}
}

// walDir is the raft log's directory: --wal-dir, or dflt, the directory
// replication gives (<data-dir>/member/raft/log).
func (c *config) walDir(dflt string) string {
	if c.WALDir != "" {
		return c.WALDir
	}
	return dflt
}

// checkWALDir refuses a --wal-dir without a raft log when dflt, the
// default directory, has one: the member would start from an empty log,
// forgetting its vote and entries.
func (c *config) checkWALDir(dflt string) error {
	if c.WALDir == "" || filepath.Clean(c.WALDir) == filepath.Clean(dflt) {
		return nil
	}
	if hasFiles(dflt) && !hasFiles(c.WALDir) {
		return fmt.Errorf("server: --wal-dir %q has no raft log, but %q has one: move it there first, or start without --wal-dir", c.WALDir, dflt)
	}
	return nil
}

func hasFiles(dir string) bool {
	ents, err := os.ReadDir(dir)
	return err == nil && len(ents) > 0
}

// reqTimeout is etcd's request timeout: 5s for queueing and disk, plus
// two election timeouts for an election.
func (c *config) reqTimeout() time.Duration { return 5*time.Second + 2*c.ElectionTimeout }

func (c *config) parseCompaction() error {
	r := c.AutoCompactionRetention
	switch c.AutoCompactionMode {
	case CompactionPeriodic:
		if h, err := strconv.ParseInt(r, 10, 64); err == nil {
			c.compactPeriod = time.Duration(h) * time.Hour
		} else if d, err := time.ParseDuration(r); err == nil {
			c.compactPeriod = d
		} else {
			return fmt.Errorf("server: --auto-compaction-retention %q: want hours or a duration", r)
		}
		if c.compactPeriod < 0 {
			return fmt.Errorf("server: --auto-compaction-retention %q is negative", r)
		}
	case CompactionRevision:
		n, err := strconv.ParseInt(r, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("server: --auto-compaction-retention %q: want a number of revisions", r)
		}
		c.compactRevs = n
	default:
		return fmt.Errorf("server: --auto-compaction-mode must be %q or %q, got %q", CompactionPeriodic, CompactionRevision, c.AutoCompactionMode)
	}
	return nil
}

func parseURLs(flag string, ss []string) ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("server: %s: %w", flag, err)
		}
		switch u.Scheme {
		case "http", "https":
		default:
			return nil, fmt.Errorf("server: %s %q: URL scheme must be http or https", flag, s)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return nil, fmt.Errorf("server: %s %q: expected host:port (%v)", flag, s, err)
		}
		if u.Path != "" { // etcd's types.NewURLs refuses "/" too
			return nil, fmt.Errorf("server: %s: URL must not contain a path: %s", flag, s)
		}
		out = append(out, u)
	}
	return out, nil
}

// parseInitialCluster parses "name=url,name=url" (a name may repeat with
// several URLs, as in etcd).
func parseInitialCluster(s string) (map[string][]string, error) {
	m := map[string][]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("server: --initial-cluster: bad entry %q, want name=URL", part)
		}
		if _, err := parseURLs("--initial-cluster", []string{u}); err != nil {
			return nil, err
		}
		m[name] = append(m[name], u)
	}
	if len(m) == 0 {
		return nil, errors.New("server: --initial-cluster is empty")
	}
	return m, nil
}

func sameURLs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// warningApplyDuration is WarningApplyDuration or, at 0, its default.
func (c *config) warningApplyDuration() time.Duration {
	if c.WarningApplyDuration == 0 {
		return replication.DefaultWarningApplyDuration
	}
	return c.WarningApplyDuration
}
