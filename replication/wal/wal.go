package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("wal: closed")
	// ErrCorrupt is returned by Open when a sealed segment, the meta file or
	// the stable file is damaged, or when the tail segment has a damaged
	// record that valid records follow: data that was acknowledged is gone
	// and the store refuses to guess. GetLog returns it if an entry fails its
	// checksum.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrNonContiguous is returned by StoreLogs when the entries do not
	// continue the log: the first must be LastIndex()+1 (any index if the log
	// is empty) and each following one its predecessor+1.
	ErrNonContiguous = errors.New("wal: non-contiguous log index")
	// ErrUnsupportedDelete is returned by DeleteRange for a range that
	// removes neither a prefix nor a suffix of the log, which would leave a
	// gap.
	ErrUnsupportedDelete = errors.New("wal: delete range is neither a prefix nor a suffix")
	// ErrFailed wraps the error that stopped the store: a failed fsync, or a
	// failed file operation that left the disk state unknown. After it every
	// write returns it; reads of what was acknowledged still work. Reopen the
	// store to recover.
	ErrFailed = errors.New("wal: store failed, reopen it")
	// ErrLocked is returned by Open when another Store (in this process or
	// another) has the directory open.
	ErrLocked = errors.New("wal: directory is in use")
	// ErrTooLarge is returned by StoreLogs for a batch whose encoding
	// exceeds 4 GiB, the most one segment can address.
	ErrTooLarge = errors.New("wal: batch too large")
	// ErrNotUint64 is returned by GetUint64 for a key whose value was not
	// written by SetUint64.
	ErrNotUint64 = errors.New("wal: value is not a uint64")
	// ErrInvalidOptions is wrapped by the errors of Options.Validate.
	ErrInvalidOptions = errors.New("wal: invalid options")

	errTruncated = errors.New("record truncated")
	errChecksum  = errors.New("checksum mismatch")
	errMalformed = errors.New("malformed record")
)

var (
	_ raft.LogStore               = (*Store)(nil)
	_ raft.StableStore            = (*Store)(nil)
	_ raft.MonotonicLogStore      = (*Store)(nil)
	_ raft.CommitTrackingLogStore = (*Store)(nil)
	_ raft.DeferredSyncLogStore   = (*Store)(nil)
)

const (
	// DefaultSegmentSize is the default Options.SegmentSize.
	DefaultSegmentSize = 64 << 20
	// DefaultMaxSegments is the default Options.MaxSegments: etcd's
	// --max-wals default.
	DefaultMaxSegments = 5
	// MaxSegmentSize is the largest Options.SegmentSize allowed.
	MaxSegmentSize = 1 << 30

	lockName = "LOCK"
	// maxSegmentBytes bounds a segment file so record offsets fit in uint32.
	maxSegmentBytes = math.MaxUint32
)

// recentEntries is how many of the latest entries GetLog serves from
// memory, and recentMaxBytes the largest entry kept there, bounding the
// memory to recentEntries × recentMaxBytes.
const (
	recentEntries  = 256
	recentMaxBytes = 64 << 10
)

