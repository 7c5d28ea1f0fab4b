package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"

	"github.com/strata-kv/strata/engine"
)

// Name is the engine name badger stores are registered and backed up under.
const Name = "badger"

// Key layout
//
// Badger refuses empty keys and reserves keys starting with "!badger!", so
// engine keys are stored behind a one-byte namespace: engine key k is badger
// key dataPrefix+k. Keys in other namespaces are this package's own and are
// invisible through the engine API.
var (
	// dataPrefix starts every stored engine key.
	dataPrefix = []byte{0x01}
	// dataEnd is the exclusive upper bound of the engine keyspace.
	dataEnd = []byte{0x02}
	// flushMarker is written and dropped again by Defrag to make badger
	// flush its memtables (see flushMemtables).
	flushMarker = []byte{0x02, 'f', 'l', 'u', 's', 'h'}
)

// appendKey appends the stored form of engine key k to dst.
func appendKey(dst, k []byte) []byte {
	return append(append(dst, dataPrefix...), k...)
}

// Commits blocked by Defrag's memtable flush (bdg.ErrBlockedWrites) are
// retried after a pause growing from blockedRetryMin to blockedRetryMax.
const (
	blockedRetryMin = 100 * time.Microsecond
	blockedRetryMax = 20 * time.Millisecond
)

// DB is a badger store. It is safe for concurrent use.
type DB struct {
	dir string
	// opts are the options in effect, defaults filled in.
	opts Options

	// closeCtx is cancelled when Close starts, so that a running Defrag or
	// Backup gives up its read lock instead of holding Close up.
	closeCtx    context.Context
	closeCancel context.CancelFunc

	// mu guards db: every operation holds it for reading while it uses db,
	// Close holds it for writing while it closes and clears db. Taking it
	// before snapMu is the only allowed order.
	mu sync.RWMutex
	db *bdg.DB // nil once closed

	// commitMu orders commits that delete ranges against all others. A
	// range deletion reads the keys to delete at its transaction's start
	// and commits later; a key another commit wrote in between would
	// escape it although committed first (badger's conflict detection,
	// which is off, would not see such a phantom either). So commits with
	// a range deletion hold commitMu for writing, the others, blind writes
	// that do not mind each other, for reading. Taken after mu.
	commitMu sync.RWMutex

	// snapMu guards snaps, the snapshots not yet closed, which Close
	// force-closes.
	snapMu sync.Mutex
	snaps  map[*snapshot]struct{}

	// syncs lets concurrent Sync commits and Sync calls share one round of
	// fsyncs; durable is only touched by its running round.
	syncs   syncGroup
	durable durableState

	// space refuses commits that badger's memory-mapped files could not
	// get the disk space for (see space.go).
	space *spaceGuard

	// defragSem holds a token while a Defrag runs: one at a time.
	defragSem chan struct{}

	// load holds the bulk load under way (which holds commitMu and mu
	// until it ends): Close aborts it.
	load engine.LoadSlot
}

var (
	_ engine.Backend      = (*DB)(nil)
	_ engine.Defragmenter = (*DB)(nil)
)

// Engine returns the registry entry for badger stores. engine.Options.
// CacheSize sets the block cache size; Logger receives badger's log lines.
func Engine() engine.Engine {
	return engine.Engine{
		Name: Name,
		Open: func(dir string, o engine.Options) (engine.Backend, error) {
			if o.Mlock {
				return nil, fmt.Errorf("badger: %w", engine.ErrMlockUnsupported)
			}
			db, err := Open(dir, &Options{BlockCacheSize: o.CacheSize, Logger: o.Logger, NoSync: o.NoSync})
			if err != nil {
				return nil, err
			}
			if o.Verify {
				if err := db.Verify(context.Background()); err != nil {
					db.Close()
					return nil, err
				}
			}
			return db, nil
		},
		Restore:    Restore,
		PinnedHeap: uint64(arenaBytes(DefaultMemTableSize)),
	}
}

// arenaBytes is the size of the arena badger allocates (a []byte on the Go
// heap) for each memtable of memTableSize bytes: the memtable itself, room
// for one more batch of the largest size (15% of it) and for that batch's
// skiplist nodes (badger's arenaSize).
func arenaBytes(memTableSize int64) int64 {
	batch := maxBatchSize(memTableSize)
	return memTableSize + batch + batch/int64(skl.MaxNodeSize)*int64(skl.MaxNodeSize)
}

