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
// # Restart without replay
//
// On start the FSM reads its applied index from the engine. raft is told not
// to restore its newest snapshot (NoSnapshotRestoreOnStart) unless the store
// is behind that snapshot (a fresh or lost data directory), in which case the
// snapshot is restored; entries the store already holds are skipped, so the
// replay after a restart applies nothing twice.
//
// # Snapshots
//
// An FSM snapshot is a backup stream of the engine. Restoring one writes it
// beside the data directory and renames it into place, so a crash leaves the
// old data or the new, never a mix.
//
// # Reads
//
// Serializable reads use the local store. Linearizable reads first pass
// [Node.ReadBarrier], the ReadIndex recipe: the leader takes its commit
// index, confirms its leadership with one quorum round shared by every read
// waiting for it, checks its term, and the reading node waits until its store
// has applied that index. A leader serves them only after it applied an
// entry of its own term; a follower asks the leader for the index.
//
// # Transport
//
// Raft runs on hashicorp/raft's NetworkTransport over a peer port shared with
// request forwarding (the first byte of a connection names the protocol).
// The transport's asynchronous heartbeat path is disabled because it can make
// logs diverge (hashicorp/raft#695): heartbeats go through raft's main loop.
package replication
