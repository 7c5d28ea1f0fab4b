package mvcc

import "errors"

// Errors returned by the store. Callers test them with errors.Is. The texts
// are etcd's: clients match some of them byte for byte, so the gRPC layer
// must pass them on unchanged (ErrCompacted and ErrFutureRev get etcd's
// "etcdserver: " prefix there, as etcd's own togRPCError does).
var (
	// ErrCompacted is returned when a read or a compaction names a revision
	// below the store's compact revision.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev is returned when a read or a compaction names a revision
	// above the store's current revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")

	// ErrEmptyKey is returned by the Validate functions for a request or a
	// compare without a key.
	ErrEmptyKey = errors.New("etcdserver: key is not provided")
	// ErrKeyNotFound is returned by a Put with ignore_value or ignore_lease
	// on a key that does not exist, and by ValidateTxn for an empty
	// RequestOp (as etcd does).
	ErrKeyNotFound = errors.New("etcdserver: key not found")
	// ErrValueProvided is returned by ValidatePut when ignore_value is set
	// together with a value.
	ErrValueProvided = errors.New("etcdserver: value is provided")
	// ErrLeaseProvided is returned by ValidatePut when ignore_lease is set
	// together with a lease.
	ErrLeaseProvided = errors.New("etcdserver: lease is provided")
	// ErrTooManyOps is returned by ValidateTxn when a txn (or a nested txn)
	// holds more operations than allowed.
	ErrTooManyOps = errors.New("etcdserver: too many operations in txn request")
	// ErrDuplicateKey is returned by ValidateTxn when one branch of a txn
	// writes the same key twice.
	ErrDuplicateKey = errors.New("etcdserver: duplicate key given in txn request")
	// ErrInvalidSortOption is returned by ValidateRange for an unknown sort
	// order or sort target.
	ErrInvalidSortOption = errors.New("etcdserver: invalid sort option")
	// ErrLeaseNotFound is returned by a Put naming a lease that is not
	// granted, and by the lease operations on an unknown lease.
	ErrLeaseNotFound = errors.New("etcdserver: requested lease not found")
	// ErrLeaseExists is returned by LeaseGrant for an ID already granted.
	ErrLeaseExists = errors.New("etcdserver: lease already exists")
	// ErrLeaseTTLTooLarge is returned by LeaseGrant for a TTL above
	// MaxLeaseTTL.
	ErrLeaseTTLTooLarge = errors.New("etcdserver: too large lease TTL")
	// ErrNotPrimary is returned by LeaseRenew and LeaseTimeToLive when the
	// store is not primary (see Promote): only the leader keeps expiries.
	ErrNotPrimary = errors.New("mvcc: not the primary lessor")

	// ErrWatcherNotExist is returned by WatchStream.Cancel for an unknown
	// watch ID.
	ErrWatcherNotExist = errors.New("mvcc: watcher does not exist")
	// ErrEmptyWatcherRange is returned by WatchStream.Watch for a range
	// whose end is not above its key.
	ErrEmptyWatcherRange = errors.New("mvcc: watcher range is empty")
	// ErrWatcherDuplicateID is returned by WatchStream.Watch for a watch
	// ID already used on the stream.
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")

	// ErrClosed is returned by operations on a closed Store.
	ErrClosed = errors.New("mvcc: store closed")
	// ErrBatchDone is returned by operations on a WriteBatch that was
	// already committed or aborted.
	ErrBatchDone = errors.New("mvcc: write batch already committed or aborted")
	// ErrTxnNotReadOnly is returned by View.Txn for a txn that writes.
	ErrTxnNotReadOnly = errors.New("mvcc: txn with writes on a read-only view")
	// ErrAppliedIndexRegressed is returned by WriteBatch.Commit when the
	// applied index is lower than the stored one.
	ErrAppliedIndexRegressed = errors.New("mvcc: applied index went backwards")
	// ErrCorrupt is returned when the stored data contradicts the index or
	// cannot be decoded.
	ErrCorrupt = errors.New("mvcc: corrupt data")
	// ErrForeignData is returned by Open when the backend holds data that
	// was not written by this package (or by a newer format of it).
	ErrForeignData = errors.New("mvcc: backend holds data of another format")
	// ErrInvalidOptions is wrapped by the errors of Options.Validate and
	// WatchStreamOptions.Validate.
	ErrInvalidOptions = errors.New("mvcc: invalid options")
)
