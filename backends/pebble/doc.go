// Package pebble implements the Strata storage engine contract
// ([engine.Backend]) on CockroachDB's Pebble v2, a RocksDB-like LSM tree.
//
// # Basics
//
// [Open] opens or creates a store in a directory; [Engine] returns the
// registry entry ("pebble") that opens stores from [engine.Options]. Each
// [engine.Batch] is translated into one Pebble batch and committed atomically
// through Pebble's group-commit pipeline, so concurrent Sync commits share
// WAL fsyncs. Snapshots are Pebble snapshots; iterators are Pebble iterators
// bounded by the snapshot's sequence number.
//
// [DB.Defrag] runs a manual compaction over the whole keyspace, which drops
// deleted and overwritten data that no open snapshot still needs. [DB.Backup]
// takes a Pebble checkpoint (hard links next to the data directory) and
// streams it as a tar archive; [Restore] unpacks such an archive.
//
// # On-disk format
//
// Stores are written with format major version
// [github.com/cockroachdb/pebble/v2.FormatValueSeparation],
// pinned by name rather than through FormatNewest so that upgrading the
// Pebble module never ratchets existing stores to a newer, one-way format
// behind our back. Raising it is a deliberate change of this package.
//
// # Caveats
//
// Commits made with [engine.NoSync] sit in a buffer inside this process until
// a later Sync commit, [DB.Sync] or a WAL rotation writes them out: unlike
// bbolt's NoSync they can be lost by a process crash, not only by a machine
// crash.
//
// Pebble panics on most uses of a closed database. This package guards every
// entry point so that calls after [DB.Close] return [engine.ErrClosed]
// instead; Close force-closes snapshots and iterators left open.
//
// The block cache and memtables live outside the Go heap when cgo is enabled
// (C memory), and do not show up in Go heap profiles then; in a build
// without cgo (`make build`, as etcd's releases) they are Go allocations.
package pebble