// Options configure a Store. The zero value (or nil) selects the defaults.
type Options struct {
	// SegmentSize is the size in bytes at which the tail segment is sealed:
	// a batch that finds the tail segment this large or larger starts a new
	// segment. A batch is never split, so a segment can exceed SegmentSize by
	// one batch. Must be at most MaxSegmentSize. The default value is
	// DefaultSegmentSize (64 MiB).
	SegmentSize int64
	// NoPreallocate stops the store from allocating SegmentSize bytes for
	// each new segment up front (fallocate). Preallocated space lets an
	// append overwrite allocated blocks instead of growing the file, which
	// saves a filesystem journal commit in the fdatasync of small batches.
	// The default value is false (preallocate where the filesystem can).
	NoPreallocate bool
	// Logger receives recovery notices (a torn tail truncated, stale files
	// removed) and the error that fails the store. The default value
	// discards them.
	Logger *slog.Logger
	// OnSync, if not nil, is called after each StoreLogs made its entries
	// durable, with the number of entries and the time the write and the
	// fdatasync took (for etcd's wal_fsync_duration metric). It runs on
	// raft's goroutine: keep it cheap.
	OnSync func(entries int, took time.Duration)
	// OnFail, if not nil, is called once, with the error, when the store
	// fails (see ErrFailed): a failed fsync, or a failed file operation that
	// left the disk state unknown, of the log or of the stable store. Raft
	// cannot go on without its log, so the caller should stop at once, as
	// etcd exits when it cannot save its WAL. It runs on the goroutine of
	// the failed call, with the store's locks held: it must not call the
	// store.
	OnFail func(err error)
	// SyncFault is fault injection, for tests only: if not nil, it is
	// called before each fsync that makes appended entries or a stable
	// store value durable, and an error it returns is taken for that
	// fsync's error (so it fails the store). The default value is nil.
	SyncFault func() error
	// MaxSegments is how many segment files the directory keeps, as
	// etcd's --max-wals counts its WAL files: a segment whose entries all
	// lie below the first index (removed by a head deletion, raft's
	// compaction after a snapshot, or by deleting the whole log after a
	// snapshot is installed) is retired, closed and kept on disk, and the
	// oldest retired segments are removed while the directory holds more
	// than MaxSegments segments. A segment holding an entry of the log is
	// never removed by this rule, so the directory may hold more (as
	// etcd's locked WAL files). A negative value never removes a retired
	// segment (etcd's --max-wals=0). The default value is
	// DefaultMaxSegments (5).
	MaxSegments int
	// NoSync skips the fdatasync that makes appended entries and stable
	// store values durable (etcd's --unsafe-no-fsync, which turns off its
	// WAL's fsync): StoreLogs and Set return once the data is written to
	// the file. A crash of the machine may lose or tear acknowledged
	// entries; a crash of the process alone does not. The files'
	// creations, renames and removals are still synced. Unsafe: for tests
	// and throw-away clusters. The default value is false.
	NoSync bool
}

// Clone returns a copy of o; nil gives zero Options.
func (o *Options) Clone() *Options {
	if o == nil {
		return &Options{}
	}
	c := *o
	return &c
}

// EnsureDefaults fills in zero fields with their default values.
func (o *Options) EnsureDefaults() {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxSegments == 0 {
		o.MaxSegments = DefaultMaxSegments
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports options that are out of range.
func (o *Options) Validate() error {
	if o.SegmentSize <= 0 || o.SegmentSize > MaxSegmentSize {
		return fmt.Errorf("%w: SegmentSize %d out of range (1..%d)", ErrInvalidOptions, o.SegmentSize, MaxSegmentSize)
	}
	return nil
}

// Store is a raft log store and stable store kept in one directory. See the
// package documentation for the file format and the recovery rules.
//
// # Concurrency
//
// All methods are safe for concurrent use. Mutations of the log (StoreLogs,
// DeleteRange) are serialized by one mutex held across their writes and
// fsyncs. Readers (GetLog, FirstIndex, LastIndex) share a second, read-write
// mutex with them: a mutation takes it exclusively only for the moment it
// publishes its result (after the fsync for an append by StoreLogs, after
// the write for one by StoreLogsNoSync, before any file is removed or
// truncated for a delete), so GetLog from raft's replication goroutines
// does not wait for an append's fsync. GetLog holds the shared
// lock across its single pread, so no file it reads is closed under it. The
// stable store has its own mutex. The Store starts no goroutines.
type Store struct {
	dir  string
	opts Options
	lock *os.File // holds the flock on LOCK

	// wmu serializes StoreLogs, DeleteRange and Close; it is held across
	// their I/O. It guards the fields up to mu, and is taken before mu.
	wmu       sync.Mutex
	wbuf      []byte   // encoding of the batch being appended
	woffs     []uint32 // offset of each record within wbuf
	metaFirst uint64   // the first index in the meta file
	failed    error    // sticky ErrFailed; see fail
	// retired are the paths of the segment files whose entries all lie
	// below the first index, oldest first: closed, never read, kept
	// until purge removes them (Options.MaxSegments). They all come
	// before the segments of the log.
	retired []string
	// unsynced is the tail segment while the batch StoreLogsNoSync last
	// appended to it (unsyncedEntries entries) is not yet durable.
	unsynced        *segment
	unsyncedEntries int

	staged atomic.Uint64 // commit index staged by StageCommitIndex

	// mu guards the published view of the log. It is written with wmu held
	// too, so holders of wmu may read these fields without it.
	mu     sync.RWMutex
	segs   []*segment // in index order; each holds at least one entry
	first  uint64     // first index, 0 if the log is empty
	last   uint64     // last index, 0 if the log is empty
	commit uint64     // last commit index persisted with an entry
	closed bool
	// recent holds the latest appended entries by index modulo its size,
	// so that GetLog of a recent entry (raft's replication goroutines on
	// the leader, the apply of a follower: both read what was just
	// appended) needs no pread. Lookups check the log's range first.
	recent [recentEntries]*raft.Log

	stable stableStore
}

// Open opens the store in dir, creating the directory if needed. It
// validates every segment, erases a torn tail left by a crash during an
// append, and finishes deletions a crash interrupted. It fails with
// ErrCorrupt if data that was acknowledged is damaged, and with ErrLocked if
// the directory is already open.
func Open(dir string, opts *Options) (_ *Store, err error) {
	opts = opts.Clone()
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: open: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: open: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("wal: open: %w", err)
	}
	s := &Store{dir: dir, opts: *opts, lock: lock}
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	for _, name := range []string{metaTmpName, stableTmpName} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("wal: open: %w", err)
		}
	}
	if s.metaFirst, err = readMeta(dir); err != nil {
		return nil, err
	}
	if err := s.recoverSegments(); err != nil {
		return nil, err
	}
	s.stable.syncFault, s.stable.onFail, s.stable.noSync = s.opts.SyncFault, s.opts.OnFail, s.opts.NoSync
	if err := s.stable.open(dir, s.opts.Logger); err != nil {
		return nil, err
	}
	return s, nil
}

