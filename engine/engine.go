package engine

import (
	"context"
	"errors"
	"io"
)

// MaxKeySize is the largest key every engine accepts (bbolt's limit).
const MaxKeySize = 32 << 10

// MaxValueSize is the largest value every engine accepts. It is bounded by
// badger's value log file size in its default Strata configuration.
const MaxValueSize = 32 << 20

// Errors returned by engines. Callers test them with errors.Is.
var (
	// ErrNotFound is returned by Get when the key does not exist.
	ErrNotFound = errors.New("engine: not found")
	// ErrClosed is returned by operations on a closed Backend or Snapshot.
	ErrClosed = errors.New("engine: closed")
	// ErrEmptyKey is returned when a batch holds an empty key.
	ErrEmptyKey = errors.New("engine: empty key")
	// ErrKeyTooLarge is returned when a batch holds a key over MaxKeySize.
	ErrKeyTooLarge = errors.New("engine: key too large")
	// ErrValueTooLarge is returned when a batch holds a value over MaxValueSize.
	ErrValueTooLarge = errors.New("engine: value too large")
	// ErrBatchTooLarge is returned by Commit when an engine cannot apply the
	// batch atomically because of its size.
	ErrBatchTooLarge = errors.New("engine: batch too large")
	// ErrCorruptBatch is returned when a batch representation cannot be decoded.
	ErrCorruptBatch = errors.New("engine: corrupt batch")
	// ErrUnknownEngine is returned by a Registry for a name it does not hold.
	ErrUnknownEngine = errors.New("engine: unknown engine")
	// ErrBackupMismatch is returned by Restore when the stream was not
	// written by the engine asked to restore it.
	ErrBackupMismatch = errors.New("engine: backup is from another engine or format")
	// ErrCorrupt is wrapped by the errors of engines that found their
	// files damaged (a checksum mismatch): the data read cannot be
	// trusted.
	ErrCorrupt = errors.New("engine: data on disk is corrupt")
	// ErrMlockUnsupported is returned by the Open of an engine asked to
	// mlock (Options.Mlock) that maps no data file into memory.
	ErrMlockUnsupported = errors.New("engine: mlock is not supported: the engine maps no data file into memory")
	// ErrNotEmpty is returned by Restore when the target directory holds data.
	ErrNotEmpty = errors.New("engine: directory not empty")
)

// WriteOptions control how a batch is committed. A nil *WriteOptions means Sync.
type WriteOptions struct {
	// Sync makes Commit return only after the batch is durable on disk.
	Sync bool
}

// Predeclared write options.
var (
	// Sync commits durably: the batch survives a crash once Commit returns.
	Sync = &WriteOptions{Sync: true}
	// NoSync commits without waiting for the disk. The batch is visible at
	// once and is never half-applied. A crash of the process loses at most a
	// suffix of the NoSync commits made since the last synced commit or
	// Backend.Sync: what survives is the state after some commit, never a
	// state with a hole (the conformance suite checks this with kill -9). A
	// crash of the machine may lose more; see each engine's caveats.
	NoSync = &WriteOptions{Sync: false}
)

// GetSync reports whether the options ask for a durable commit.
func (o *WriteOptions) GetSync() bool { return o == nil || o.Sync }

// Backend is an ordered byte keyspace. It is safe for concurrent use.
type Backend interface {
	// Commit applies every operation of b atomically, in order. The batch
	// may be reused or discarded after Commit returns.
	Commit(b *Batch, opts *WriteOptions) error
	// NewSnapshot returns a consistent read view of the keyspace as of now.
	// The caller must Close it.
	NewSnapshot() (Snapshot, error)
	// Stats reports the engine's size on disk and the part of it in use.
	Stats() (Stats, error)
	// Backup writes a consistent copy of the whole keyspace to w, taken at
	// one point in time while writes continue. The stream can be given to
	// the same engine's Restore.
	Backup(w io.Writer) error
	// Sync makes every commit so far durable.
	Sync() error
	// Close releases the engine. Open snapshots must be closed first.
	Close() error
}

// Snapshot is a consistent, immutable view of a Backend. It is not safe for
// concurrent use.
type Snapshot interface {
	// Get returns a copy of the value stored under key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// NewIter returns an iterator over the snapshot. The iterator must be
	// closed before the snapshot.
	NewIter(opts *IterOptions) (Iterator, error)
	// Close releases the snapshot.
	Close() error
}

// IterOptions bound and orient an iterator. A nil *IterOptions iterates
// forwards over the whole keyspace.
type IterOptions struct {
	// LowerBound is the inclusive lower bound; nil means unbounded.
	LowerBound []byte
	// UpperBound is the exclusive upper bound; nil means unbounded.
	UpperBound []byte
	// Reverse iterates from the largest key to the smallest.
	Reverse bool
}

// Iterator walks the keys of a Snapshot inside [LowerBound, UpperBound) in
// ascending order, or descending when Reverse is set.
//
// Positioning methods return whether the iterator is on a key. Errors are
// sticky and surface through Error; a positioning method that hits an error
// returns false.
//
//	for ok := it.First(); ok; ok = it.Next() { use(it.Key(), it.Value()) }
//	if err := it.Error(); err != nil { ... }
type Iterator interface {
	// First moves to the first key in iteration order: the smallest key
	// (or the largest when Reverse) inside the bounds.
	First() bool
	// Seek moves to the first key in iteration order at or past key: the
	// smallest key >= key going forwards, the largest key <= key going
	// backwards. The bounds still apply.
	Seek(key []byte) bool
	// Next moves one key on in iteration order.
	Next() bool
	// Valid reports whether the iterator is on a key.
	Valid() bool
	// Key returns the current key. It is valid until the iterator moves.
	Key() []byte
	// Value returns the current value. It is valid until the iterator moves.
	Value() []byte
	// Error returns the first error the iterator met, if any.
	Error() error
	// Close releases the iterator and returns Error().
	Close() error
}

// Stats describe a Backend's space.
type Stats struct {
	// Size is the number of bytes the engine occupies on disk.
	Size int64
	// InUse is how many of those bytes hold live data; Size-InUse is what
	// a Defrag could give back. It is etcd's
	// etcd_mvcc_db_total_size_in_use_in_bytes. bbolt's is etcd's own
	// figure, the file's size minus its free pages. An engine that cannot
	// tell it from its files reports Size and sets InUseUnknown.
	InUse int64
	// InUseUnknown is set by engines whose files do not tell what is live:
	// an LSM keeps deleted and overwritten data in its files until its own
	// compaction meets it, and cannot know how much that is without
	// reading everything. The layer that knows what it stores supplies
	// InUse instead (mvcc.Store.Stats: the bytes of the records the store
	// keeps).
	InUseUnknown bool
}

// Defragmenter is implemented by engines that can give back space freed by
// deletes. Defrag runs while reads and writes go on and returns when the
// space has been reclaimed or ctx is done.
type Defragmenter interface {
	Defrag(ctx context.Context) error
}
