package main

import (
	"fmt"
	"math"
	"time"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/server"
)

// settings is what the flags, the ETCD_* environment or a config file
// set: the member's server.Config, and what cmd/strata uses itself.
type settings struct {
	server  server.Config
	backend string
	log     logSettings
}

// logSettings are the --log-* flags.
type logSettings struct {
	logger   string   // --logger: zap
	level    string   // --log-level
	format   string   // --log-format: json or console
	outputs  []string // --log-outputs: default, stderr, stdout or files
	rotate   bool     // --enable-log-rotation
	rotation string   // --log-rotation-config-json
}

// flagDef is one row of the flag table: one etcd v3.7.3 flag (or Strata's
// own), with etcd's name, type and default, and what Strata does with it.
// A flag is either honoured (apply copies its value into the settings) or
// refused (refuse says why and what to do instead): a refused flag is
// accepted at its default value, from whatever source, since Strata then
// does what etcd does; any other value stops start-up with one line,
// "--NAME <refuse>". To honour a refused flag, give its row an apply
// function in place of refuse.
type flagDef struct {
	name    string
	kind    kind
	def     string   // etcd's default, in the flag's own syntax
	choices []string // kSelect: the valid values; kURLs: values taken as they are
	group   string   // --help's group
	usage   string
	// helpDef, if set, is the default --help shows (e.g. "${name}.strata").
	helpDef string
	// yaml is the flag's key in a config file: "" for the flag's name,
	// "-" for none (etcd's YAML has no key for it), or "parent.key" for
	// a key of a nested map (client-transport-security.cert-file).
	yaml string
	// apply honours the flag: it copies v into s.
	apply func(s *settings, v *value) error
	// refuse, for a flag Strata does not honour, is the rest of the line
	// start-up fails with when the flag is given a value other than its
	// default.
	refuse string
	// strata marks Strata's own flags (not etcd's).
	strata bool
}

// Help groups, in etcd's order.
const (
	gMember     = "Member"
	gClustering = "Clustering"
	gSecurity   = "Security"
	gAuth       = "Auth"
	gMonitoring = "Profiling and Monitoring"
	gLogging    = "Logging"
	gTracing    = "Distributed tracing"
	gFeatures   = "Features"
	gUnsafe     = "Unsafe feature"
	gStrata     = "Strata"
	gOther      = "Other"
)

var groups = []string{gMember, gClustering, gSecurity, gAuth, gMonitoring, gLogging, gTracing, gFeatures, gUnsafe, gStrata, gOther}

// Reasons for refusal, shared by the rows of one feature.
const (
	noDiscovery = "is not supported: list the members with --initial-cluster"
	// noTLSYet is for the TLS settings of etcd's config file that have no
	// flag (client-transport-security.allowed-cn, ...).
	noTLSYet    = "is not supported yet: it has no flag, and Strata takes TLS settings from the flags' keys only"
	noRaftHTTP  = "is not supported: Strata's peers talk hashicorp/raft's TCP transport, not etcd's rafthttp"
	noTracing   = "is not supported: Strata exports no OpenTelemetry traces"
	noBbolt     = "is not supported: it tunes etcd's bbolt backend; Strata's engines are picked with --backend"
	noDowngrade = "is not supported: Strata has no downgrade"
)

