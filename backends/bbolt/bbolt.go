package bbolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/strata-kv/strata/engine"
)

// Name is the engine's registry name.
const Name = "bbolt"

const (
	// fileName is the data file inside the engine's directory.
	fileName = "data.db"
	// defragFileName is the temporary file a Defrag copies into.
	defragFileName = "data.db.defrag"
	// restoreFileName is the temporary file a Restore writes before renaming.
	restoreFileName = "data.db.restore"
)

var bucketName = []byte("kv")

var (
	_ engine.Backend      = (*DB)(nil)
	_ engine.Defragmenter = (*DB)(nil)
)

// Options configure a DB. A nil *Options means all defaults.
type Options struct {
	// InitialMmapSize is the size of the first memory map. Writers that grow
	// the file beyond the map must wait for every open snapshot to close, so
	// it should exceed the expected data size; the map costs address space,
	// not memory. The default value is 10 GiB, as etcd uses.
	InitialMmapSize int
	// LockTimeout is how long Open waits for the file lock held by another
	// process. The default value is 10 seconds.
	LockTimeout time.Duration
	// DefragTxKeys is how many keys Defrag copies per transaction. The
	// default value is 10000, as etcd's defrag.
	DefragTxKeys int
	// FillPercent is how full a commit leaves the pages it splits, from
	// 0.1 to 1. bbolt's own default, 0.5, suits random inserts; the MVCC
	// store appends nearly every key past the last one (revision keys),
	// where half-full pages would stay half full for good: twice the file,
	// and twice the pages mapped in memory. The default value is 0.9, the
	// fill etcd gives its key bucket for the same sequential revision keys.
	FillPercent float64
	// NoSync opens bbolt with NoSync and NoGrowSync, as etcd's
	// --unsafe-no-fsync does: commits and Sync never fsync the file.
	// Unsafe: a crash of the machine may lose or tear any write. The
	// default value is false.
	NoSync bool
	// Mlock locks the data file's pages in RAM (bbolt's Mlock, etcd's
	// --memory-mlock); the file opened by Defrag is locked too. The
	// default value is false.
	Mlock bool
	// UnmapInterval is how often a commit drops the data file's pages from
	// the process's memory map (Linux; not with Mlock). Every commit reads
	// the B+tree's right edge through the map, and the kernel maps the
	// pages around each page read (fault-around, 64 KiB), so appends in
	// frequent small commits leave the whole file mapped: resident in the
	// process although only the page cache holds it, and harder for the
	// kernel to reclaim. Dropped pages stay in the page cache; the next read
	// maps them again. etcd commits its backend every 100 ms and maps a
	// fraction of what it writes; the MVCC store commits every raft apply
	// batch. The default value is 1 second; negative never drops them.
	UnmapInterval time.Duration
	// BatchInterval is how long a commit may stay in memory before it is
	// written to the file, with the commits after it, in one bbolt
	// transaction (etcd's --backend-batch-interval). A bbolt commit costs
	// the same few page writes however few keys it holds, and ends the
	// sharing of the read transaction; the MVCC store commits once per
	// raft apply batch, etcd's backend once per interval. Snapshots see
	// the pending writes at once; a crash of the process loses them, as
	// the engine contract allows for NoSync commits (Strata replays its
	// raft log). Synced commits, Sync, Backup, Defrag, bulk loads and Close
	// write them first. The default value is 100 ms, as etcd's; negative
	// writes every commit at once.
	BatchInterval time.Duration
	// BatchLimit is how many operations may wait in memory before they are
	// written (etcd's --backend-batch-limit); they are also written once
	// their keys and values pass 16 MiB. The default value is 10000, as
	// etcd's.
	BatchLimit int
}

// ErrInvalidOptions is wrapped by the errors of Options.Validate.
var ErrInvalidOptions = errors.New("bbolt: invalid options")

// Clone returns a copy of o; a nil o gives zero Options.
func (o *Options) Clone() *Options {
	if o == nil {
		return &Options{}
	}
	c := *o
	return &c
}