// recoverSegments loads and validates every segment file of the log (see
// scanSegment) and repairs the tail. Segments entirely below the meta
// file's first index are retired, not validated, and purged as
// Options.MaxSegments says.
func (s *Store) recoverSegments() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("wal: open: %w", err)
	}
	var bases []uint64 // ReadDir sorts by name; zero-padded names sort by index
	for _, e := range ents {
		if base, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			bases = append(bases, base)
		} else if strings.HasSuffix(e.Name(), segmentExt) {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, e.Name())
		}
	}
	var (
		commits []uint64 // parallel to s.segs
		dirty   bool     // a file was removed: sync the directory
	)
	for i, base := range bases {
		name := segmentName(base)
		path := filepath.Join(s.dir, name)
		tail := i == len(bases)-1
		if !tail && bases[i+1] <= s.metaFirst {
			// Followed by a segment starting at or below the first index,
			// it holds only entries below it: retired, and not read, as
			// etcd reads only the WAL files from its snapshot's on.
			s.retired = append(s.retired, path)
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("wal: open: %w", err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() > maxSegmentBytes {
			err = fmt.Errorf("%w: segment %s is %d bytes", ErrCorrupt, name, fi.Size())
		}
		var res scanResult
		if err == nil {
			var (
				data  []byte
				unmap func() error
			)
			// Preallocated space past the data reads as zeros: skip it.
			if data, unmap, err = mapFile(f, dataSize(f, fi.Size())); err == nil {
				res, err = scanSegment(name, base, data, tail)
				if uerr := unmap(); err == nil {
					err = uerr
				}
			}
		}
		if err == nil && len(res.offsets) == 0 && !tail {
			err = fmt.Errorf("%w: sealed segment %s holds no entries", ErrCorrupt, name)
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: open: %w", err)
		}
		if len(res.offsets) == 0 {
			// A tail segment created by a rotation whose first batch was
			// never synced: nothing in it was acknowledged.
			s.opts.Logger.Warn("wal: removing tail segment with no complete entry", "segment", name)
			f.Close()
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("wal: open: %w", err)
			}
			dirty = true
			continue
		}
		if last := base + uint64(len(res.offsets)) - 1; len(s.segs) == 0 && last < s.metaFirst {
			// Wholly below the first index, though the next segment
			// starts above it: the whole log was deleted (a snapshot
			// installed) and raft appended after the snapshot's index.
			// Retired; a gap may follow it.
			f.Close()
			s.retired = append(s.retired, path)
			continue
		}
		if n := len(s.segs); n > 0 && s.segs[n-1].last()+1 != base {
			f.Close()
			return fmt.Errorf("%w: segment %s does not follow entry %d", ErrCorrupt, name, s.segs[n-1].last())
		}
		if res.torn {
			s.opts.Logger.Warn("wal: erasing torn tail", "segment", name,
				"offset", res.end, "last_index", base+uint64(len(res.offsets))-1)
			if err := s.erase(f, int64(res.end)); err != nil {
				f.Close()
				return fmt.Errorf("wal: open: erase torn tail of %s: %w", name, err)
			}
		}
		s.segs = append(s.segs, &segment{base: base, path: path, f: f, offsets: res.offsets, size: int64(res.end)})
		commits = append(commits, res.commit)
	}

	if dirty {
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("wal: open: %w", err)
		}
	}
	if err := s.purge(0); err != nil {
		return fmt.Errorf("wal: open: %w", err)
	}
	if len(s.segs) > 0 {
		s.first = max(s.metaFirst, s.segs[0].base)
		s.last = s.segs[len(s.segs)-1].last()
		for _, c := range commits {
			if c != 0 {
				s.commit = c
			}
		}
	}
	return nil
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.first, nil
}