// flagTable is every flag etcd v3.7.3's server accepts (embed.Config's
// AddFlags and etcdmain's newConfig; testdata/etcd-flags.txt lists them)
// and Strata's own.
var flagTable = []flagDef{
	// Member
	{name: "name", kind: kString, def: server.DefaultName, group: gMember, usage: "Human-readable name for this member.",
		apply: func(s *settings, v *value) error { s.server.Name = v.text; return nil }},
	{name: "data-dir", kind: kString, group: gMember, helpDef: "${name}.strata", usage: "Path to the data directory. Strata's layout is its own: the default differs from etcd's ${name}.etcd.",
		apply: func(s *settings, v *value) error { s.server.DataDir = v.text; return nil }},
	{name: "wal-dir", kind: kString, group: gMember, usage: "Path to the dedicated wal directory (Strata: of the raft log; default <data-dir>/member/raft/log).",
		apply: func(s *settings, v *value) error { s.server.WALDir = v.text; return nil }},
	{name: "snapshot-count", kind: kUint64, def: "10000", group: gMember, usage: "Number of committed transactions to trigger a snapshot.",
		apply: func(s *settings, v *value) error { s.server.SnapshotCount = v.u; return nil }},
	{name: "heartbeat-interval", kind: kUint, def: "100", group: gMember, usage: "Time (in milliseconds) of a heartbeat interval.",
		apply: func(s *settings, v *value) error {
			s.server.HeartbeatInterval = time.Duration(v.u) * time.Millisecond
			return nil
		}},
	{name: "election-timeout", kind: kUint, def: "1000", group: gMember, usage: "Time (in milliseconds) for an election to timeout. See tuning documentation for details.",
		apply: func(s *settings, v *value) error {
			s.server.ElectionTimeout = time.Duration(v.u) * time.Millisecond
			return nil
		}},
	{name: "initial-election-tick-advance", kind: kBool, def: "true", group: gMember, usage: "Whether to fast-forward initial election ticks on boot for faster election.",
		refuse: "is not supported: hashicorp/raft has no election ticks to fast-forward"},
	{name: "listen-peer-urls", kind: kURLs, def: "http://localhost:2380", group: gMember, usage: "List of URLs to listen on for peer traffic.",
		apply: func(s *settings, v *value) error { s.server.ListenPeerURLs = v.list; return nil }},
	{name: "listen-client-urls", kind: kURLs, def: "http://localhost:2379", group: gMember, usage: "List of URLs to listen on for client grpc traffic and http as long as --listen-client-http-urls is not specified.",
		apply: func(s *settings, v *value) error { s.server.ListenClientURLs = v.list; return nil }},
	{name: "listen-client-http-urls", kind: kURLs, group: gMember, usage: "List of URLs to listen on for http only client traffic. Enabling this flag removes http services from --listen-client-urls.",
		apply: func(s *settings, v *value) error { s.server.ListenClientHTTPURLs = v.list; return nil }},
	// Strata's raft snapshots (engine dumps) and raft log segment files;
	// see server.Config.MaxSnapshots and MaxWALs.
	{name: "max-snapshots", kind: kUint, def: "5", group: gMember, usage: "Maximum number of snapshot files to retain (0 is unlimited). Deprecated in v3.6 and will be decommissioned in v3.8.",
		apply: func(s *settings, v *value) error { s.server.MaxSnapshots = retainCount(v.u); return nil }},
	{name: "max-wals", kind: kUint, def: "5", group: gMember, usage: "Maximum number of wal files to retain (0 is unlimited).",
		apply: func(s *settings, v *value) error { s.server.MaxWALs = retainCount(v.u); return nil }},
	{name: "memory-mlock", kind: kBool, def: "false", group: gMember, usage: "Enable to enforce etcd pages (in particular bbolt) to stay in RAM.",
		apply: func(s *settings, v *value) error { s.server.EngineOptions.Mlock = v.b; return nil }},
	{name: "quota-backend-bytes", kind: kInt64, def: "0", group: gMember, usage: "Sets the maximum size (in bytes) that the etcd backend database may consume. Exceeding this triggers an alarm and puts etcd in read-only mode. Set to 0 to use the default 2GiB limit.",
		apply: func(s *settings, v *value) error { s.server.QuotaBackendBytes = v.i; return nil }},
	{name: "backend-bbolt-freelist-type", kind: kString, group: gMember, helpDef: "map", usage: "BackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types).",
		refuse: noBbolt},
	{name: "backend-batch-interval", kind: kDuration, def: "0s", group: gMember, usage: "BackendBatchInterval is the maximum time before commit the backend transaction.",
		apply: func(s *settings, v *value) error { s.server.EngineOptions.BatchInterval = v.d; return nil }},
	{name: "backend-batch-limit", kind: kInt, def: "0", group: gMember, usage: "BackendBatchLimit is the maximum operations before commit the backend transaction.",
		apply: func(s *settings, v *value) error { s.server.EngineOptions.BatchLimit = int(v.i); return nil }},
	{name: "max-txn-ops", kind: kUint, def: "128", group: gMember, usage: "Maximum number of operations permitted in a transaction.",
		apply: func(s *settings, v *value) error { s.server.MaxTxnOps = uint(v.u); return nil }},
	{name: "max-request-bytes", kind: kUint, def: "1572864", group: gMember, usage: "Maximum client request size in bytes the server will accept.",
		apply: func(s *settings, v *value) error { s.server.MaxRequestBytes = uint(v.u); return nil }},
	{name: "max-concurrent-streams", kind: kUint32, def: "4294967295", group: gMember, helpDef: "math.MaxUint32", usage: "Maximum concurrent streams that each client can open at a time.",
		apply: func(s *settings, v *value) error {
			// etcd passes 0 to gRPC, which then takes its own default.
			s.server.MaxConcurrentStreams = uint32(v.u)
			return nil
		}},
	{name: "grpc-keepalive-min-time", kind: kDuration, def: "5s", group: gMember, usage: "Minimum duration interval that a client should wait before pinging server.",
		apply: func(s *settings, v *value) error { s.server.GRPCKeepAliveMinTime = offIfZero(v.d); return nil }},
	{name: "grpc-keepalive-interval", kind: kDuration, def: "2h", group: gMember, usage: "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).",
		apply: func(s *settings, v *value) error { s.server.GRPCKeepAliveInterval = offIfZero(v.d); return nil }},
	{name: "grpc-keepalive-timeout", kind: kDuration, def: "20s", group: gMember, usage: "Additional duration of wait before closing a non-responsive connection (0 to disable).",
		apply: func(s *settings, v *value) error { s.server.GRPCKeepAliveTimeout = offIfZero(v.d); return nil }},
	{name: "socket-reuse-port", kind: kBool, def: "false", group: gMember, yaml: "socket-options.reuse-port", usage: "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use.",
		apply: func(s *settings, v *value) error { s.server.SocketReusePort = v.b; return nil }},
	{name: "socket-reuse-address", kind: kBool, def: "false", group: gMember, yaml: "socket-options.reuse-address", usage: "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in TIME_WAIT state.",
		apply: func(s *settings, v *value) error { s.server.SocketReuseAddress = v.b; return nil }},
	{name: "enable-grpc-gateway", kind: kBool, def: "true", group: gMember, usage: "Enable GRPC gateway.",
		apply: func(s *settings, v *value) error { on := v.b; s.server.EnableGRPCGateway = &on; return nil }},
	{name: "raft-read-timeout", kind: kDuration, def: "5s", group: gMember, yaml: "-", usage: "Read timeout set on each rafthttp connection",
		refuse: noRaftHTTP},
	{name: "raft-write-timeout", kind: kDuration, def: "5s", group: gMember, yaml: "-", usage: "Write timeout set on each rafthttp connection",
		refuse: noRaftHTTP},
	{name: "feature-gates", kind: kFeatureGates, group: gMember, usage: "A set of key=value pairs that describe server level feature gates for alpha/experimental features.",
		apply: applyFeatureGates},

	// Clustering
	{name: "initial-advertise-peer-urls", kind: kURLs, def: "http://localhost:2380", group: gClustering, usage: "List of this member's peer URLs to advertise to the rest of the cluster.",
		apply: func(s *settings, v *value) error { s.server.InitialAdvertisePeerURLs = v.list; return nil }},
	{name: "initial-cluster", kind: kString, def: "default=http://localhost:2380", group: gClustering, usage: "Initial cluster configuration for bootstrapping.",
		apply: func(s *settings, v *value) error { s.server.InitialCluster = v.text; return nil }},
	{name: "initial-cluster-state", kind: kSelect, def: server.ClusterStateNew, choices: []string{server.ClusterStateNew, server.ClusterStateExisting}, group: gClustering,
		usage: "Initial cluster state ('new' when bootstrapping a new cluster or 'existing' when adding new members to an existing cluster). After successful initialization (bootstrapping or adding), flag is ignored on restarts.",
		apply: func(s *settings, v *value) error { s.server.InitialClusterState = v.text; return nil }},
	{name: "initial-cluster-token", kind: kString, def: server.DefaultInitialClusterToken, group: gClustering, usage: "Initial cluster token for the etcd cluster during bootstrap.",
		apply: func(s *settings, v *value) error { s.server.InitialClusterToken = v.text; return nil }},
	{name: "advertise-client-urls", kind: kURLs, def: "http://localhost:2379", group: gClustering, usage: "List of this member's client URLs to advertise to the public.",
		apply: func(s *settings, v *value) error { s.server.AdvertiseClientURLs = v.list; return nil }},
	{name: "discovery-token", kind: kString, group: gClustering, yaml: "discovery-config.token", usage: "V3 discovery: discovery token for the etcd cluster to be bootstrapped.", refuse: noDiscovery},
	{name: "discovery-endpoints", kind: kUniqueStrings, group: gClustering, yaml: "discovery-config.client.endpoints", usage: "V3 discovery: List of gRPC endpoints of the discovery service.", refuse: noDiscovery},
	{name: "discovery-dial-timeout", kind: kDuration, def: "2s", group: gClustering, yaml: "-", usage: "V3 discovery: dial timeout for client connections.", refuse: noDiscovery},
	{name: "discovery-request-timeout", kind: kDuration, def: "5s", group: gClustering, yaml: "-", usage: "V3 discovery: timeout for discovery requests (excluding dial timeout).", refuse: noDiscovery},
	{name: "discovery-keepalive-time", kind: kDuration, def: "2s", group: gClustering, yaml: "-", usage: "V3 discovery: keepalive time for client connections.", refuse: noDiscovery},
	{name: "discovery-keepalive-timeout", kind: kDuration, def: "6s", group: gClustering, yaml: "-", usage: "V3 discovery: keepalive timeout for client connections.", refuse: noDiscovery},
	{name: "discovery-insecure-transport", kind: kBool, def: "true", group: gClustering, yaml: "-", usage: "V3 discovery: disable transport security for client connections.", refuse: noDiscovery},
	{name: "discovery-insecure-skip-tls-verify", kind: kBool, def: "false", group: gClustering, yaml: "-", usage: "V3 discovery: skip server certificate verification (CAUTION: this option should be enabled only for testing purposes).", refuse: noDiscovery},
	{name: "discovery-cert", kind: kString, group: gClustering, yaml: "-", usage: "V3 discovery: identify secure client using this TLS certificate file.", refuse: noDiscovery},
	{name: "discovery-key", kind: kString, group: gClustering, yaml: "-", usage: "V3 discovery: identify secure client using this TLS key file.", refuse: noDiscovery},
	{name: "discovery-cacert", kind: kString, group: gClustering, yaml: "-", usage: "V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle.", refuse: noDiscovery},
	{name: "discovery-user", kind: kString, group: gClustering, yaml: "-", usage: "V3 discovery: username[:password] for authentication (prompt if password is not supplied).", refuse: noDiscovery},
	{name: "discovery-password", kind: kString, group: gClustering, yaml: "-", usage: "V3 discovery: password for authentication (if this option is used, --user option shouldn't include password).", refuse: noDiscovery},
	{name: "discovery-fallback", kind: kSelect, def: "exit", choices: []string{"exit", "proxy"}, group: gClustering, yaml: "-", usage: "Expected behavior ('exit') when discovery services fails. Note that v2 proxy is removed.", refuse: noDiscovery},
	{name: "discovery-srv", kind: kString, group: gClustering, usage: "DNS srv domain used to bootstrap the cluster.", refuse: noDiscovery},
	{name: "discovery-srv-name", kind: kString, group: gClustering, usage: "Suffix to the dns srv name queried when bootstrapping.", refuse: noDiscovery},
	{name: "strict-reconfig-check", kind: kBool, def: "true", group: gClustering, usage: "Reject reconfiguration requests that would cause quorum loss.",
		apply: func(s *settings, v *value) error { s.server.DisableStrictReconfigCheck = !v.b; return nil }},
	{name: "pre-vote", kind: kBool, def: "true", group: gClustering, usage: "Enable the raft Pre-Vote algorithm to prevent disruption when a node that has been partitioned away rejoins the cluster.",
		apply: func(s *settings, v *value) error { s.server.DisablePreVote = !v.b; return nil }},
	{name: "auto-compaction-retention", kind: kString, def: "0", group: gClustering, usage: "Auto compaction retention length. 0 means disable auto compaction.",
		apply: func(s *settings, v *value) error { s.server.AutoCompactionRetention = v.text; return nil }},
	{name: "auto-compaction-mode", kind: kString, def: server.CompactionPeriodic, group: gClustering, usage: "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.",
		apply: func(s *settings, v *value) error { s.server.AutoCompactionMode = v.text; return nil }},
	{name: "v2-deprecation", kind: kSelect, def: "write-only", choices: []string{"write-only", "write-only-skip-check", "write-only-drop-data", "gone"}, group: gClustering,
		usage: "Phase of v2store deprecation. Deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
		// etcd ignores the value too: Strata has no v2 store.
		apply: func(*settings, *value) error { return nil }},

	// Security
	{name: "cert-file", kind: kString, group: gSecurity, yaml: "client-transport-security.cert-file", usage: "Path to the client server TLS cert file.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.CertFile = v.text; return nil }},
	{name: "key-file", kind: kString, group: gSecurity, yaml: "client-transport-security.key-file", usage: "Path to the client server TLS key file.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.KeyFile = v.text; return nil }},
	{name: "client-cert-auth", kind: kBool, def: "false", group: gSecurity, yaml: "client-transport-security.client-cert-auth", usage: "Enable client cert authentication.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.ClientCertAuth = v.b; return nil }},
	{name: "client-cert-file", kind: kString, group: gSecurity, yaml: "client-transport-security.client-cert-file", usage: "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.ClientCertFile = v.text; return nil }},
	{name: "client-key-file", kind: kString, group: gSecurity, yaml: "client-transport-security.client-key-file", usage: "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.ClientKeyFile = v.text; return nil }},
	{name: "client-crl-file", kind: kString, group: gSecurity, yaml: "-", usage: "Path to the client certificate revocation list file.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.CRLFile = v.text; return nil }},
	{name: "client-cert-allowed-hostname", kind: kStrings, group: gSecurity, yaml: "client-transport-security.allowed-hostname", usage: "Comma-separated list of SAN hostnames for client cert authentication.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.AllowedHostnames = v.list; return nil }},
	{name: "trusted-ca-file", kind: kString, group: gSecurity, yaml: "client-transport-security.trusted-ca-file", usage: "Path to the client server TLS trusted CA cert file.",
		apply: func(s *settings, v *value) error { s.server.ClientTLSInfo.TrustedCAFile = v.text; return nil }},
	{name: "auto-tls", kind: kBool, def: "false", group: gSecurity, yaml: "client-transport-security.auto-tls", usage: "Client TLS using generated certificates.",
		apply: func(s *settings, v *value) error { s.server.ClientAutoTLS = v.b; return nil }},
	{name: "peer-cert-file", kind: kString, group: gSecurity, yaml: "peer-transport-security.cert-file", usage: "Path to the peer server TLS cert file.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.CertFile = v.text; return nil }},
	{name: "peer-key-file", kind: kString, group: gSecurity, yaml: "peer-transport-security.key-file", usage: "Path to the peer server TLS key file.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.KeyFile = v.text; return nil }},
	{name: "peer-client-cert-auth", kind: kBool, def: "false", group: gSecurity, yaml: "peer-transport-security.client-cert-auth", usage: "Enable peer client cert authentication.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.ClientCertAuth = v.b; return nil }},
	{name: "peer-client-cert-file", kind: kString, group: gSecurity, yaml: "peer-transport-security.client-cert-file", usage: "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.ClientCertFile = v.text; return nil }},
	{name: "peer-client-key-file", kind: kString, group: gSecurity, yaml: "peer-transport-security.client-key-file", usage: "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.ClientKeyFile = v.text; return nil }},
	{name: "peer-trusted-ca-file", kind: kString, group: gSecurity, yaml: "peer-transport-security.trusted-ca-file", usage: "Path to the peer server TLS trusted CA file.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.TrustedCAFile = v.text; return nil }},
	{name: "peer-cert-allowed-cn", kind: kStrings, group: gSecurity, yaml: "peer-transport-security.allowed-cn", usage: "Comma-separated list of allowed CNs for inter-peer TLS authentication.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.AllowedCNs = v.list; return nil }},
	{name: "peer-cert-allowed-hostname", kind: kStrings, group: gSecurity, yaml: "peer-transport-security.allowed-hostname", usage: "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.AllowedHostnames = v.list; return nil }},
	{name: "peer-auto-tls", kind: kBool, def: "false", group: gSecurity, yaml: "peer-transport-security.auto-tls", usage: "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.",
		apply: func(s *settings, v *value) error { s.server.PeerAutoTLS = v.b; return nil }},
	{name: "self-signed-cert-validity", kind: kUint, def: "1", group: gSecurity, usage: "The validity period of the client and peer certificates that are automatically generated by etcd when you specify ClientAutoTLS and PeerAutoTLS, the unit is year, and the default is 1.",
		apply: func(s *settings, v *value) error { s.server.SelfSignedCertValidity = uint(v.u); return nil }},
	{name: "peer-crl-file", kind: kString, group: gSecurity, yaml: "-", usage: "Path to the peer certificate revocation list file.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.CRLFile = v.text; return nil }},
	{name: "cipher-suites", kind: kStrings, group: gSecurity, usage: "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).",
		apply: func(s *settings, v *value) error { s.server.CipherSuites = v.list; return nil }},
	{name: "peer-skip-client-san-verification", kind: kBool, def: "false", group: gSecurity, yaml: "peer-transport-security.skip-client-san-verification", usage: "Skip verification of SAN field in client certificate for peer connections.",
		apply: func(s *settings, v *value) error { s.server.PeerTLSInfo.SkipClientSANVerify = v.b; return nil }},
	{name: "tls-min-version", kind: kString, def: "TLS1.2", group: gSecurity, usage: "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.",
		apply: func(s *settings, v *value) error { s.server.TLSMinVersion = v.text; return nil }},
	{name: "tls-max-version", kind: kString, group: gSecurity, usage: "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty will be auto-populated by Go).",
		apply: func(s *settings, v *value) error { s.server.TLSMaxVersion = v.text; return nil }},
	{name: "cors", kind: kURLs, def: "*", choices: []string{"*"}, group: gSecurity, usage: "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).",
		apply: func(s *settings, v *value) error { s.server.CORS = v.list; return nil }},
	{name: "host-whitelist", kind: kUniqueStrings, def: "*", group: gSecurity, usage: "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).",
		apply: func(s *settings, v *value) error { s.server.HostWhitelist = v.list; return nil }},

	// Auth
	{name: "auth-token", kind: kString, def: "simple", group: gAuth, usage: "Specify a v3 authentication token type and its options ('simple' or 'jwt').",
		apply: func(s *settings, v *value) error { s.server.AuthToken = v.text; return nil }},
	{name: "bcrypt-cost", kind: kUint, def: "10", group: gAuth, usage: "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.",
		apply: func(s *settings, v *value) error { s.server.BcryptCost = int(min(v.u, 1<<16)); return nil }},
	{name: "auth-token-ttl", kind: kUint, def: "300", group: gAuth, usage: "Time (in seconds) of the auth-token-ttl.",
		apply: func(s *settings, v *value) error {
			s.server.AuthTokenTTL = time.Duration(min(v.u, uint64(math.MaxInt64/time.Second))) * time.Second
			return nil
		}},

	// Profiling and Monitoring
	{name: "enable-pprof", kind: kBool, def: "false", group: gMonitoring, usage: "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"",
		apply: func(s *settings, v *value) error { s.server.EnablePprof = v.b; return nil }},
	{name: "metrics", kind: kString, def: "basic", group: gMonitoring, usage: "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics.",
		apply: func(s *settings, v *value) error { s.server.Metrics = v.text; return nil }},
	{name: "listen-metrics-urls", kind: kURLs, group: gMonitoring, usage: "List of URLs to listen on for the /metrics and /health endpoints. For https, the client URL TLS info is used.",
		apply: func(s *settings, v *value) error { s.server.ListenMetricsURLs = v.list; return nil }},

	// Logging
	{name: "logger", kind: kString, def: "zap", group: gLogging, usage: "Currently only supports 'zap' for structured logging.",
		apply: func(s *settings, v *value) error { s.log.logger = v.text; return nil }},
	{name: "log-outputs", kind: kUniqueStrings, def: "default", group: gLogging, usage: "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets.",
		apply: func(s *settings, v *value) error { s.log.outputs = v.list; return nil }},
	{name: "log-level", kind: kString, def: "info", group: gLogging, usage: "Configures log level. Only supports debug, info, warn, error, panic, or fatal.",
		apply: func(s *settings, v *value) error { s.log.level = v.text; return nil }},
	{name: "log-format", kind: kString, def: "json", group: gLogging, usage: "Configures log format. Only supports json, console.",
		apply: func(s *settings, v *value) error { s.log.format = v.text; return nil }},
	{name: "enable-log-rotation", kind: kBool, def: "false", group: gLogging, usage: "Enable log rotation of a single log-outputs file target.",
		apply: func(s *settings, v *value) error { s.log.rotate = v.b; return nil }},
	{name: "log-rotation-config-json", kind: kString, def: `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`, group: gLogging,
		usage: "Configures log rotation if enabled with a JSON logger config. MaxSize(MB), MaxAge(days,0=no limit), MaxBackups(0=no limit), LocalTime(use computers local time), Compress(gzip)",
		apply: func(s *settings, v *value) error { s.log.rotation = v.text; return nil }},
	{name: "warning-unary-request-duration", kind: kDuration, def: "300ms", group: gLogging, usage: "Set time duration after which a warning is logged if a unary request takes more than this duration.",
		apply: func(s *settings, v *value) error { s.server.WarningUnaryRequestDuration = v.d; return nil }},

	// Distributed tracing
	{name: "enable-distributed-tracing", kind: kBool, def: "false", group: gTracing, usage: "Enable distributed tracing.", refuse: noTracing},
	{name: "distributed-tracing-address", kind: kString, def: "localhost:4317", group: gTracing, usage: "Distributed tracing collector address.", refuse: noTracing},
	{name: "distributed-tracing-service-name", kind: kString, def: "etcd", group: gTracing, usage: "Distributed tracing service name, must be same across all etcd instances.", refuse: noTracing},
	{name: "distributed-tracing-instance-id", kind: kString, group: gTracing, usage: "Distributed tracing instance ID, must be unique per each etcd instance.", refuse: noTracing},
	{name: "distributed-tracing-sampling-rate", kind: kInt, def: "0", group: gTracing, usage: "Number of samples to collect per million spans for distributed tracing.", refuse: noTracing},

	// Features
	{name: "corrupt-check-time", kind: kDuration, def: "0s", group: gFeatures, usage: "Duration of time between cluster corruption check passes.",
		apply: func(s *settings, v *value) error { s.server.CorruptCheckTime = v.d; return nil }},
	{name: "compact-hash-check-time", kind: kDuration, def: "1m", group: gFeatures, usage: "Duration of time between leader checks followers compaction hashes.",
		apply: func(s *settings, v *value) error {
			if v.d <= 0 {
				return fmt.Errorf("--compact-hash-check-time must be >0 (set to %v)", v.d)
			}
			s.server.CompactHashCheckTime = v.d
			return nil
		}},
	{name: "compaction-batch-limit", kind: kInt, def: "0", group: gFeatures, helpDef: "1000", usage: "CompactionBatchLimit sets the maximum revisions deleted in each compaction batch.",
		// etcd: 0 (or less) is the default, 1000; so is server.Config's.
		apply: func(s *settings, v *value) error { s.server.CompactionBatchLimit = int(max(v.i, 0)); return nil }},
	{name: "compaction-sleep-interval", kind: kDuration, def: "0s", group: gFeatures, helpDef: "10ms", usage: "Sets the sleep interval between each compaction batch.",
		// etcd: 0 is the default, 10ms; a negative value does not pause.
		apply: func(s *settings, v *value) error { s.server.CompactionSleepInterval = v.d; return nil }},
	{name: "watch-progress-notify-interval", kind: kDuration, def: "0s", group: gFeatures, helpDef: "10m", usage: "Duration of periodical watch progress notification.",
		apply: func(s *settings, v *value) error {
			// etcd: 0 is the default, 10 minutes.
			s.server.WatchProgressNotifyInterval = v.d
			if v.d == 0 {
				s.server.WatchProgressNotifyInterval = 10 * time.Minute
			}
			return nil
		}},
	{name: "warning-apply-duration", kind: kDuration, def: "100ms", group: gFeatures, usage: "Warning is generated if requests take more than this duration.",
		apply: func(s *settings, v *value) error { s.server.WarningApplyDuration = v.d; return nil }},
	{name: "bootstrap-defrag-threshold-megabytes", kind: kUint, def: "0", group: gFeatures, usage: "Enable the defrag during etcd server bootstrap on condition that it will free at least the provided threshold of disk space. Needs to be set to non-zero value to take effect.",
		apply: func(s *settings, v *value) error { s.server.BootstrapDefragThresholdMegabytes = uint(v.u); return nil }},
	{name: "max-learners", kind: kInt, def: "1", group: gFeatures, usage: "Set the max number of learner members allowed in the cluster membership.",
		apply: func(s *settings, v *value) error {
			if v.i < 1 {
				// etcd's server refuses every learner then; Strata's
				// Config takes 0 for its default.
				return fmt.Errorf("--max-learners %d is not supported: at least 1 learner is allowed", v.i)
			}
			s.server.MaxLearners = int(v.i)
			return nil
		}},
	{name: "downgrade-check-time", kind: kDuration, def: "5s", group: gFeatures, usage: "Duration of time between two downgrade status checks.", refuse: noDowngrade},
	{name: "snapshot-catchup-entries", kind: kUint64, def: "5000", group: gFeatures, usage: "Number of entries for a slow follower to catch up after compacting the raft storage entries.",
		apply: func(s *settings, v *value) error { s.server.SnapshotCatchUpEntries = v.u; return nil }},

	// Unsafe feature
	{name: "force-new-cluster", kind: kBool, def: "false", group: gUnsafe, usage: "Force to create a new one-member cluster.",
		apply: func(s *settings, v *value) error { s.server.ForceNewCluster = v.b; return nil }},
	{name: "unsafe-no-fsync", kind: kBool, def: "false", group: gUnsafe, usage: "Disables fsync, unsafe, will cause data loss.",
		apply: func(s *settings, v *value) error { s.server.UnsafeNoFsync = v.b; return nil }},

	// Strata's own
	{name: "backend", kind: kString, def: backends.Default, group: gStrata, strata: true, usage: "Storage engine (Strata's own flag; environment STRATA_BACKEND): " + backendNames() + ".",
		apply: func(s *settings, v *value) error { s.backend = v.text; return nil }},
}

// etcdmain's own flags, handled by parse: --config-file, --version, and
// the flags etcd accepts and ignores with a warning.
var (
	configFileFlag = flagDef{name: "config-file", kind: kString, group: gOther, yaml: "-",
		usage: "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored."}
	versionFlag = flagDef{name: "version", kind: kBool, def: "false", group: gOther, yaml: "-", usage: "Print the version and exit."}
	// ignoredFlags are flags of old etcd versions that etcd v3.7.3 still
	// accepts and ignores, warning "flag is no longer supported - ignoring".
	ignoredFlags = []string{"cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
		"max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout", "retry-interval",
		"snapshot", "v", "vv", "test.coverprofile", "test.outputdir"}
	// deprecatedFlags are warned about when set, with etcd's words.
	deprecatedFlags = map[string]string{
		"max-snapshots":  "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8.",
		"v2-deprecation": "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
	}
)

// featureDefaults are etcd v3.7.3's server feature gates and their
// defaults (server/features).
var featureDefaults = map[string]bool{
	"StopGRPCServiceOnDefrag":      false,
	"InitialCorruptCheck":          false,
	"CompactHashCheck":             false,
	"TxnModeWriteWithSharedBuffer": true,
	"LeaseCheckpoint":              false,
	"LeaseCheckpointPersist":       false,
	"SetMemberLocalAddr":           false,
	"FastLeaseKeepAlive":           true,
	"PriorityRequest":              false,
}

// featureGates says, for each feature gate Strata honours at a value
// other than its default, how; the others are refused at such a value
// with featureRefusals' reason.
var featureGates = map[string]func(s *settings, on bool) error{
	"InitialCorruptCheck": func(s *settings, on bool) error { s.server.InitialCorruptCheck = on; return nil },
	"CompactHashCheck":    func(s *settings, on bool) error { s.server.CompactHashCheck = on; return nil },
	// TxnModeWriteWithSharedBuffer (default on) is an etcd buffer
	// optimisation: turning it off changes nothing Strata shows.
	"TxnModeWriteWithSharedBuffer": func(*settings, bool) error { return nil },
}

var featureRefusals = map[string]string{
	"StopGRPCServiceOnDefrag": "is not supported yet: a defragmenting member keeps serving",
	"LeaseCheckpoint":         "is not supported: Strata's leader keeps lease clocks without checkpoints",
	"LeaseCheckpointPersist":  "is not supported: Strata's leader keeps lease clocks without checkpoints",
	"SetMemberLocalAddr":      "is not supported: Strata's peers dial from the default local address",
	"FastLeaseKeepAlive":      "is not supported: Strata has one lease keep-alive path",
	"PriorityRequest":         "is not supported: Strata has no request priorities",
}

func applyFeatureGates(s *settings, v *value) error {
	for _, g := range v.gates {
		if featureDefaults[g.name] == g.on {
			continue
		}
		if f, ok := featureGates[g.name]; ok {
			if err := f(s, g.on); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("--feature-gates=%s=%t %s", g.name, g.on, featureRefusals[g.name])
	}
	return nil
}

func backendNames() string {
	var s string
	for i, n := range backends.Registry().Names() {
		if i > 0 {
			s += "|"
		}
		s += n
	}
	return s
}

// retainCount maps etcd's count of files to retain, 0 for unlimited, to
// server.Config's, whose zero value means the default and a negative value
// unlimited. Counts past math.MaxInt are as good as unlimited.
func retainCount(n uint64) int {
	if n == 0 || n > math.MaxInt {
		return -1
	}
	return int(n)
}

// offIfZero maps etcd's 0 (the setting is off) to server.Config's
// negative value, whose zero value means the default.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