// EnsureDefaults sets the zero fields of o to their default values. Open
// calls it on its own copy of the caller's options.
func (o *Options) EnsureDefaults() {
	if o.InitialMmapSize == 0 {
		o.InitialMmapSize = 10 << 30
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 10 * time.Second
	}
	if o.DefragTxKeys == 0 {
		o.DefragTxKeys = 10000
	}
	if o.FillPercent == 0 {
		o.FillPercent = 0.9
	}
	if o.UnmapInterval == 0 {
		o.UnmapInterval = time.Second
	}
	if o.BatchInterval == 0 {
		o.BatchInterval = 100 * time.Millisecond
	}
	if o.BatchLimit == 0 {
		o.BatchLimit = 10000
	}
}

// Validate reports options that cannot work, with an error wrapping
// ErrInvalidOptions. It expects EnsureDefaults to have run.
func (o *Options) Validate() error {
	switch {
	case o.InitialMmapSize < 0:
		return fmt.Errorf("%w: InitialMmapSize %d < 0", ErrInvalidOptions, o.InitialMmapSize)
	case o.LockTimeout < 0:
		return fmt.Errorf("%w: LockTimeout %s < 0", ErrInvalidOptions, o.LockTimeout)
	case o.DefragTxKeys < 0:
		return fmt.Errorf("%w: DefragTxKeys %d < 0", ErrInvalidOptions, o.DefragTxKeys)
	case o.BatchLimit < 0:
		return fmt.Errorf("%w: BatchLimit %d < 0", ErrInvalidOptions, o.BatchLimit)
	case !(o.FillPercent >= 0.1 && o.FillPercent <= 1):
		return fmt.Errorf("%w: FillPercent %v not in [0.1, 1]", ErrInvalidOptions, o.FillPercent)
	}
	return nil
}

func (o *Options) boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:         o.LockTimeout,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: o.InitialMmapSize,
		NoSync:          o.NoSync,
		NoGrowSync:      o.NoSync,
		Mlock:           o.Mlock,
	}
}

// Engine returns the registry entry for bbolt. bbolt keeps no cache of its
// own (it relies on the page cache), so engine.Options.CacheSize is ignored.
func Engine() engine.Engine {
	return engine.Engine{
		Name: Name,
		Open: func(dir string, o engine.Options) (engine.Backend, error) {
			if o.Verify {
				if err := VerifyFile(filepath.Join(dir, fileName)); err != nil {
					return nil, err
				}
			}
			return Open(dir, &Options{NoSync: o.NoSync, Mlock: o.Mlock, BatchInterval: o.BatchInterval, BatchLimit: o.BatchLimit})
		},
		Restore: Restore,
	}
}

// DefragStats describe the last completed Defrag.
type DefragStats struct {
	// Duration is the time the whole defrag took.
	Duration time.Duration
	// WritePause is how long commits were held back: the final replay of
	// writes made during the copy, the fsync and the file swap.
	WritePause time.Duration
	// ReadPause is how long new snapshots were held back (the pointer swap).
	ReadPause time.Duration
	// SizeBefore and SizeAfter are the file sizes around the defrag.
	SizeBefore, SizeAfter int64
	// Replayed is the number of batches committed during the copy and
	// replayed onto the new file.
	Replayed int
}