// LastIndex returns the last index in the log, 0 if it is empty.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.last, nil
}

// GetLog reads entry index into out, overwriting all its fields. It returns
// raft.ErrLogNotFound (unwrapped, as raft compares it with ==) if the entry
// is not in the log. It costs one pread and one allocation, which out.Data
// and out.Extensions share; they belong to the caller.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	if s.last == 0 || index < s.first || index > s.last {
		s.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	if l := s.recent[index%recentEntries]; l != nil && l.Index == index {
		*out = *l // raft's LogCache shares entries the same way
		s.mu.RUnlock()
		return nil
	}
	seg := s.findSegment(index)
	start, end := seg.span(index)
	buf := make([]byte, end-start)
	_, err := seg.f.ReadAt(buf, start)
	s.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("wal: read entry %d from %s: %w", index, seg.path, err)
	}
	if _, _, err := checkEntry(buf, index, out); err != nil {
		return fmt.Errorf("%w: entry %d in %s at offset %d: %w", ErrCorrupt, index, seg.path, start, err)
	}
	return nil
}

// findSegment returns the segment holding index, which must be in the log.
func (s *Store) findSegment(index uint64) *segment {
	if seg := s.segs[len(s.segs)-1]; index >= seg.base {
		return seg
	}
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].base > index })
	return s.segs[i-1]
}

// StoreLog appends one entry; see StoreLogs.
func (s *Store) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs appends entries to the log with a single write and a single
// fdatasync, and returns once they are durable. Starting a new segment adds
// an fsync of the directory. The entries must continue the log (see
// ErrNonContiguous); after DeleteRange removed a suffix, the log continues
// from the new last index. The store keeps the latest entries (the
// *raft.Log values, as raft.LogCache does) to serve GetLog from memory:
// the caller must not modify them afterwards, which raft never does.
//
// If a crash interrupts StoreLogs, a prefix of the batch may survive: this
// store is atomic per entry, not per batch, which raft does not need.
func (s *Store) StoreLogs(logs []*raft.Log) error { return s.storeLogs(logs, true) }

// StoreLogsNoSync appends logs as StoreLogs does, but returns once they are
// written and readable by GetLog, before they are durable; SyncLogs, or the
// next mutation of the log, makes them durable (raft.DeferredSyncLogStore:
// the leader sends its new entries to the followers while its own copy is
// synced). At most one such batch is ever not durable: each mutation first
// syncs the one left before it, so a crash can only tear the tail batch, as
// with StoreLogs.
func (s *Store) StoreLogsNoSync(logs []*raft.Log) error { return s.storeLogs(logs, false) }

// SyncLogs makes the entries appended by StoreLogsNoSync durable.
func (s *Store) SyncLogs() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	return s.syncPending()
}

// syncPending makes the batch StoreLogsNoSync left unsynced durable, if
// there is one. The caller holds wmu.
func (s *Store) syncPending() error {
	tail := s.unsynced
	if tail == nil {
		return nil
	}
	began := time.Now()
	if err := s.sync(tail.f); err != nil {
		return s.fail(fmt.Errorf("sync %s: %w", tail.path, err))
	}
	s.unsynced = nil
	if s.opts.OnSync != nil {
		s.opts.OnSync(s.unsyncedEntries, time.Since(began))
	}
	return nil
}

