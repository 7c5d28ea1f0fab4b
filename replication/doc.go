// Package replication makes a cluster of nodes apply the same MVCC requests
// in the same order, with github.com/hashicorp/raft.
//
// # Write path
//
// A client request is proposed on any member ([Node.Propose]); a follower
// forwards it to the leader over the peer port. The leader's proposer packs
// every request waiting at that moment into one raft entry (proposal
// batching: while one entry is being fsynced and replicated, the next one
// fills up), raft group-commits entries into one log append, and the FSM
// applies each batch of committed entries as one mvcc.WriteBatch: every
// request gets its own revision and exact response, and the whole batch is
// one engine commit, without fsync, carrying the index of its last entry.
// The raft log is the durable copy; the engine's applied index says where
// to resume.
//
// # Request kinds
//
// Every kind of InternalRaftRequest a member proposes is described once, in
// the kinds table (kinds.go): how it applies to the store, its response
// type, its quota cost (a positive cost is refused under a NOSPACE alarm),
// whether only members propose it, and the permission a client needs for
// it. The FSM applies requests through the table, the follower decodes
// forwarded answers with it, and the server takes quota costs from it
// ([QuotaCost]). A request of no known kind (a newer member's, during a
// rolling upgrade) fails with ErrUnsupportedRequest wherever it arrives.
//
// # Peer service
//
// Members talk to each other, beside raft, through a gRPC service defined in
// peerpb/peer.proto (generated code checked in; `go generate
// ./replication/peerpb` regenerates it): proposals and read-index requests
// forwarded to the leader, keep-alives and time-to-live questions, membership
// changes, and small questions (a member's applied index, whether one is
// still a member). Errors travel as gRPC statuses with a detail naming the
// sentinel (wire_errors.go), so errors.Is works on a follower as on the
// leader; nothing is matched by its text. A follower forwards in batches
// (forwarding.go), on one long-lived Forward stream per leader: the
// proposals waiting at a moment go out in one call, and every read-index
// request waiting at a moment is answered by one read index, while up to
// eight calls of each kind are in flight; a request that finds nobody
// waiting goes out at once from its caller's goroutine. Each caller keeps
// its own deadline and cancellation.
//
// # Restart without replay
//
// On start the FSM reads its applied index from the engine. raft is told not
// to restore its newest snapshot (NoSnapshotRestoreOnStart) unless the store
// is behind that snapshot and the snapshot holds data (one a leader sent), in
// which case it is restored; entries the store already holds are skipped, so the
// replay after a restart applies nothing twice.
//
// # Snapshots
//
// A snapshot a member takes of itself names its store instead of copying it
// (snapshots.go), as etcd's .snap files name its backend: the engine is
// synced first, and holds everything up to the snapshot's index. Only when a
// leader sends a snapshot to a follower is the store dumped (engine.Dump, a
// stream every engine loads). Restoring one writes it beside the data
// directory and renames it into place, so a crash leaves the old data or the
// new, never a mix. A member whose store was lost behind a snapshot that
// names it does not start (ErrStoreBehindSnapshot).
//
// # Lifetimes
//
// The store's lifetime is kept apart from leadership: applies, reads,
// a snapshot's Persist and [Node.WithBackend] hold the store, shared, while
// they use it, and only a snapshot restore waits for them (a snapshot does
// not hold it between raft's two steps, which wait for raft's main loop, as
// an installing restore does); a leader change promotes
// or demotes the current store without waiting. Every goroutine a node
// starts ends with [Node.Close]: one waiter answers the proposals in flight,
// in order, and every wait on a raft future ends at Close, even on a future
// raft drops when it shuts down.
//
// # Reads
//
// Serializable reads use the local store. Linearizable reads first pass
// [Node.ReadBarrier], the ReadIndex recipe: the leader takes its commit
// index, confirms its leadership with one quorum round shared by every read
// waiting for it, checks its term, and the reading node waits until its store
// has applied that index. A leader serves them only after it applied an
// entry of its own term; a follower asks the leader for the index. A round
// counts a follower's forwarded calls as its heartbeat answers when they
// tell enough (the verifier), and a follower that is the leader's pair in a
// quorum (two or three voters) confirms its own read index by its term, so
// under load most rounds send no heartbeat and a follower's reads wait for
// none.
//
// # Transport
//
// Raft runs on hashicorp/raft's NetworkTransport over a peer port shared with
// the peer service (the first byte of a connection names the protocol: 'R'
// for raft, 'P' for the peer service; any other closes the connection).
// The transport's asynchronous heartbeat path is disabled because it can make
// logs diverge (hashicorp/raft#695): heartbeats go through raft's main loop.
package replication