// DB is a bbolt-backed engine.Backend. It is safe for concurrent use.
type DB struct {
	dir  string
	opts *Options

	// defragMu allows one Defrag at a time and makes Close wait for it.
	defragMu sync.Mutex
	// writeMu serializes commits. It is taken before mu.
	writeMu sync.Mutex
	// recording is set by Defrag while it copies; guarded by writeMu.
	recording bool
	// pending holds copies of the batches committed while recording.
	pending   []*engine.Batch
	pendingMu sync.Mutex

	// mu guards cur and closed. Commits and new snapshots read-lock it; the
	// defrag swap and Close write-lock it.
	mu     sync.RWMutex
	cur    *bolt.DB
	closed bool

	// retired counts old files being closed in the background after a swap.
	retired sync.WaitGroup

	statsMu    sync.Mutex
	lastDefrag DefragStats

	// load holds the bulk load under way (which holds writeMu and mu
	// until it ends): Close aborts it.
	load engine.LoadSlot

	// unmappedAt is when a commit last dropped the file's mapped pages
	// (Options.UnmapInterval); guarded by writeMu.
	unmappedAt time.Time

	// readMu guards shared and writing. It is taken after mu.
	readMu sync.Mutex
	// shared is the read transaction the snapshots taken since the last
	// write share (etcd's shared read transaction), nil when none is open.
	shared *sharedRead
	// pendingView is the published view of the writes not yet in the file
	// (nil when there are none); a snapshot pairs it with its read
	// transaction. Guarded by readMu.
	pendingView *pending

	// writes are the writes not yet in the file (Options.BatchInterval);
	// flushErr is the error of the last failed attempt to write them.
	// Guarded by writeMu.
	writes   pendingWrites
	flushErr error
	// kick tells flushLoop that writes are pending; stop ends it, and
	// loops waits for it.
	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	loops    sync.WaitGroup

	// writing counts the writes under way (commits, a bulk load, the
	// defrag swap, Close): while any is, snapshots get a transaction of
	// their own and no shared one is opened, because bbolt's remap, when a
	// commit grows the file, waits for every read transaction to end, and
	// the shared one would only end at the next write.
	writing int
}

// sharedRead is a read transaction shared by snapshots. Its references
// (one per open snapshot, one for DB.shared while it is current) are
// counted under DB.readMu; the last one rolls it back. Concurrent reads of
// one read-only bbolt transaction are safe: they only read the map, and
// count cursors atomically (etcd's concurrent read transactions share one
// the same way).
type sharedRead struct {
	tx   *bolt.Tx
	bkt  *bolt.Bucket
	refs int
}

// beginWrite stops sharing read transactions until endWrite and drops the
// current shared one (it ends once its snapshots are closed).
func (d *DB) beginWrite() {
	d.readMu.Lock()
	d.writing++
	d.dropSharedLocked()
	d.readMu.Unlock()
}

func (d *DB) endWrite() {
	d.readMu.Lock()
	d.writing--
	d.readMu.Unlock()
}

// dropSharedLocked releases DB.shared's reference. The caller holds readMu.
func (d *DB) dropSharedLocked() {
	if d.shared != nil {
		d.releaseLocked(d.shared)
		d.shared = nil
	}
}

// releaseLocked releases one reference of r. The caller holds readMu.
func (d *DB) releaseLocked(r *sharedRead) {
	r.refs--
	if r.refs == 0 {
		r.tx.Rollback()
	}
}

// Open opens or creates the bbolt data file in dir.
func Open(dir string, opts *Options) (*DB, error) {
	opts = opts.Clone() // the caller's options are never changed
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bbolt: open: %w", err)
	}
	// A crash during Defrag or Restore can leave a temporary file behind.
	for _, tmp := range []string{defragFileName, restoreFileName} {
		if err := os.Remove(filepath.Join(dir, tmp)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bbolt: open: remove stale %s: %w", tmp, err)
		}
	}
	bdb, err := openFile(filepath.Join(dir, fileName), opts)
	if err != nil {
		return nil, err
	}
	d := &DB{dir: dir, opts: opts, cur: bdb, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	if opts.BatchInterval > 0 {
		d.loops.Add(1)
		go d.flushLoop()
	}
	return d, nil
}

func openFile(path string, opts *Options) (*bolt.DB, error) {
	bdb, err := boltOpen(path, opts.boltOptions())
	if err != nil {
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("bbolt: open %s: create bucket: %w", path, err)
	}
	return bdb, nil
}

