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
// A NoSync commit is written to the file without fsync. It survives a crash
// of the process, but bbolt does not promise that a crash of the machine
// leaves the file consistent until a later synced commit or [DB.Sync]
// completes; callers that use NoSync must be able to rebuild the data (Strata
// replays its raft log).
package bbolt
