// Package mvcc is Strata's multi-version key-value store: etcd v3's data
// model (revisions, create/mod revision and version, tombstones,
// compaction) and request semantics (Range, Put, DeleteRange, Txn,
// Compact, HashKV) over any engine.Backend, with etcd's protobuf types as
// requests and responses.
//
// The semantics are etcd v3.7.3's, checked request by request against
// etcd's own mvcc and etcdserver/txn packages by a differential test.
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
//	'm' + name           -> value                  the meta area
//	'l' + ...                                      the lease area (reserved)
//
// A revision is encoded as etcd encodes it: 8 bytes of main, '_', 8 bytes
// of sub, big-endian, so byte order is revision order. Values are the
// protobuf encoding of mvccpb.KeyValue, byte-identical to etcd's
// proto.Marshal; since keys and values are etcd's, HashByRev returns
// etcd's hash for the same history. The meta area holds:
//
//	format             "strata-mvcc/1", written by the first commit
//	current_rev        the current revision (8 bytes, big-endian)
//	applied_index      the caller's applied index of the last commit
//	scheduled_compact  the last compaction asked for
//	finished_compact   the last compaction finished on disk
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
// the index alone. The index costs about 123 bytes per key with one
// revision, plus about 24 bytes per further revision, and a deleted key
// not yet compacted away about 95 more (measured by TestIndexMemory on
// 100k 15-byte keys, key bytes included).
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
// own pending values from memory. A failing request is undone at once. At
// Commit the batch's changes, current_rev and applied_index go to the
// engine in one batch; only after the engine commit does the store publish
// the new current revision. Abort (or a failed Commit) undoes the batch's
// index changes. Requests must have passed the Validate functions, which
// are etcd's gRPC-layer checks.
//
// The changes of each commit are handed to Options.OnCommit as watch
// events, in commit order: the seam for a watchable layer, which can also
// wrap the store.
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
// # Caveats
//
// Responses may share byte slices with requests, with each other and with
// the index: treat their byte slices as read-only. Requests given to a
// WriteBatch must not change until it is done. Watch and leases are not
// part of this package yet: LeaseExists and OnCommit are their hooks.
package mvcc