// boltOpen is bolt.Open, with the panic bbolt raises when the file's page
// structure is damaged turned into an error wrapping engine.ErrCorrupt:
// without a stored free list (NoFreelistSync), bbolt walks every page
// reachable from the root at open to find the free ones, and panics on a
// page of the wrong type, out of the file or referenced twice. The
// process then refuses to start with the damage named, instead of
// crashing. (bbolt leaves the file descriptor and the goroutine of that
// walk behind; the caller is about to give up anyway.)
func boltOpen(path string, opts *bolt.Options) (bdb *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			bdb, err = nil, fmt.Errorf("%w: %v", engine.ErrCorrupt, r)
		}
	}()
	return bolt.Open(path, 0o600, opts)
}

// Path returns the data file's path.
func (d *DB) Path() string { return filepath.Join(d.dir, fileName) }

// Commit applies b atomically in one bbolt write transaction.
func (d *DB) Commit(b *engine.Batch, opts *engine.WriteOptions) error {
	if err := b.Err(); err != nil {
		return err
	}
	if b.Empty() {
		if opts.GetSync() {
			return d.Sync()
		}
		return nil
	}
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return engine.ErrClosed
	}
	if d.flushErr != nil {
		if err := d.flushLocked(); err != nil {
			return err
		}
	}
	if d.deferrable(b, opts) {
		return d.deferCommit(b)
	}
	if err := d.flushLocked(); err != nil {
		return err
	}
	d.beginWrite()
	defer d.endWrite()
	// writeMu makes this the only writer, so NoSync can be set per commit.
	d.cur.NoSync = d.opts.NoSync || !opts.GetSync()
	if err := applyBatch(d.cur, b, d.opts.FillPercent); err != nil {
		return err
	}
	d.unmapIfDue()
	if d.recording {
		c := &engine.Batch{}
		if err := c.SetRepr(b.Repr()); err != nil {
			return fmt.Errorf("bbolt: copy batch for defrag: %w", err)
		}
		d.pendingMu.Lock()
		d.pending = append(d.pending, c)
		d.pendingMu.Unlock()
	}
	return nil
}

func applyBatch(bdb *bolt.DB, b *engine.Batch, fill float64) error {
	return update(bdb, fill, func(bkt *bolt.Bucket) error {
		r := b.Reader()
		for {
			kind, key, value, ok := r.Next()
			if !ok {
				break
			}
			var err error
			switch kind {
			case engine.KindSet:
				if value == nil {
					value = []byte{}
				}
				err = bkt.Put(key, value)
			case engine.KindDelete:
				err = bkt.Delete(key)
			case engine.KindDeleteRange:
				err = deleteRange(bkt, key, value)
			}
			if err != nil {
				return fmt.Errorf("%s %q: %w", kind, key, err)
			}
		}
		return r.Err()
	})
}

// update runs write in one bbolt write transaction, on the bucket filled
// to fill, and wraps its error (commitError).
func update(bdb *bolt.DB, fill float64, write func(*bolt.Bucket) error) error {
	return commitError(bdb.Update(func(tx *bolt.Tx) error {
		bkt := tx.Bucket(bucketName)
		bkt.FillPercent = fill
		return write(bkt)
	}))
}

// commitError wraps the error of a bbolt write transaction.
func commitError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return engine.ErrClosed
	}
	return fmt.Errorf("bbolt: commit: %w", err)
}

