package pebble

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/strata-kv/strata/engine"
)

// Name is the engine name pebble stores are registered and backed up under.
const Name = "pebble"

// maxBatchSize bounds the engine batch representation Commit accepts.
// Pebble panics when its own batch reaches 4 GiB; its encoding of an
// operation is at most a few bytes longer than ours, so a margin of 16 MiB
// covers its 12-byte header plus per-op overhead for any batch that fits.
const maxBatchSize = 4<<30 - 16<<20

// DB is a pebble store. It is safe for concurrent use.
type DB struct {
	dir    string
	noSync bool // Options.NoSync
	// popts are the options the store was opened with (a bulk load
	// writes tables with them).
	popts *pdb.Options

	// closeCtx is cancelled when Close starts, so that a running Defrag
	// gives up its read lock instead of holding Close up.
	closeCtx    context.Context
	closeCancel context.CancelFunc

	// mu guards db: every operation holds it for reading while it uses db,
	// Close holds it for writing while it closes and clears db. Taking it
	// before snapMu is the only allowed order.
	mu sync.RWMutex
	db *pdb.DB // nil once closed

	// snapMu guards snaps, the snapshots not yet closed, which Close
	// force-closes.
	snapMu sync.Mutex
	snaps  map[*snapshot]struct{}

	// failed is the error of a write Pebble panicked on (its WAL could not
	// be written: a full disk). Pebble's commit pipeline is left locked
	// then, so every later Commit fails with it instead of blocking, and
	// Close does not close Pebble.
	failed atomic.Pointer[error]

	// load holds the bulk load under way (which holds mu for reading
	// until it ends): Close aborts it.
	load engine.LoadSlot
}

// ErrWriteFailed is returned by Commit once Pebble could not write its WAL
// (a full disk): the database takes no more writes and must be reopened.
var ErrWriteFailed = errors.New("pebble: write failed; the database takes no more writes")

var (
	_ engine.Backend      = (*DB)(nil)
	_ engine.Defragmenter = (*DB)(nil)
)

// Engine returns the registry entry for pebble stores.
func Engine() engine.Engine {
	return engine.Engine{
		Name: Name,
		Open: func(dir string, o engine.Options) (engine.Backend, error) {
			if o.Mlock {
				return nil, fmt.Errorf("pebble: %w", engine.ErrMlockUnsupported)
			}
			db, err := Open(dir, &Options{CacheSize: o.CacheSize, Logger: o.Logger, NoSync: o.NoSync})
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
		Restore: Restore,
	}
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
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	// A crash during a bulk load can leave its tables behind.
	if err := os.RemoveAll(filepath.Join(dir, loadDirName)); err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	// The DB takes its own reference on the cache; ours is dropped on return
	// so the cache is freed when the DB closes.
	cache := pdb.NewCache(o.CacheSize)
	defer cache.Unref()
	po := o.pebbleOptions(cache)
	pd, err := pdb.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &DB{
		dir:         dir,
		noSync:      o.NoSync,
		popts:       po,
		closeCtx:    ctx,
		closeCancel: cancel,
		db:          pd,
		snaps:       make(map[*snapshot]struct{}),
	}, nil
}

// acquire read-locks d and returns the open Pebble DB, or ErrClosed (with
// the lock released). The caller must call d.mu.RUnlock when it gets a DB.
func (d *DB) acquire() (*pdb.DB, error) {
	d.mu.RLock()
	if d.db == nil {
		d.mu.RUnlock()
		return nil, engine.ErrClosed
	}
	return d.db, nil
}

// Commit implements engine.Backend. It translates b into one Pebble batch
// and applies it atomically.
func (d *DB) Commit(b *engine.Batch, opts *engine.WriteOptions) error {
	if err := b.Err(); err != nil {
		return err
	}
	if int64(b.Size()) > maxBatchSize {
		return fmt.Errorf("%w: %d bytes", engine.ErrBatchTooLarge, b.Size())
	}
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if b.Empty() {
		return nil
	}

	// Batches come from Pebble's pool and go back to it on Close; each
	// Commit call owns its batch, so nothing is shared between goroutines.
	// Sizing from our representation avoids regrowing large batches.
	pb := db.NewBatchWithSize(b.Size() + 16)
	r := b.Reader()
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			break
		}
		switch kind {
		case engine.KindSet:
			err = pb.Set(key, value, nil)
		case engine.KindDelete:
			err = pb.Delete(key, nil)
		case engine.KindDeleteRange:
			err = pb.DeleteRange(key, value, nil)
		default:
			err = fmt.Errorf("%w: unknown kind %v", engine.ErrCorruptBatch, kind)
		}
		if err != nil {
			_ = pb.Close()
			return fmt.Errorf("pebble: commit: %w", err)
		}
	}
	if err := r.Err(); err != nil {
		_ = pb.Close()
		return fmt.Errorf("pebble: commit: %w: %w", engine.ErrCorruptBatch, err)
	}

	wo := pdb.NoSync
	if d.syncs(opts) {
		wo = pdb.Sync
	}
	if err := d.apply(db, pb, wo); err != nil {
		// Pebble may still reference a batch that failed to apply; leave it
		// to the garbage collector rather than back in the pool.
		return fmt.Errorf("pebble: commit: %w", err)
	}
	return pb.Close()
}