// Open opens the store in dir, creating dir and an empty store if needed. A
// nil opts selects the defaults.
func Open(dir string, opts *Options) (*DB, error) {
	o := opts.Clone() // the caller's options are never changed
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("badger: open %s: %w", dir, err)
	}
	bdb, err := bdg.Open(o.badgerOptions(dir))
	if err != nil {
		return nil, fmt.Errorf("badger: open %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &DB{
		dir:         dir,
		opts:        *o,
		closeCtx:    ctx,
		closeCancel: cancel,
		db:          bdb,
		snaps:       make(map[*snapshot]struct{}),
		durable:     newDurableState(dir),
		space:       newSpaceGuard(dir, o),
		defragSem:   make(chan struct{}, 1),
	}, nil
}

// acquire read-locks d and returns the open badger DB, or ErrClosed (with
// the lock released). The caller must call d.mu.RUnlock when it gets a DB.
func (d *DB) acquire() (*bdg.DB, error) {
	d.mu.RLock()
	if d.db == nil {
		d.mu.RUnlock()
		return nil, engine.ErrClosed
	}
	return d.db, nil
}

// Commit implements engine.Backend. It applies b in one badger read-write
// transaction; with opts.GetSync() it then waits for a sync round (see
// sync.go) that started after the transaction committed. A batch with a
// range deletion runs alone (see commitMu); it is first tried as a plain
// batch and restarted when the deletion is reached.
func (d *DB) Commit(b *engine.Batch, opts *engine.WriteOptions) error {
	if err := b.Err(); err != nil {
		return err
	}
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if b.Empty() {
		return nil
	}
	err = d.apply(db, b, false)
	if errors.Is(err, errNeedExclusive) {
		err = d.apply(db, b, true)
	}
	if err != nil {
		return err
	}
	if opts.GetSync() && !d.opts.NoSync {
		return d.syncs.do(func() error { return d.durable.sync(db) })
	}
	return nil
}

// errNeedExclusive is returned by apply when it meets a range deletion
// without holding commitMu for writing.
var errNeedExclusive = errors.New("badger: commit needs exclusive access")

// apply commits b, holding commitMu for writing if exclusive and for
// reading otherwise, retrying while Defrag blocks writes.
func (d *DB) apply(db *bdg.DB, b *engine.Batch, exclusive bool) error {
	if exclusive {
		d.commitMu.Lock()
		defer d.commitMu.Unlock()
	} else {
		d.commitMu.RLock()
		defer d.commitMu.RUnlock()
	}
	wait := blockedRetryMin
	for {
		err := d.applyTxn(db, b, exclusive)
		if !errors.Is(err, bdg.ErrBlockedWrites) {
			return err
		}
		// Defrag is flushing the memtables; badger turns writes away
		// meanwhile. The transaction was discarded, so apply again.
		time.Sleep(wait)
		wait = min(2*wait, blockedRetryMax)
	}
}

// applyTxn commits b in one read-write transaction. Range deletions are
// refused with errNeedExclusive unless rangesOK.
//
// Badger keeps references to the keys and values given to Txn.Set until
// the transaction is written: Txn.Commit waits for badger's write goroutine
// to copy every entry into the memtable (and value log) before it returns,
// and badger drops the entries then. Values can therefore alias b, which
// the caller may reuse once Commit returns. Keys are copied anyway, behind
// the namespace prefix.
//
// Before badger gets the transaction, its bytes are charged to d.space,
// which fails the commit with an error wrapping syscall.ENOSPC when the
// disk could not back them (see space.go).
func (d *DB) applyTxn(db *bdg.DB, b *engine.Batch, rangesOK bool) error {
	txn := db.NewTransaction(true)
	defer txn.Discard()
	r := b.Reader()
	cost := int64(txnOverhead)
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			break
		}
		var err error
		switch kind {
		case engine.KindSet:
			cost += entryCost(key, value)
			err = txn.Set(appendKey(nil, key), value)
		case engine.KindDelete:
			cost += entryCost(key, nil)
			err = txn.Delete(appendKey(nil, key))
		case engine.KindDeleteRange:
			if !rangesOK {
				return errNeedExclusive
			}
			var n int64
			n, err = deleteRange(txn, key, value)
			cost += n
		default:
			err = fmt.Errorf("%w: unknown kind %v", engine.ErrCorruptBatch, kind)
		}
		if err != nil {
			return commitError(err)
		}
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("badger: commit: %w: %w", engine.ErrCorruptBatch, err)
	}
	if err := d.space.take(db, cost); err != nil {
		return fmt.Errorf("badger: commit: %w", err)
	}
	if err := txn.Commit(); err != nil {
		return commitError(err)
	}
	return nil
}

func commitError(err error) error {
	switch {
	case errors.Is(err, bdg.ErrBlockedWrites):
		return err // retried by Commit
	case errors.Is(err, bdg.ErrTxnTooBig):
		return fmt.Errorf("badger: commit: %w: %w", engine.ErrBatchTooLarge, err)
	}
	return fmt.Errorf("badger: commit: %w", err)
}