// deleteRange deletes [start, end). Deleting under a cursor can skip keys
// (bbolt #611), so the keys are collected first.
func deleteRange(bkt *bolt.Bucket, start, end []byte) error {
	var keys [][]byte
	c := bkt.Cursor()
	for k, _ := c.Seek(start); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := bkt.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Sync writes the pending writes to the data file and fsyncs it.
func (d *DB) Sync() error {
	return d.flushed(func() error {
		if d.opts.NoSync {
			return nil
		}
		if err := d.cur.Sync(); err != nil {
			return fmt.Errorf("bbolt: sync: %w", err)
		}
		return nil
	})
}

// NewSnapshot opens a bbolt read transaction, seen through the pending
// writes of the moment.
//
// The pending writes are read first, under readMu, and the transaction
// opened after them. A flush writes them to the file and only then, still
// marked as writing, drops them: a snapshot that finds them dropped opens
// its transaction after that commit, and one that finds them still there
// sees them on top of either file state (the same values).
func (d *DB) NewSnapshot() (engine.Snapshot, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, engine.ErrClosed
	}
	d.readMu.Lock()
	p := d.pendingView
	if d.shared == nil && d.writing == 0 {
		// No write can start a remap meanwhile: a commit takes readMu
		// (beginWrite) before it writes.
		tx, err := d.cur.Begin(false)
		if err != nil {
			d.readMu.Unlock()
			return nil, fmt.Errorf("bbolt: begin read: %w", err)
		}
		d.shared = &sharedRead{tx: tx, bkt: tx.Bucket(bucketName), refs: 1}
	}
	if r := d.shared; r != nil {
		r.refs++
		d.readMu.Unlock()
		return &snapshot{tx: r.tx, bkt: r.bkt, shared: r, d: d, pending: p}, nil
	}
	d.readMu.Unlock()
	tx, err := d.cur.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("bbolt: begin read: %w", err)
	}
	return &snapshot{tx: tx, bkt: tx.Bucket(bucketName), pending: p}, nil
}

// lockFlushed takes writeMu, read-locks mu and writes the pending writes
// to the file: what the caller does next sees them all in the file, and
// no commit starts until it releases both locks. It returns
// engine.ErrClosed, or the flush's error, with neither lock held.
func (d *DB) lockFlushed() error {
	d.writeMu.Lock()
	d.mu.RLock()
	err := engine.ErrClosed
	if !d.closed {
		err = d.flushLocked()
	}
	if err != nil {
		d.mu.RUnlock()
		d.writeMu.Unlock()
	}
	return err
}

// flushed writes the pending writes to the file and then, if f is not
// nil, runs f with no commit under way (lockFlushed).
func (d *DB) flushed(f func() error) error {
	if err := d.lockFlushed(); err != nil {
		return err
	}
	defer d.writeMu.Unlock()
	defer d.mu.RUnlock()
	if f == nil {
		return nil
	}
	return f()
}

// Stats writes the pending writes to the file and reports its size and,
// as etcd computes it, the size minus the free pages (and the freed pages
// pending release).
func (d *DB) Stats() (engine.Stats, error) {
	// The figures are the file's: write the pending writes to it first.
	var st engine.Stats
	err := d.flushed(func() (err error) {
		st, err = fileStats(d.cur)
		return err
	})
	return st, err
}

func fileStats(bdb *bolt.DB) (engine.Stats, error) {
	var size int64
	err := bdb.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	})
	if err != nil {
		return engine.Stats{}, fmt.Errorf("bbolt: stats: %w", err)
	}
	// Pages freed by commits are pending until no read transaction older
	// than the commit is open, and are released by the next write:
	// batched commits (Options.BatchInterval) can leave a compaction's
	// frees pending while no write follows. They hold no live data either.
	st := bdb.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(bdb.Info().PageSize)
	return engine.Stats{Size: size, InUse: size - free}, nil
}

// Backup writes the data file as of one read transaction, after writing
// the pending writes to it.
func (d *DB) Backup(w io.Writer) error {
	if err := d.flushed(nil); err != nil {
		return fmt.Errorf("bbolt: backup: %w", err)
	}
	s, err := d.NewSnapshot()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := engine.WriteBackupHeader(w, Name); err != nil {
		return fmt.Errorf("bbolt: backup: %w", err)
	}
	if _, err := s.(*snapshot).tx.WriteTo(w); err != nil {
		return fmt.Errorf("bbolt: backup: %w", err)
	}
	return nil
}