func (s *Store) storeLogs(logs []*raft.Log, durable bool) error {
	if len(logs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.syncPending(); err != nil {
		return err
	}
	want := s.last + 1
	if len(s.segs) == 0 {
		want = max(logs[0].Index, 1)
	}
	for _, l := range logs {
		if l.Index != want {
			return fmt.Errorf("%w: got index %d, want %d", ErrNonContiguous, l.Index, want)
		}
		want++
	}
	firstIdx, lastIdx := logs[0].Index, logs[len(logs)-1].Index

	commit := min(s.staged.Load(), lastIdx)
	if commit <= s.commit {
		commit = 0 // nothing new to persist
	}
	s.wbuf, s.woffs = s.wbuf[:0], s.woffs[:0]
	for i, l := range logs {
		s.woffs = append(s.woffs, uint32(len(s.wbuf)))
		var c uint64
		if i == len(logs)-1 {
			c = commit
		}
		s.wbuf = appendRecord(s.wbuf, l, c)
	}
	defer s.trimBuffer()
	if len(s.wbuf) > maxSegmentBytes-segmentHeaderSize {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(s.wbuf))
	}

	tail := (*segment)(nil)
	if n := len(s.segs); n > 0 {
		tail = s.segs[n-1]
	}
	newSeg := tail == nil || tail.size >= s.opts.SegmentSize || tail.size+int64(len(s.wbuf)) > maxSegmentBytes
	began := time.Now()
	if newSeg {
		// The new segment counts towards MaxSegments: purge first.
		if err := s.purge(1); err != nil {
			return s.fail(err)
		}
		var err error
		if tail, err = s.createSegment(firstIdx); err != nil {
			return err
		}
	} else if err := s.appendTail(tail, durable); err != nil {
		return err
	} else if !durable {
		s.unsynced, s.unsyncedEntries = tail, len(logs)
	}
	if s.opts.OnSync != nil && s.unsynced == nil {
		s.opts.OnSync(len(logs), time.Since(began))
	}

	s.mu.Lock()
	if newSeg {
		s.segs = append(s.segs, tail)
	}
	base := uint32(tail.size)
	for _, o := range s.woffs {
		tail.offsets = append(tail.offsets, base+o)
	}
	tail.size += int64(len(s.wbuf))
	if s.first == 0 {
		s.first = firstIdx
	}
	s.last = lastIdx
	if commit != 0 {
		s.commit = commit
	}
	for _, l := range logs {
		slot := &s.recent[l.Index%recentEntries]
		if len(l.Data)+len(l.Extensions) <= recentMaxBytes {
			*slot = l
		} else {
			*slot = nil
		}
	}
	s.mu.Unlock()
	return nil
}

// appendTail writes s.wbuf at the end of tail and, if durable, syncs it. A
// failed write is rolled back by erasing what it may have written, so it may
// be retried.
func (s *Store) appendTail(tail *segment, durable bool) error {
	if _, err := tail.f.WriteAt(s.wbuf, tail.size); err != nil {
		if terr := s.erase(tail.f, tail.size); terr != nil {
			return s.fail(fmt.Errorf("append to %s: %w; roll back: %w", tail.path, err, terr))
		}
		return fmt.Errorf("wal: append to %s: %w", tail.path, err)
	}
	if !durable {
		return nil
	}
	if err := s.sync(tail.f); err != nil {
		return s.fail(fmt.Errorf("sync %s: %w", tail.path, err))
	}
	return nil
}

