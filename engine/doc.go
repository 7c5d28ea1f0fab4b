// Package engine defines the storage engine contract Strata's MVCC store sits
// on: one ordered byte keyspace with atomic write batches, point-in-time read
// snapshots, size statistics, backup and restore.
//
// The package knows no concrete engine. Implementations live under
// backends/ (bbolt, pebble, badger) and all of them pass the same
// conformance suite in engine/enginetest.
//
// # Basics
//
// Writes are collected in a [Batch] and made visible atomically by
// [Backend.Commit]. A commit with [Sync] is durable when Commit returns; a
// commit with [NoSync] is visible to new snapshots at once but may be lost by
// a crash (never half-applied). Reads go through a [Snapshot], a consistent
// view of the keyspace as of the moment it was taken, unaffected by later
// commits. Iterators walk a half-open range [lower, upper) forwards or
// backwards.
//
// Engines are opened by name through a [Registry]; optional abilities such as
// space reclamation are discovered with type assertions ([Defragmenter]).
//
// # Caveats
//
// Keys must be non-empty and at most [MaxKeySize] bytes. Byte slices returned
// by an [Iterator] are only valid until the iterator moves or is closed; copy
// them to keep them. Slices returned by [Snapshot.Get] belong to the caller.
// A Snapshot and its iterators are not safe for concurrent use; a Backend is.
package engine