// Restore writes a backup stream into dir as a bbolt data file.
func Restore(dir string, r io.Reader) error {
	if err := engine.ReadBackupHeader(r, Name); err != nil {
		return err
	}
	if err := engine.PrepareRestoreDir(dir); err != nil {
		return err
	}
	tmp := filepath.Join(dir, restoreFileName)
	if err := writeFileSync(tmp, r); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bbolt: restore: %w", err)
	}
	// Check the file before it takes the real name.
	bdb, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err == nil {
		err = bdb.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketName) == nil {
				return errors.New("no kv bucket")
			}
			return nil
		})
		bdb.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: bbolt: %w", engine.ErrBackupMismatch, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, fileName)); err != nil {
		return fmt.Errorf("bbolt: restore: %w", err)
	}
	return engine.SyncDir(dir)
}

func writeFileSync(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Close waits for a running Defrag, closes the data file and waits for files
// retired by a Defrag to close. Snapshots must be closed before.
func (d *DB) Close() error {
	d.stopOnce.Do(func() { close(d.stop) })
	d.loops.Wait()
	d.load.Abort()
	d.defragMu.Lock()
	defer d.defragMu.Unlock()
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return engine.ErrClosed
	}
	err := d.flushLocked()
	d.closed = true
	// The shared read transaction would keep Close waiting.
	d.beginWrite()
	if cerr := d.cur.Close(); err == nil {
		err = cerr
	}
	d.mu.Unlock()
	d.retired.Wait()
	if err != nil {
		return fmt.Errorf("bbolt: close: %w", err)
	}
	return nil
}

// LastDefrag returns the statistics of the last completed Defrag.
func (d *DB) LastDefrag() DefragStats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	return d.lastDefrag
}

// Defrag rewrites the live keys into a fresh file and swaps it in, giving the
// space of deleted keys back to the file system. See the package comment.
func (d *DB) Defrag(ctx context.Context) error {
	d.defragMu.Lock()
	defer d.defragMu.Unlock()
	start := time.Now()

	// Start recording commits, and take the read view to copy, at one point.
	if err := d.lockFlushed(); err != nil {
		return err
	}
	old := d.cur
	src, err := old.Begin(false)
	d.mu.RUnlock()
	if err != nil {
		d.writeMu.Unlock()
		return fmt.Errorf("bbolt: defrag: %w", err)
	}
	d.recording = true
	d.writeMu.Unlock()

	stopRecording := func() {
		d.writeMu.Lock()
		d.recording = false
		d.writeMu.Unlock()
		d.pendingMu.Lock()
		d.pending = nil
		d.pendingMu.Unlock()
	}

	sizeBefore := src.Size()
	tmpPath := filepath.Join(d.dir, defragFileName)
	os.Remove(tmpPath)
	dst, err := openFile(tmpPath, d.opts)
	if err != nil {
		src.Rollback()
		stopRecording()
		return fmt.Errorf("bbolt: defrag: %w", err)
	}
	fail := func(err error) error {
		dst.Close()
		os.Remove(tmpPath)
		stopRecording()
		return fmt.Errorf("bbolt: defrag: %w", err)
	}
	// The copy needs no fsync per transaction: the file is synced once
	// before it replaces the old one.
	dst.NoSync = true
	err = copyBucket(ctx, src.Bucket(bucketName), dst, d.opts.DefragTxKeys)
	src.Rollback()
	if err != nil {
		return fail(err)
	}

	// Replay what was committed during the copy, outside the lock first so
	// that the final pause covers only the last few batches. Each round
	// replays what arrived during the previous one; stop once a round is
	// small, or after a bounded number of rounds if writers keep pace.
	replayed := 0
	for range 64 {
		d.pendingMu.Lock()
		batch := d.pending
		d.pending = nil
		d.pendingMu.Unlock()
		if len(batch) == 0 {
			break
		}
		for _, b := range batch {
			if err := applyBatch(dst, b, d.opts.FillPercent); err != nil {
				return fail(err)
			}
		}
		replayed += len(batch)
		if len(batch) <= 16 {
			break
		}
	}

	pauseStart := time.Now()
	d.writeMu.Lock()
	d.pendingMu.Lock()
	batch := d.pending
	d.pending = nil
	d.pendingMu.Unlock()
	for _, b := range batch {
		if err := applyBatch(dst, b, d.opts.FillPercent); err != nil {
			d.writeMu.Unlock()
			return fail(err)
		}
	}
	replayed += len(batch)
	d.recording = false
	dst.NoSync = false
	if err := dst.Sync(); err != nil {
		d.writeMu.Unlock()
		return fail(err)
	}
	// Renaming over the open old file is fine on POSIX: it keeps its inode
	// until closed, and dst keeps working under its new name.
	if err := os.Rename(tmpPath, d.Path()); err != nil {
		d.writeMu.Unlock()
		return fail(err)
	}
	if err := engine.SyncDir(d.dir); err != nil {
		d.writeMu.Unlock()
		return fmt.Errorf("bbolt: defrag: sync dir: %w", err)
	}
	readPauseStart := time.Now()
	d.mu.Lock()
	d.beginWrite() // the shared read transaction is of the old file
	d.cur = dst
	d.endWrite()
	d.mu.Unlock()
	readPause := time.Since(readPauseStart)
	d.writeMu.Unlock()
	writePause := time.Since(pauseStart)

	// Snapshots of the old file keep it open; close it once they are done.
	d.retired.Add(1)
	go func() {
		defer d.retired.Done()
		old.Close()
	}()

	after, err := fileStats(dst)
	if err != nil {
		return err
	}
	d.statsMu.Lock()
	d.lastDefrag = DefragStats{
		Duration:   time.Since(start),
		WritePause: writePause,
		ReadPause:  readPause,
		SizeBefore: sizeBefore,
		SizeAfter:  after.Size,
		Replayed:   replayed,
	}
	d.statsMu.Unlock()
	return nil
}