// deleteRange deletes every key in [start, end) as seen by txn, which
// includes the batch's own earlier writes. Badger has no range tombstone,
// so each live key gets a tombstone of its own and counts towards the
// transaction size limit. It returns the space guard's charge for the
// tombstones (see entryCost).
func deleteRange(txn *bdg.Txn, start, end []byte) (int64, error) {
	lo, hi := appendKey(nil, start), appendKey(nil, end)
	it := txn.NewIterator(bdg.IteratorOptions{
		PrefetchValues: false,
		Prefix:         commonPrefix(lo, hi),
	})
	// Collect first: the iterator reads the transaction's pending writes,
	// which Delete changes.
	var keys [][]byte
	for it.Seek(lo); it.Valid(); it.Next() {
		k := it.Item().Key()
		if bytes.Compare(k, hi) >= 0 {
			break
		}
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	var cost int64
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return cost, err
		}
		// k carries the namespace prefix entryCost adds.
		cost += entryCost(k[len(dataPrefix):], nil)
	}
	return cost, nil
}

// commonPrefix returns the longest common prefix of a and b. Every key k
// with a <= k < b starts with it, so it can serve as a badger iterator
// Prefix, which lets badger skip tables outside it.
func commonPrefix(a, b []byte) []byte {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n:n]
}

// NewSnapshot implements engine.Backend. The snapshot is a badger read-only
// transaction.
func (d *DB) NewSnapshot() (engine.Snapshot, error) {
	db, err := d.acquire()
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	s := &snapshot{d: d, txn: db.NewTransaction(false)}
	d.snapMu.Lock()
	d.snaps[s] = struct{}{}
	d.snapMu.Unlock()
	return s, nil
}

// Stats implements engine.Backend.
//
// Size is the disk space the files in the store's directory take: the
// blocks allocated to them where the platform reports it, since badger
// preallocates its write-ahead log and value log files as sparse files of
// twice their nominal size. (badger's own DB.Size is refreshed only once a
// minute.)
//
// badger cannot tell how much of its tables and value log is live
// (deleted data stays until a compaction and the value log's garbage
// collection meet it), so InUse is Size with InUseUnknown set: the store
// above supplies the live bytes (mvcc.Store.Stats).
func (d *DB) Stats() (engine.Stats, error) {
	if _, err := d.acquire(); err != nil {
		return engine.Stats{}, err
	}
	defer d.mu.RUnlock()
	size, err := dirSize(d.dir)
	if err != nil {
		return engine.Stats{}, fmt.Errorf("badger: stats: %w", err)
	}
	return engine.Stats{Size: size, InUse: size, InUseUnknown: true}, nil
}

// dirSize returns the disk space taken by the files directly in dir (badger
// makes no subdirectories).
func dirSize(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range ents {
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted by a compaction or GC meanwhile
		}
		if err != nil {
			return 0, err
		}
		if fi.Mode().IsRegular() {
			total += diskUsage(fi)
		}
	}
	return total, nil
}

// Sync implements engine.Backend. See sync.go.
func (d *DB) Sync() error {
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if d.opts.NoSync {
		return nil
	}
	return d.syncs.do(func() error { return d.durable.sync(db) })
}

// Close implements engine.Backend. Badger flushes its memtables to tables
// and syncs everything on close. Snapshots and iterators still open are
// closed first (and then return engine.ErrClosed); Close reports them as an
// error since leaving them open is a bug in the caller. A running Defrag or
// Backup is cancelled. Closing a closed DB does nothing.
func (d *DB) Close() error {
	d.load.Abort()
	d.closeCancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return nil
	}
	d.snapMu.Lock()
	leaked := len(d.snaps)
	for s := range d.snaps {
		_ = s.release()
	}
	clear(d.snaps)
	d.snapMu.Unlock()

	err := d.db.Close()
	d.db = nil
	if err != nil {
		err = fmt.Errorf("badger: close: %w", err)
	}
	if leaked > 0 {
		err = errors.Join(fmt.Errorf("badger: close: %d snapshots were still open", leaked), err)
	}
	return err
}

// Verify reads every block of every table and checks its checksum
// (badger's VerifyChecksum): damage surfaces as an error wrapping
// engine.ErrCorrupt. badger reads blocks unchecked otherwise (an
// iterator that meets a damaged block just ends), so this is what etcd's
// initial corruption check (the InitialCorruptCheck feature gate) asks
// of the engine at start-up. Values in the value log carry their own
// CRC, checked on every read.
func (d *DB) Verify(ctx context.Context) error {
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.VerifyChecksum(); err != nil {
		return fmt.Errorf("badger: verify %s: %w: %w", d.dir, engine.ErrCorrupt, err)
	}
	return nil
}
