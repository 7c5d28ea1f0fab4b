// Package server serves etcd's v3 API over a replication.Node, so that
// etcdctl, clientv3 and kube-apiserver work against a Strata cluster
// unmodified. [Start] takes etcd's configuration ([Config] mirrors etcd's
// flags) and returns a running member; cmd/strata binds the flags.
//
// # Services
//
// KV (Range, RangeStream, Put, DeleteRange, Txn, Compact), Watch, Lease, Lock,
// Election, Maintenance (Status, Hash, HashKV, Alarm, Defragment, Snapshot, MoveLeader,
// Downgrade),
// Cluster (MemberList, MemberAdd of a learner or a voter under etcd's
// strict reconfiguration check, MemberPromote, MemberRemove, MemberUpdate),
// Auth (etcd's RBAC: see below) and grpc.health.v1 (SERVING once ready)
// are served. Downgrade answers validate and cancel as etcd's
// for the cluster version Strata reports and refuses enable after
// validating (see Versions below). Hash is a CRC-32 of the member's whole keyspace but
// its applied index (mvcc.Store.HashAll), equal on members at one
// revision.
//
// etcd's gRPC gateway (EnableGRPCGateway, on by default) serves the same
// services as JSON under /v3/ on the client URLs (/v3/kv/range,
// /v3/kv/put, /v3/watch, /v3/lease/grant, /v3/maintenance/status, ...; bytes
// in base64), from etcd's generated gateway packages, as a gRPC client of
// the member itself.
//
// Requests pass etcd's gRPC-layer checks (mvcc.Validate*, --max-txn-ops)
// before anything else. Reads (Range, and read-only Txns as etcd serves
// them) use the local store, after a linearizable read barrier unless
// serializable. Writes are proposed through any member (a follower
// forwards them to the leader), bounded by etcd's request timeout (5s + 2
// election timeouts), after the --max-request-bytes check ("etcdserver:
// request is too large"). The gRPC receive limit is --max-request-bytes +
// 512 KiB, as etcd's.
//
// # Errors
//
// One function, togRPCError, turns every error into etcd's gRPC error
// (rpctypes.ErrGRPC*: the exact code and text clientv3 maps back). Context
// errors of reads pass through, as etcd's do; a proposal whose client
// cancelled answers "request canceled", one that timed out "request timed
// out". A client never sees "not leader": a node without a reachable
// leader answers Unavailable ("no leader", "leader changed"), which
// clients retry elsewhere.
//
// # Watch
//
// A Watch stream is an mvcc.WatchStream on the member's store, which
// interprets the requests (create, cancel, progress) and produces etcd's
// responses in etcd's order, refusals included; the server forwards them
// with the cluster and member IDs and the raft term filled in. Progress
// notifications of progress_notify watchers come every
// --watch-progress-notify-interval (10 minutes); fragment watchers get
// responses split from --max-request-bytes + 512 KiB on, as etcd's. Any
// member serves watches, a follower from its own store as it applies.
// As etcd, the stream goes on after the client closes its sending side,
// until the client goes away.
//
// A snapshot restore on a member (a follower that fell too far behind)
// replaces its store, which closes the store's watch streams: the gRPC
// stream then ends with Unavailable ("etcdserver: watch stream closed:
// the store was replaced by a snapshot restore"), on which clientv3
// reopens its watches from the revision after the last event it got. A
// member stopping ends them with "etcdserver: server stopped".
//
// Streams asking for a leader (clientv3.WithRequireLeader, the
// "hasleader" metadata) are refused with "etcdserver: no leader" while
// the member knows none, and ended with it once the member has seen none
// for three election timeouts in a row, as etcd does.
//
// # Leases
//
// LeaseGrant (ID 0: the store picks one) and LeaseRevoke are proposed
// like writes. LeaseKeepAlive and LeaseTimeToLive go to the leader, whose
// store keeps the leases' clocks (a follower forwards them); as etcd, a
// keep-alive of an unknown or expired lease answers TTL 0 and a
// time-to-live question TTL -1, not errors. LeaseLeases lists the local
// store's leases after a linearizable read barrier.
//
// # Lock and Election
//
// The v3lock and v3election services are built as etcd builds them: from
// clientv3's concurrency recipes (a session on a lease, keys ordered by
// create revision, a watch on the predecessor), run by an in-process
// clientv3 client of the member's own first client URL, made on first
// use and closed first by Close. Their errors are clientv3's, as etcd's.
// (etcdctl lock and elect run the same recipes client-side and do not use
// these services.)
//
// # Auth
//
// Users, roles and permissions live in the auth package's store, applied
// by every member from the log (each Auth RPC, reads included, is a raft
// request kind, as in etcd) and kept in the store's auxiliary area, so
// they travel in snapshots and backups. Passwords are bcrypt-hashed
// (--bcrypt-cost) by the member that takes the request, before it is
// proposed. Tokens: --auth-token=simple (the default: a random prefix
// and the raft index of the authentication, known to every member that
// applied it, in memory only, expiring after --auth-token-ttl unused) or
// jwt,sign-method=...,priv-key=...,pub-key=...[,ttl=...] (signed claims
// any member verifies). Without a token, on a connection whose client
// certificate was verified, the certificate's common name is the user,
// as with etcd's --client-cert-auth.
//
// Who may do what is etcd's: every client request proposed carries, in
// its header, the caller's user name and the auth revision it was checked
// at, and is checked when applied (keys of puts, deletes, ranges and
// every branch of a txn, nested too; the keys attached to a revoked or
// attached lease; the root role for auth management), so a request
// forwarded to the leader is checked with its caller's identity. A token
// older than a permission change fails with "etcdserver: revision of
// auth store is old". Local reads (ranges, read-only txns), watch
// creation, lease keep-alives and time-to-live with keys are checked by
// the member that serves them; compaction, defragment, snapshot, hashes,
// alarm changes, move-leader, downgrade and member changes need the root
// role; lease grants and revokes, status and alarm lists need a user. The
// Lock and Election services pass the caller's token on to the member's
// own services (a session's keep-alives carry none, as in etcd).
//
// # Identity
//
// Member and cluster IDs are computed as etcd computes them from the same
// flags (member: sha1 of the sorted peer URLs and --initial-cluster-token;
// cluster: sha1 of the initial members' IDs), so a Strata member started
// with etcd's flags has etcd's IDs. They are stored in the data directory
// (strata-member.json) on the first start and kept from then on. The raft
// server ID of a member is its member ID in hex, so the raft leader's ID
// is the leader's member ID. A member joining with
// --initial-cluster-state=existing (after MemberAdd) computes the cluster
// ID from the other members of its --initial-cluster, which is right when
// the cluster's membership did not change since it was bootstrapped.
//
// # Versions
//
// Status, /version and the version metrics report what etcd v3.7.3
// reports: server version 3.7.3, cluster and storage version 3.7.0
// (ServerVersion, ClusterVersion, StorageVersion; kube-apiserver parses
// them as semver to enable features). Every etcd 3.7 addition that a
// client can see is served, each checked against an embedded etcd v3.7.3:
//
//   - KV.RangeStream (the one new RPC): chunks of one pinned revision,
//     header, More and Count on the last chunk, Unimplemented for sort
//     orders and revision filters (TestDiffEtcdRangeStream).
//   - Maintenance.Status, Alarm GET and Cluster.MemberList need only a
//     user while auth is on (3.6: root for Status, none for MemberList);
//     Alarm activate/deactivate and KV.Compact need root
//     (TestDiffEtcdAuth).
//   - A LeaseKeepAlive stream the client cancels ends as canceled, no
//     longer as "no leader" (only a lost leader is); etcd's ErrCanceled
//     is "etcdserver: request cancelled" (togRPCError).
//   - The feature gates 3.7 adds (FastLeaseKeepAlive, PriorityRequest)
//     are accepted at their defaults by cmd/strata and refused otherwise.
//   - Not served: 3.7's etcd_debugging_server_watch_send_loop_* histograms
//     (debugging metrics, no alert or dashboard reads them) and its
//     OpenTelemetry spans for range and watch.
//
// Downgrade follows etcd's rules for cluster version 3.7: the only valid
// target is 3.6 (major.minor or major.minor.patch), validate and cancel
// answer as etcd's with its errors and texts (TestDiffEtcdVersion), and
// enable of a valid target is refused with ErrDowngradeUnsupported. etcd's
// enable lowers the cluster version so that members can be restarted with
// the older binary; every Strata member runs the one Strata binary, and no
// etcd 3.6 binary can take over a Strata data directory, so an enabled
// downgrade could never complete: moving to etcd goes through a snapshot
// (strata snapshot export, then etcdutl snapshot restore).
//
// # Listeners
//
// Each client URL serves gRPC and HTTP on one port without cmux: a
// connection opening with the HTTP/2 preface goes to the gRPC server, any
// other to the HTTP server, as etcd's insecure listener splits them. The
// HTTP endpoints are /health, /livez, /readyz (etcd's checks and
// formats), /version and /metrics; --listen-metrics-urls serves them on
// ports of their own. Metrics live in a registry of the server's own, with
// etcd's names for the ones people alert on (etcd_server_has_leader,
// etcd_server_leader_changes_seen_total, etcd_server_proposals_*,
// etcd_mvcc_db_total_size_*, ...) and grpc_server_* for the RPCs.
// Clients are served only once the member is ready (a leader is known);
// "ready to serve client requests" is logged then, as etcd logs it.
//
// # Snapshots
//
// Maintenance.Snapshot streams, in etcd's framing (chunks with the bytes
// remaining, then the sha256 of the payload), a Strata snapshot:
//
//	engine backup stream (engine.Backend.Backup: "strata-backup/1 <engine>\n" + the engine's data)
//	zeros
//	8 bytes: the backup stream's length, big-endian
//	8 bytes: "STRATASN"
//
// sized to a multiple of 512 bytes, since `etcdctl snapshot save` keeps a
// file only if its size modulo 512 is the 32 bytes of the digest, as a
// bbolt file's is. [ReadSnapshot] checks such a file and returns the
// backup stream, for the engine's Restore. etcdutl cannot read it.
//
// # Quota and alarms
//
// A write that would take the engine past --quota-backend-bytes raises a
// NOSPACE alarm and fails with "database space exceeded"; while the alarm
// is active, writes that add data fail the same way, deletes and
// compactions work. Alarms are raised and cleared through the log, as
// etcd's, so every member lists them and refuses such writes, both before
// proposing and when applying them.
//
// # Caveats
//
// Each member publishes its name and client URLs through the log once it
// serves (etcd's publish); until then MemberList knows them only for this
// member and the members of --initial-cluster. A removed member learns it
// (from its configuration, or by asking the leader when it has none) and
// stops, logging "the member has been permanently removed from the
// cluster", as etcd's does; `strata` then exits 0.
//
// # TLS
//
// https client URLs serve gRPC and the HTTP endpoints on one TLS port, as
// etcd does: the member completes the handshake ([Config.ClientTLSInfo]:
// certificate, trusted CA, client certificate authentication, CRL, TLS
// 1.2 at least unless --tls-min-version says otherwise) and hands gRPC
// requests (HTTP/2, application/grpc) to the gRPC server, which finds the
// client's verified certificate as a credentials.TLSInfo in the request's
// peer. A client without an accepted certificate, or speaking plain HTTP,
// fails the handshake and is closed. Metrics URLs may be http or https.
// An https peer URL runs the raft transport and the peer service over
// mutual TLS ([Config.PeerTLSInfo], with --peer-cert-allowed-cn and
// --peer-cert-allowed-hostname, and etcd's check that a peer connects from
// an address its certificate names): a member without an accepted certificate
// can neither send nor receive raft messages nor call the peer service.
// Certificates are read again when their files change (rotation without
// restart); --auto-tls and --peer-auto-tls make self-signed ones under
// <data-dir>/fixtures/. With --listen-client-http-urls
// ([Config.ListenClientHTTPURLs]) the client URLs serve gRPC only and the
// HTTP endpoints move to those URLs, as in etcd.
package server