// copyBucket copies every key of src into dst's bucket, txKeys per
// transaction, in key order with a high fill percent since the keys arrive
// sorted.
func copyBucket(ctx context.Context, src *bolt.Bucket, dst *bolt.DB, txKeys int) error {
	c := src.Cursor()
	k, v := c.First()
	for k != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := dst.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketName)
			b.FillPercent = 0.9
			for n := 0; k != nil && n < txKeys; n++ {
				if err := b.Put(k, v); err != nil {
					return err
				}
				k, v = c.Next()
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// VerifyFile checks the structure of the bbolt file at path (a missing
// file is fine) without opening it for writing: it reads every page in use
// through bbolt's cursors, which assert each page's id and type, and
// checks that keys come in order. bbolt keeps no checksums, so a changed
// value inside a page is not found (the HashKV comparisons between members
// are what catch that). Damage is an error wrapping engine.ErrCorrupt.
//
// This is not bbolt's tx.Check: on a file without a stored free list
// (NoFreelistSync, as Strata writes them) tx.Check and a read-write open
// first rebuild the free list by walking the pages on a goroutine of
// their own, where a damaged page header panics and ends the process.
// Here the walk runs on the calling goroutine, with faults turned into
// panics (a page id pointing past the end of the file) and recovered.
func VerifyFile(path string) (err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("bbolt: verify %s: %w", path, err)
	}
	defer bdb.Close()
	done := make(chan error, 1)
	go func() { // a goroutine of its own for SetPanicOnFault
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("bbolt: verify %s: %w: %v", path, engine.ErrCorrupt, r)
			}
		}()
		debug.SetPanicOnFault(true)
		done <- bdb.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walkBucket(path, name, b) })
		})
	}()
	return <-done
}

// walkBucket reads every key of b and of the buckets nested in it.
func walkBucket(path string, name []byte, b *bolt.Bucket) error {
	var prev []byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("bbolt: verify %s: %w: bucket %q: key %x after %x", path, engine.ErrCorrupt, name, k, prev)
		}
		prev = append(prev[:0], k...)
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				if err := walkBucket(path, k, nb); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
