// Package bbolt is Strata's engine.Backend on go.etcd.io/bbolt: one B+tree in
// one memory-mapped file, one writer and many concurrent readers.
//
// # Layout
//
// The data lives in <dir>/data.db, in a single bucket. Keys are stored as
// they are; bbolt orders them bytewise, as the engine contract requires.
//
// # Options
//
// The file is opened with the hashmap freelist and NoFreelistSync (the free
// page list is rebuilt by a scan on open instead of being rewritten on every
// commit), and with a large initial mmap so that long-lived snapshots do not
// block writers when the file grows (bbolt must remap, and remapping waits for
// every open read transaction).
//
// # Shared read transactions
//
// The snapshots taken between two writes share one bbolt read transaction,
// as etcd's concurrent read transactions share one: a read skips bbolt's
// Begin and Rollback (locks, the transaction list) and the bucket lookup.
// A write ends the sharing before it touches the file (the shared
// transaction is rolled back when its last snapshot is closed), and
// snapshots taken while a write is under way get a transaction of their
// own: a shared transaction held until the next write would otherwise
// deadlock the remap of a commit that grows the file past its map.
//
// # Batched commits
//
// A NoSync commit (the MVCC store's, once per raft apply batch) is kept in
// memory, in a copy-on-write B-tree of pending writes, and written to the
// file with the commits after it in one bbolt transaction once
// [Options.BatchInterval] has passed since the first of them, or once
// [Options.BatchLimit] operations or 16 MiB are pending: etcd's backend
// commits its batch transaction the same way (--backend-batch-interval,
// --backend-batch-limit). A bbolt commit costs its page writes, the meta
// page and the walk of the tree whatever it holds, and ends the sharing of
// the read transaction; batching pays them once per interval. Each commit
// publishes an immutable copy of the pending writes; a snapshot pairs the
// copy of the moment with its read transaction and reads through it (the
// pending writes win, and hide the keys they delete). Synced commits,
// batches with a range deletion, and commits while Defrag copies are
// written at once, after the pending writes; Sync, Stats, Backup, Defrag, a
// bulk load and Close write the pending writes first.
//
// # Defrag
//
// bbolt never gives space back to the file system. [DB.Defrag] copies the live
// keys into a fresh file while reads and writes go on against the old one,
// replays the writes made meanwhile, and then swaps the files with a rename.
// Writers wait only for that final replay and swap; readers only for a
// pointer swap. Snapshots taken before the swap keep reading the old file,
// which is closed once the last of them is released. [DB.LastDefrag] reports
// the pauses.
//
// # Caveats
//
// A NoSync commit is written to the file, without fsync, up to
// [Options.BatchInterval] later: a crash of the process loses the commits
// still pending (a suffix of them, as the engine contract allows), and
// bbolt does not promise that a crash of the machine leaves the file
// consistent until a later synced commit or [DB.Sync] completes; callers
// that use NoSync must be able to rebuild the data (Strata replays its raft
// log).
package bbolt