// createSegment creates the segment starting at base, holding the header
// and s.wbuf, and makes it durable. The caller publishes it.
func (s *Store) createSegment(base uint64) (*segment, error) {
	if len(s.segs) == 0 && base < s.metaFirst {
		if err := s.resetFirst(); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(s.dir, segmentName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	if !s.opts.NoPreallocate {
		err = preallocate(f, 0, s.opts.SegmentSize)
	}
	var hdr [segmentHeaderSize]byte
	if err == nil {
		_, err = f.WriteAt(appendSegmentHeader(hdr[:0], base), 0)
	}
	if err == nil {
		_, err = f.WriteAt(s.wbuf, segmentHeaderSize)
	}
	if err != nil {
		f.Close()
		if rerr := os.Remove(path); rerr != nil {
			return nil, s.fail(fmt.Errorf("create %s: %w; remove: %w", path, err, rerr))
		}
		return nil, fmt.Errorf("wal: create segment %s: %w", path, err)
	}
	if err := s.sync(f); err != nil {
		f.Close()
		return nil, s.fail(fmt.Errorf("sync %s: %w", path, err))
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return nil, s.fail(fmt.Errorf("sync directory: %w", err))
	}
	return &segment{base: base, path: path, f: f, size: segmentHeaderSize}, nil
}

// resetFirst lets an empty log restart below the first index in the meta
// file (raft deleted the whole log and appends from an earlier index). It
// first removes every segment file, retired ones included whatever
// MaxSegments says, so that lowering the first index cannot resurrect
// deleted entries and no new segment takes the name of an old one.
func (s *Store) resetFirst() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	for _, e := range ents {
		if _, ok := parseSegmentName(e.Name()); ok {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil {
				return s.fail(err)
			}
		}
	}
	s.retired = nil
	if err := syncDir(s.dir); err != nil {
		return s.fail(err)
	}
	if renamed, err := writeMeta(s.dir, 0); err != nil {
		if renamed {
			return s.fail(err)
		}
		return err
	}
	s.metaFirst = 0
	return nil
}

// DeleteRange removes entries min through max inclusive. The range must
// cover the head of the log (compaction after a snapshot), its tail (raft
// removing a conflicting suffix) or all of it; otherwise it returns
// ErrUnsupportedDelete. Parts of the range outside the log are ignored. It
// returns once the deletion is durable:
//
//   - A head deletion durably records the new first index in the meta file,
//     then retires the segments entirely below it (see
//     Options.MaxSegments). Entries below it in the first remaining segment
//     stay on disk but are never returned.
//   - A tail deletion removes the segments entirely above the range, syncs
//     the directory, then erases the segment holding min from the record of
//     min on (truncate, preallocate again, sync). A crash part way leaves a
//     prefix of the log, never a gap.
//   - Deleting everything records last+1 as the first index, then retires
//     every segment. The next StoreLogs may start at any index; below the
//     recorded first index, every segment file is removed first.
func (s *Store) DeleteRange(min, max uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.syncPending(); err != nil {
		return err
	}
	if s.last == 0 || min > max || max < s.first || min > s.last {
		return nil
	}
	switch {
	case min <= s.first && max >= s.last:
		return s.deleteAll()
	case min <= s.first:
		return s.deleteHead(max + 1)
	case max >= s.last:
		return s.deleteTail(min)
	default:
		return fmt.Errorf("%w: [%d, %d] of [%d, %d]", ErrUnsupportedDelete, min, max, s.first, s.last)
	}
}

func (s *Store) deleteHead(first uint64) error {
	if err := s.setMetaFirst(first); err != nil {
		return err
	}
	k := 0
	for s.segs[k].last() < first {
		k++
	}
	dropped := s.segs[:k]
	s.mu.Lock()
	s.segs = append([]*segment(nil), s.segs[k:]...)
	s.first = first
	s.mu.Unlock()
	return s.retire(dropped)
}

func (s *Store) deleteTail(min uint64) error {
	c := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].base > min }) - 1
	seg := s.segs[c]
	keep := int(min - seg.base) // entries of seg that stay
	cut := c + 1
	if keep == 0 {
		cut = c
	}
	dropped := append([]*segment(nil), s.segs[cut:]...)
	var off int64
	s.mu.Lock()
	s.segs = s.segs[:cut]
	if keep > 0 {
		off = int64(seg.offsets[keep])
		seg.offsets = seg.offsets[:keep]
		seg.size = off
	}
	s.last = min - 1
	s.mu.Unlock()

	// Remove from the end so that a crash leaves a prefix of the log.
	for i := len(dropped) - 1; i >= 0; i-- {
		dropped[i].f.Close()
		if err := os.Remove(dropped[i].path); err != nil {
			return s.fail(err)
		}
	}
	if len(dropped) > 0 {
		if err := syncDir(s.dir); err != nil {
			return s.fail(fmt.Errorf("sync directory: %w", err))
		}
	}
	if keep > 0 {
		if err := s.erase(seg.f, off); err != nil {
			return s.fail(fmt.Errorf("truncate %s: %w", seg.path, err))
		}
	}
	return nil
}

func (s *Store) deleteAll() error {
	if err := s.setMetaFirst(s.last + 1); err != nil {
		return err
	}
	dropped := s.segs
	s.mu.Lock()
	s.segs = nil
	s.first, s.last, s.commit = 0, 0, 0
	s.mu.Unlock()
	return s.retire(dropped)
}

// setMetaFirst durably records first as the first index.
func (s *Store) setMetaFirst(first uint64) error {
	renamed, err := writeMeta(s.dir, first)
	if err != nil {
		if renamed {
			return s.fail(err)
		}
		return err
	}
	s.metaFirst = first
	return nil
}

