// Package mvcc is Strata's multi-version key-value store: etcd v3's data
// model (revisions, create/mod revision and version, tombstones,
// compaction), request semantics (Range, Put, DeleteRange, Txn, Compact,
// HashKV), watches and leases over any engine.Backend, with etcd's
// protobuf types as requests and responses.
//
// The semantics are etcd v3.7.3's, checked against etcd's own mvcc,
// lease and etcdserver/txn packages by differential tests: request by
// request, lease table by lease table, and watch event by watch event.
// Where etcd crashes or loses data, this package does not; those places
// are marked "etcd:" in the code.
//
// # Data model
//
// The store has one current revision, 1 when empty. Every request that
// changes something takes the next revision; a Txn takes one revision for
// all its writes, and a request that changes nothing (a read-only txn, a
// delete matching nothing, a failed request) takes none. Each change of a
// request gets a sub-revision, so a change is named by (main, sub).
// Reads name a revision; compaction at revision C makes reads below C
// fail with ErrCompacted (reads at C work) while keeping, per key, the
// latest version at or below C.
//
// # Storage layout
//
// All keys the store writes to the engine start with one byte naming
// their area:
//
//	'k' + revision       -> mvccpb.KeyValue        the revision area
//	'k' + revision + 't' -> mvccpb.KeyValue{Key}   a tombstone (delete)
//	'l' + lease ID       -> leasepb.Lease          the lease area
//	'm' + name           -> value                  the meta area
//
// A revision is encoded as etcd encodes it: 8 bytes of main, '_', 8 bytes
// of sub, big-endian, so byte order is revision order. Values are the
// protobuf encoding of mvccpb.KeyValue, byte-identical to etcd's
// proto.Marshal; since keys and values are etcd's, HashByRev returns
// etcd's hash for the same history. A lease ID is 8 big-endian bytes and
// a lease is etcd's leasepb.Lease{ID, TTL, RemainingTTL} encoding, so the
// lease area holds what etcd's "lease" bucket holds. The meta area holds:
//
//	format             "strata-mvcc/1", written by the first commit
//	current_rev        the current revision (8 bytes, big-endian)
//	applied_index      the caller's applied index of the last commit
//	scheduled_compact  the last compaction asked for
//	finished_compact   the last compaction finished on disk
//	lease_seq          the counter behind generated lease IDs
//
// When scheduled_compact is above finished_compact at Open, a compaction
// was interrupted and is resumed.
//
// # Key index
//
// The revision area is ordered by revision, not by key, so the store keeps
// an in-memory index from each key to its revisions: a B-tree
// (github.com/google/btree) of keyIndex, each a list of generations (one
// per life of the key, from creation to tombstone), as etcd's. Open
// rebuilds it with one scan of the revision area. A Range walks the index
// for the keys and revisions visible at the read revision, then fetches
// the values by revision from an engine snapshot; count_only, keys_only
// and compares on versions and revisions need no value and are served from
// the index alone.
//
// Counting a range does not walk it, as etcd's does: the index also keeps
// its live keys in a counted B-tree (github.com/tidwall/btree), and a
// count is the difference of two ranks, corrected by the keys whose
// liveness changed after the read revision (the index keeps the last few
// thousand such changes; counts at revisions older than those walk). A
// count of 1M keys takes about 2 µs where the walk took 57 ms
// (BenchmarkIndexCount), and a limited range's total (kube-apiserver's
// paged lists) no longer walks the rest of the range. The index costs
// about 130 bytes per key with one revision (107 of them the B-tree of
// keyIndex, 23 the live keys' tree; a keyIndex does not store its last
// revision, which its generations hold), plus about 24 bytes per further
// revision, and a deleted key not yet compacted away about 75 more
// (measured by TestIndexMemory on 100k 15-byte keys, key bytes included).
//
// # Write path and group commit
//
// A WriteBatch applies many requests and commits them in one engine
// batch: the replication FSM applies a whole raft batch with one
// WriteBatch and one engine commit, engine.NoSync by default because the
// raft log is the durable copy, and passes the raft index to Commit, which
// stores it with the data (AppliedIndex reads it back after a restart, so
// that replay starts after it).
//
//	w, err := s.NewWriteBatch()
//	r1, err := w.Put(putReq)   // revision N+1, its own response
//	r2, err := w.Txn(txnReq)   // sees r1's write; revision N+2
//	...
//	err = w.Commit(raftIndex)  // one engine batch; readers see N+1.. now
//
// Each request gets its own revision and exact response and sees the
// requests before it: the batch updates the index as it goes and reads its
// own pending values from memory; lease changes are kept aside in the
// batch too. A failing request is undone at once. At Commit the batch's
// changes, its lease changes, current_rev and applied_index go to the
// engine in one batch; only after the engine commit does the store apply
// the lease changes to its lease table and publish the new current
// revision. Abort (or a failed Commit) undoes the batch's index changes. Requests must have passed the Validate functions, which
// are etcd's gRPC-layer checks.
//
// The changes of each commit go to the watchers (see Watch), and to
// Options.OnCommit if set, in commit order.
//
// # Concurrency
//
// One WriteBatch is open at a time (NewWriteBatch waits for the previous
// one). Readers never wait for it. A reader (View, Range, HashByRev) loads
// the published state, current and compact revision, and then takes an
// engine snapshot, which holds every revision up to that current
// revision; the index may already hold revisions of the open batch, but
// those are above the reader's revision and invisible to it. A reader
// therefore never sees a revision that is not committed, nor part of a
// request.
//
// Compaction runs on a background goroutine, one compaction at a time: it
// compacts the index one key at a time, then deletes the unneeded
// revisions from the engine in batches of Options.CompactionBatchLimit,
// pausing between batches, and records the compaction as finished, with
// engine.Sync, in the last batch. A compaction at C only removes data that
// no read at or above C needs, so it runs alongside readers and writers;
// a read below C that races with it fails with ErrCompacted.
//
// The watch sync loop runs on a goroutine of its own, and each
// WatchStream on one that feeds its channel (and reads prev_kv values);
// Close stops them all. Lock order: the write lock, the watch hub's lock,
// a stream's lock; the lease table's lock comes after the write lock
// and is never held with the others.
//
// # Watch
//
// A WatchStream is what an etcd gRPC Watch stream serves: watchers on a
// key or a range, from any revision, whose responses come out of one
// channel, in order, ready to send.
//
//	ws, err := s.NewWatchStream(&mvcc.WatchStreamOptions{...})
//	id, err := ws.Watch(createReq) // *pb.WatchCreateRequest, as received
//	for resp := range ws.Chan() { send(resp) } // *pb.WatchResponse
//	ws.RequestProgress(); ws.Cancel(id); ws.Reject(reason); ws.Close()
//
// The stream produces every response etcd's server sends, in the order a
// client must see them: the created response of a watcher (or etcd's
// refusal: negative start revision, empty range, duplicate ID) before its
// events, its events in revision order with prev_kv and filters applied,
// fragments, progress notifications (on request, only when every watcher
// of the stream is synced, as etcd; and periodic ones for progress_notify
// watchers), compacted and cancel responses. The server fills in the
// header's cluster, member and term; or, with
// WatchStreamOptions.EncodedHeader, the stream hands out batches of
// responses already encoded (Encoded), each event encoded once for all
// its watchers, and the server sends the bytes as they are.
//
// Watchers are synced or unsynced (after etcd's watchable store). The
// synced watchers of a stream that watch the same range with the same
// options form a group, and Commit queues the events of each commit once
// per group they match, under one lock and without blocking: a commit
// costs the writer a few hundred nanoseconds per matching group, not per
// watcher; the stream's goroutine makes each member's response on the way
// out. A stream bounds the events queued per watcher (or group), in
// number and in bytes (WatchStreamOptions.BufferEvents and BufferBytes);
// the watchers of a group whose events do not fit become unsynced and
// cost writers nothing more. A sync loop (every 100ms, and at once when a watcher needs
// it) catches unsynced watchers up, when their stream has room again,
// from the revision area (a bounded scan per pass, without the lock) and
// then from a ring of the latest commits' events, until they are synced
// again. A watcher from an old revision starts unsynced; one whose next
// revision is compacted gets a compacted response (CompactRevision set,
// header revision 0, as etcd's) and stays on its stream until cancelled.
// So a slow reader holds up neither writers nor other streams, and every
// watcher gets every revision once, in order, each revision whole in one
// response unless fragments are asked for. Several revisions may share a
// response (the revisions of one commit, or of a catch-up chunk); header
// revisions never go back on a stream (compacted responses aside).
//
// # Leases
//
// Leases are part of the replicated state: WriteBatch.LeaseGrant,
// LeaseRevoke and LeaseCheckpoint apply etcd's lease requests in the same
// engine batch as the keys, and a Put attaches its key to its lease (a
// Put naming an unknown lease fails with ErrLeaseNotFound). Revoking a
// lease deletes its keys, in key order, in one revision, as etcd does.
// Open rebuilds the lease table from the lease area and the keys'
// attachments from the revision area.
//
// Expiry is not replicated: as etcd's lessor, the store keeps expiries in
// memory only while it is primary (between Promote and Demote, called by
// whoever drives the store when it gains or loses leadership), and never
// revokes anything by itself. The driver renews leases (LeaseRenew, the
// keepalive), asks which have expired (Expired) and which are due for a
// checkpoint (DueCheckpoints), and proposes the revokes and checkpoints
// through the log. Promote counts each lease from its checkpointed
// remaining TTL, so a leader change does not give leases their full TTL
// back. LeaseTimeToLive and Leases read the table.
//
// # Caveats
//
// Responses may share byte slices with requests, with each other and with
// the index, and watch events are shared between watchers: treat their
// byte slices and events as read-only. Requests given to a WriteBatch
// must not change until it is done. Watchers do not survive a Close (nor
// a replacement of the store's data): their clients resume from their
// last revision + 1, which the store serves while it is not compacted.
package mvcc