// apply applies pb. Pebble panics when its WAL cannot be written (a full
// disk: "no space left on device"); that panic is returned as an error
// wrapping ErrWriteFailed, and every later call fails with it (Pebble's
// commit pipeline stays locked), so that the caller can stop cleanly.
func (d *DB) apply(db *pdb.DB, pb *pdb.Batch, wo *pdb.WriteOptions) (err error) {
	if f := d.failed.Load(); f != nil {
		return *f
	}
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		cause, ok := r.(error)
		if !ok {
			panic(r)
		}
		err = fmt.Errorf("%w: %w", ErrWriteFailed, cause)
		d.failed.Store(&err)
	}()
	return db.Apply(pb, wo)
}

// NewSnapshot implements engine.Backend.
func (d *DB) NewSnapshot() (engine.Snapshot, error) {
	db, err := d.acquire()
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	s := &snapshot{d: d, snap: db.NewSnapshot()}
	d.snapMu.Lock()
	d.snaps[s] = struct{}{}
	d.snapMu.Unlock()
	return s, nil
}

// Stats implements engine.Backend.
//
// Size is Pebble's DiskSpaceUsage: WAL files (including old ones kept for
// reuse), live, obsolete and zombie sstables and blob files, the MANIFEST
// and OPTIONS files; Pebble counts the current WAL at its size when it
// was opened, so the bytes logged since (up to a memtable's worth) are
// added. Pebble cannot tell how much of its tables is live
// (deleted and overwritten data stays until a compaction meets it), so
// InUse is Size with InUseUnknown set: the store above supplies the live
// bytes (mvcc.Store.Stats).
func (d *DB) Stats() (engine.Stats, error) {
	db, err := d.acquire()
	if err != nil {
		return engine.Stats{}, err
	}
	defer d.mu.RUnlock()
	m := db.Metrics()
	size := m.DiskSpaceUsage()
	if m.WAL.Size > m.WAL.PhysicalSize {
		size += m.WAL.Size - m.WAL.PhysicalSize
	}
	return engine.Stats{Size: clampInt64(size), InUse: clampInt64(size), InUseUnknown: true}, nil
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// Sync implements engine.Backend. It appends an empty record to the WAL
// with a sync, which makes every earlier commit durable: the WAL is written
// in commit order and one fsync covers all of it. Unlike Flush it writes no
// sstable.
func (d *DB) Sync() error {
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if d.noSync {
		return nil
	}
	if err := db.LogData(nil, pdb.Sync); err != nil {
		return fmt.Errorf("pebble: sync: %w", err)
	}
	return nil
}

// syncs reports whether a commit with opts waits for the WAL's fsync.
func (d *DB) syncs(opts *engine.WriteOptions) bool {
	return opts.GetSync() && !d.noSync
}

// Close implements engine.Backend. Snapshots and iterators still open are
// closed first (and then return engine.ErrClosed); Close reports them as an
// error since leaving them open is a bug in the caller. A running Defrag is
// cancelled. Closing a closed DB does nothing.
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
		s.closeLocked()
	}
	clear(d.snaps)
	d.snapMu.Unlock()

	if f := d.failed.Load(); f != nil {
		// Pebble's commit pipeline is locked since the failed write:
		// closing it would block.
		d.db = nil
		return fmt.Errorf("pebble: close: %w", *f)
	}
	err := d.db.Close()
	d.db = nil
	if err != nil {
		err = fmt.Errorf("pebble: close: %w", err)
	}
	if leaked > 0 {
		err = errors.Join(fmt.Errorf("pebble: close: %d snapshots were still open", leaked), err)
	}
	return err
}

// Verify reads every table of every level (pebble's CheckLevels), which
// checks each block's checksum and the tables' key order: damage surfaces
// as an error wrapping engine.ErrCorrupt. It is what etcd's initial
// corruption check (the InitialCorruptCheck feature gate) asks of the
// engine at start-up.
func (d *DB) Verify(ctx context.Context) error {
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.CheckLevels(nil); err != nil {
		if pdb.IsCorruptionError(err) {
			return fmt.Errorf("pebble: verify %s: %w: %w", d.dir, engine.ErrCorrupt, err)
		}
		return fmt.Errorf("pebble: verify %s: %w", d.dir, err)
	}
	return nil
}