// retire closes segments that are no longer published, whose entries the
// meta file already hides, keeps their files as retired and purges.
func (s *Store) retire(segs []*segment) error {
	for _, seg := range segs {
		seg.f.Close()
		s.retired = append(s.retired, seg.path)
	}
	if err := s.purge(0); err != nil {
		return s.fail(err)
	}
	return nil
}

// purge removes the oldest retired segment files while the directory holds
// more than Options.MaxSegments segments, counting extra segments about to
// be created: etcd's purge of unlocked WAL files beyond --max-wals. The
// removals are not synced: a retired file that comes back after a crash is
// retired again by Open and purged then. etcd stops the member when a purge
// fails ("failed to purge wal file"); the caller fails the store.
func (s *Store) purge(extra int) error {
	if s.opts.MaxSegments < 0 {
		return nil
	}
	for len(s.retired) > 0 && len(s.retired)+len(s.segs)+extra > s.opts.MaxSegments {
		path := s.retired[0]
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.opts.Logger.Error("failed to purge wal file", "path", path, "error", err)
			return fmt.Errorf("purge %s: %w", filepath.Base(path), err)
		}
		s.opts.Logger.Info("purged", "path", path)
		s.retired = s.retired[1:]
	}
	return nil
}

// IsMonotonic reports true: the store cannot hold gaps, so raft deletes the
// whole log after installing or restoring a snapshot instead of leaving one
// (see raft.MonotonicLogStore).
func (s *Store) IsMonotonic() bool { return true }

// StageCommitIndex records a commit index to be persisted with the next
// StoreLogs batch, on its last entry (see raft.CommitTrackingLogStore).
// Note that raft.LogCache hides this interface.
func (s *Store) StageCommitIndex(index uint64) error {
	s.staged.Store(index)
	return nil
}

// GetCommitIndex returns the latest commit index persisted with an entry,
// capped at LastIndex.
func (s *Store) GetCommitIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return min(s.commit, s.last), nil
}

// Close closes the store's files and releases the directory lock. Calls
// after the first return nil.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var err error
	if s.failed == nil {
		err = s.syncPending()
	}
	return errors.Join(err, s.closeFiles())
}

// closeFiles closes every file. The caller holds wmu and has set closed (or
// the store was never returned by Open).
func (s *Store) closeFiles() error {
	s.mu.Lock()
	segs := s.segs
	s.segs = nil
	s.first, s.last = 0, 0
	s.mu.Unlock()
	var errs []error
	for _, seg := range segs {
		errs = append(errs, seg.f.Close())
	}
	errs = append(errs, s.stable.close(), s.lock.Close())
	return errors.Join(errs...)
}

// writable returns the error a mutation must fail with, if any.
func (s *Store) writable() error {
	if s.closed {
		return ErrClosed
	}
	return s.failed
}

// fail makes err sticky: every later mutation returns it.
func (s *Store) fail(err error) error {
	s.failed = fmt.Errorf("%w: %w", ErrFailed, err)
	s.opts.Logger.Error("wal: store failed", "error", err)
	s.stable.reportFail(s.failed)
	return s.failed
}

// sync makes f's appended data durable (fdatasync), failing first if the
// injected SyncFault says so; with NoSync it does nothing.
func (s *Store) sync(f *os.File) error {
	return syncWithFault(f, s.opts.SyncFault, s.opts.NoSync)
}

func syncWithFault(f *os.File, fault func() error, noSync bool) error {
	if noSync {
		return nil
	}
	if fault != nil {
		if err := fault(); err != nil {
			return fmt.Errorf("injected fault: %w", err)
		}
	}
	return fdatasync(f)
}

// trimBuffer drops a write buffer grown by an unusually large batch.
func (s *Store) trimBuffer() {
	const keep = 16 << 20
	if cap(s.wbuf) > keep {
		s.wbuf = nil
	}
}

// erase durably removes everything in segment file f from off on: it
// truncates the file there, preallocates it again and syncs it. Afterwards
// the bytes from off read as zeros, so no record written there before can
// reappear.
func (s *Store) erase(f *os.File, off int64) error {
	if err := f.Truncate(off); err != nil {
		return err
	}
	if !s.opts.NoPreallocate && off < s.opts.SegmentSize {
		if err := preallocate(f, off, s.opts.SegmentSize-off); err != nil {
			return err
		}
	}
	return fdatasync(f)
}

// truncateSync truncates f to size and syncs it.
func truncateSync(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return fdatasync(f)
}
