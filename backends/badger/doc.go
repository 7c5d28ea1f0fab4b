// Package badger implements the Strata storage engine contract
// ([engine.Backend]) on Badger v4, an LSM tree that keeps large values apart
// in a value log (the WiscKey design).
//
// # Basics
//
// [Open] opens or creates a store in a directory; [Engine] returns the
// registry entry ("badger") that opens stores from [engine.Options]. Each
// [engine.Batch] is applied in one badger read-write transaction, so it
// becomes visible atomically; conflict detection is off, since the engine
// contract has none. Snapshots are badger read-only transactions. Engine
// keys are stored behind a one-byte namespace prefix, because badger refuses
// empty keys and reserves keys starting with "!badger!".
//
// Badger runs with SyncWrites off. Commits with [engine.Sync], and
// [DB.Sync], then make commits durable with a sync round shared by
// concurrent callers (group commit). badger's own DB.Sync misses the
// write-ahead logs of memtables waiting to be flushed, so a round fsyncs
// those too; see sync.go.
//
// [DB.Defrag] flushes the memtables, flattens the LSM tree into one level
// (which drops deleted and overwritten data no snapshot still reads) and
// runs value log garbage collection. [DB.Backup] streams a badger backup
// taken at one read timestamp; [Restore] loads it into a new store.
//
// # Caveats
//
// Badger has no range tombstones: a range deletion reads the range and
// writes a tombstone for each key in it. Like every batch it must fit in
// one badger transaction (15% of [Options.MemTableSize] by badger's size
// estimate, about 4.8 MiB by default, where a value in the value log counts
// as a 12-byte pointer), or Commit returns [engine.ErrBatchTooLarge]. The
// MVCC store then writes the batch in parts, marked so that a store
// reopened before the last part drops the others (mvcc.WriteBatch.Commit).
//
// Commits made with [engine.NoSync] are written to memory-mapped files:
// they survive a crash of the process but not of the machine, and after a
// machine crash they are not necessarily lost from the newest backwards:
// an older write-ahead log file can be lost while a newer one survives.
// Only a Sync commit or [DB.Sync] makes a prefix of the commits durable.
// For the same reason, values in the value log (at or above
// [Options.ValueThreshold], 1 MiB by default) can read as an error after a
// machine crash (badger issue #1954); smaller values are kept in the LSM
// tree, where this cannot happen.
//
// The value log is only garbage collected by Defrag, and never the file
// being written. Badger's value log files and write-ahead logs are sparse
// files of twice their nominal size, so [DB.Stats] counts allocated blocks
// rather than file lengths.
//
// Badger writes its write-ahead logs, value log and tables through
// memory-mapped sparse files, where a page the disk cannot back kills the
// process with SIGBUS instead of returning an error. So Commit (and Defrag,
// bulk loads and [Restore]) fail with an error wrapping syscall.ENOSPC when
// the disk's free space would drop below what badger's flushes and
// compactions may still write; see space.go. Another process filling the
// disk can still overrun that estimate within about a second or 1 MiB of
// commits.
//
// Badger's iterators hold the tables they read and its read transactions
// hold back compaction: close snapshots promptly. Calls after [DB.Close]
// return [engine.ErrClosed]; Close force-closes snapshots and iterators left
// open.
package badger
