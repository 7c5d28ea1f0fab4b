package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/strata-kv/strata/engine"
)

// Options configure a Store. A nil *Options means all defaults.
type Options struct {
	// WriteOptions are used to commit every WriteBatch. The replication
	// log is the durable copy of the writes (a restart replays it from the
	// stored applied index), so the default is engine.NoSync.
	WriteOptions *engine.WriteOptions
	// CompactionBatchLimit is the number of revisions a compaction visits
	// per engine commit. The default value is 1000.
	CompactionBatchLimit int
	// CompactionSleepInterval is the pause between two compaction batches.
	// The default value is 10ms; a negative value means no pause.
	CompactionSleepInterval time.Duration
	// LeaseCheckpointInterval is how often, while primary, the remaining
	// TTL of a long lease is due for a checkpoint (see DueCheckpoints);
	// etcd's --lease-checkpoint-interval. The default value is 5 minutes;
	// a negative value disables checkpoints.
	LeaseCheckpointInterval time.Duration
	// MinLeaseTTL is the smallest TTL a lease is granted with, in seconds:
	// LeaseGrant raises a smaller TTL to it, as etcd's lessor does (etcd
	// derives it from the election timeout; the caller may instead raise
	// TTLs before proposing them). It must be the same on every replica.
	// The default value is 0 (negative TTLs become 0).
	MinLeaseTTL int64
	// LeaseRetryInterval is how long after Expired returned a lease it
	// returns it again if it is still not revoked. The default value is 3
	// seconds, etcd's.
	LeaseRetryInterval time.Duration
	// OnCommit, when set, is called by WriteBatch.Commit after the batch is
	// committed and its revisions are visible to readers, with the events
	// of the batch in revision order (a DELETE carries the key and the
	// deletion revision, as etcd's watch events do) and the new current
	// revision. Calls are made one at a time in commit order while the
	// write lock is held: the hook must be quick and must not write to the
	// store. Watchers do not need it (see NewWatchStream). The default
	// value is nil.
	OnCommit func(rev int64, events []*mvccpb.Event)
	// Logger receives the store's log lines. The default discards them.
	Logger *slog.Logger

	// watch bounds the watch hub; tests of this package make it small.
	watch watchLimits
}

// Clone returns a copy of o; a nil o gives zero Options.
func (o *Options) Clone() *Options {
	if o == nil {
		return &Options{}
	}
	c := *o
	return &c
}

// EnsureDefaults sets the unset fields of o to their default values. Open
// calls it on its own copy of the caller's options.
func (o *Options) EnsureDefaults() {
	if o.WriteOptions == nil {
		o.WriteOptions = engine.NoSync
	}
	if o.CompactionBatchLimit <= 0 {
		o.CompactionBatchLimit = 1000
	}
	if o.CompactionSleepInterval == 0 {
		o.CompactionSleepInterval = 10 * time.Millisecond
	}
	if o.LeaseCheckpointInterval == 0 {
		o.LeaseCheckpointInterval = defaultLeaseCheckpointInterval
	}
	if o.LeaseRetryInterval <= 0 {
		o.LeaseRetryInterval = defaultLeaseRetryInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.watch.ensureDefaults()
}

// Validate reports options that cannot work, with an error wrapping
// ErrInvalidOptions. It expects EnsureDefaults to have run.
func (o *Options) Validate() error {
	if o.MinLeaseTTL < 0 {
		return fmt.Errorf("%w: MinLeaseTTL %d < 0", ErrInvalidOptions, o.MinLeaseTTL)
	}
	return nil
}

// storeState is what readers need to know about the store, published
// atomically after every commit.
type storeState struct {
	rev        int64  // current revision: every revision up to it is committed
	compactRev int64  // compact revision; -1 before the first compaction
	applied    uint64 // applied index stored with the last commit
}

// Store is an etcd v3 MVCC key-value store over an engine.Backend.
//
// # Concurrency
//
// Reads (Range, View, HashByRev) run concurrently with each other and with
// the one open WriteBatch. A WriteBatch holds the store's write lock from
// NewWriteBatch to Commit or Abort, so writers are serialized; Compact and
// the other write helpers open one internally. The background compaction
// runs concurrently with readers and writers.
//
// Readers see a state published after the engine commit of a batch: the
// current revision never names a revision whose data is not committed, and
// a batch's requests become visible together.
type Store struct {
	be     engine.Backend
	opts   Options
	idx    *treeIndex
	leases *lessor
	hub    *watchHub

	// writeMu is held by the open WriteBatch (and by Close).
	writeMu sync.Mutex
	// state is the published state; replaced (never modified) under writeMu.
	state atomic.Pointer[storeState]
	// splitCommits counts the engine batches of split commits
	// (WriteBatch.commitSplit).
	splitCommits atomic.Int64
	// formatWritten records whether the format marker is stored. Guarded
	// by writeMu.
	formatWritten bool
	// batch is the engine batch commits reuse. Guarded by writeMu.
	batch engine.Batch

	compactor compactor

	// live is the bytes of the keys and values the store keeps in the
	// engine: summed by Open, moved by every commit and compaction.
	live atomic.Int64
	// metaHeld has the metaBit of each meta record stored (a meta record
	// keeps its size once stored). Guarded by writeMu.
	metaHeld uint8
	// finishedHeld records that metaFinishedCompact is stored; the
	// compactor writes it outside writeMu.
	finishedHeld atomic.Bool
	// auxSizes is the bytes of each stored auxiliary record, by name.
	// Guarded by writeMu.
	auxSizes map[string]int64

	hashMu sync.RWMutex
	hashes []KeyValueHash // hashes of the last compactions; guarded by hashMu

	closed atomic.Bool
	closec chan struct{} // closed by Close
}

// Open opens the store kept in be, rebuilding the key index from the
// revision area, and resumes a compaction that was interrupted. The Store
// does not own be: close the Store, then be.
func Open(be engine.Backend, opts *Options) (*Store, error) {
	opts = opts.Clone() // the caller's options are never changed
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Store{be: be, opts: *opts, idx: newTreeIndex(), auxSizes: map[string]int64{}, closec: make(chan struct{})}
	s.leases = newLessor(&s.opts)
	st, scheduled, finished, err := s.restore()
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	s.idx.published.Store(st.rev)
	s.compactor.start(s)
	s.hub = newWatchHub(s, st.rev)
	if scheduled > finished {
		s.opts.Logger.Info("mvcc: resuming interrupted compaction", "revision", scheduled, "finished", finished)
		// As etcd, the hash of a resumed compaction is not kept: it does
		// not cover every revision since the compaction before.
		s.compactor.enqueue(compactJob{rev: scheduled, prevCompactRev: finished, done: make(chan struct{})})
	}
	return s, nil
}

// restore reads the meta area and rebuilds the index.
func (s *Store) restore() (st *storeState, scheduled, finished int64, err error) {
	if err := s.undoSplitCommit(); err != nil {
		return nil, 0, 0, err
	}
	snap, err := s.be.NewSnapshot()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: open: %w", err)
	}
	defer snap.Close()

	meta := func(key []byte) (int64, bool, error) {
		v, found, err := metaFound(snap, key)
		if err != nil {
			return 0, false, fmt.Errorf("mvcc: open: %w", err)
		}
		return v, found, nil
	}

	format, err := snap.Get(metaFormat)
	switch {
	case err == nil:
		if string(format) != formatVersion {
			return nil, 0, 0, fmt.Errorf("%w: format %q, want %q", ErrForeignData, format, formatVersion)
		}
		s.formatWritten = true
	case !errors.Is(err, engine.ErrNotFound):
		return nil, 0, 0, fmt.Errorf("mvcc: open: %w", err)
	}

	st = &storeState{rev: 1, compactRev: -1}
	applied, _, err := meta(metaAppliedIndex)
	if err != nil {
		return nil, 0, 0, err
	}
	st.applied = uint64(applied)
	storedRev, _, err := meta(metaCurrentRev)
	if err != nil {
		return nil, 0, 0, err
	}
	scheduled, scheduledFound, err := meta(metaScheduledCompact)
	if err != nil {
		return nil, 0, 0, err
	}
	if !scheduledFound {
		scheduled = -1
	}
	finished, finishedFound, err := meta(metaFinishedCompact)
	if err != nil {
		return nil, 0, 0, err
	}
	if finishedFound {
		st.compactRev = finished
	} else {
		finished = -1
	}

	leaseBytes, err := s.leases.restore(snap)
	if err != nil {
		return nil, 0, 0, err
	}
	s.live.Add(leaseBytes)
	if err := s.countRecords(snap); err != nil {
		return nil, 0, 0, err
	}
	maxRev, n, err := s.rebuildIndex(snap)
	if err != nil {
		return nil, 0, 0, err
	}
	if n > 0 && !s.formatWritten {
		return nil, 0, 0, fmt.Errorf("%w: revision area without format marker", ErrForeignData)
	}
	// As etcd: a compaction may have removed the revisions at the top (a
	// tombstone at the compact revision), so the stored revisions alone
	// may be behind.
	st.rev = max(st.rev, storedRev, maxRev, st.compactRev, scheduled)
	if scheduled > st.compactRev {
		st.compactRev = scheduled
	}
	return st, scheduled, finished, nil
}

// metaFound reads the meta record key from snap as an integer, and whether
// it is there.
func metaFound(snap engine.Snapshot, key []byte) (int64, bool, error) {
	v, err := snap.Get(key)
	if errors.Is(err, engine.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", key[1:], err)
	}
	u, err := getUint64(v)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", key[1:], err)
	}
	return int64(u), true, nil
}

// undoSplitCommitChunk is how many revisions undoSplitCommit deletes in
// one engine batch.
const undoSplitCommitChunk = 4096

// undoSplitCommit deletes what a split commit the process did not finish
// wrote (WriteBatch.commitSplit): the revisions above the one
// metaSplitCommit records, then the record. The applied index never
// covered them: the raft log applies their requests again.
func (s *Store) undoSplitCommit() error {
	snap, err := s.be.NewSnapshot()
	if err != nil {
		return fmt.Errorf("mvcc: open: %w", err)
	}
	defer snap.Close()
	above, found, err := metaFound(snap, metaSplitCommit)
	if err != nil {
		return fmt.Errorf("mvcc: open: %w", err)
	}
	if !found {
		return nil
	}
	lower := revKeysFrom(above + 1)
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: lower, UpperBound: revAreaUpper})
	if err != nil {
		return fmt.Errorf("mvcc: open: %w", err)
	}
	defer it.Close()
	var b engine.Batch
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		b.Delete(it.Key())
		if n++; b.Len() == undoSplitCommitChunk {
			if err := s.be.Commit(&b, s.opts.WriteOptions); err != nil {
				return fmt.Errorf("mvcc: open: undo split commit: %w", err)
			}
			b.Reset()
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("mvcc: open: undo split commit: %w", err)
	}
	b.Delete(metaSplitCommit)
	if err := s.be.Commit(&b, s.opts.WriteOptions); err != nil {
		return fmt.Errorf("mvcc: open: undo split commit: %w", err)
	}
	s.opts.Logger.Warn("mvcc: removed the revisions of an unfinished split commit", "above-revision", above, "revisions", n)
	return nil
}

// rebuildIndex scans the revision area in revision order and rebuilds the
// key index, as etcd's restore does, and attaches the live keys to their
// leases. It returns the highest revision seen and the number of entries.
func (s *Store) rebuildIndex(snap engine.Snapshot) (maxRev int64, n int, err error) {
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: revAreaLower, UpperBound: revAreaUpper})
	if err != nil {
		return 0, 0, fmt.Errorf("mvcc: open: %w", err)
	}
	defer it.Close()
	tree := s.idx.tree // single-threaded here: no lock needed
	keyLease := make(map[string]int64)
	var kv mvccpb.KeyValue
	for ok := it.First(); ok; ok = it.Next() {
		rev, tomb, err := parseRevKey(it.Key())
		if err != nil {
			return 0, 0, err
		}
		kv.Reset()
		if err := decodeKV(it.Value(), &kv); err != nil {
			return 0, 0, fmt.Errorf("revision %v: %w", rev, err)
		}
		n++
		s.live.Add(int64(len(it.Key()) + len(it.Value())))
		maxRev = rev.main
		switch {
		case !tomb && kv.Lease != 0:
			keyLease[string(kv.Key)] = kv.Lease
		case len(keyLease) > 0:
			delete(keyLease, string(kv.Key))
		}
		ki, found := tree.Get(&keyIndex{key: kv.Key})
		switch {
		case found && tomb:
			ki.tombstone(rev) // a tombstone of a dead key is ignored, as etcd does
		case found:
			ki.put(rev)
		default:
			ki = &keyIndex{key: append([]byte(nil), kv.Key...)}
			if tomb {
				ki.restoreTombstone(rev)
			} else {
				ki.restore(revision{main: kv.CreateRevision}, rev, kv.Version)
			}
			tree.ReplaceOrInsert(ki)
		}
	}
	if err := it.Error(); err != nil {
		return 0, 0, fmt.Errorf("mvcc: open: scan: %w", err)
	}
	s.attachRestored(keyLease)
	s.idx.resetLive(maxRev)
	return maxRev, n, nil
}

// Meta records the store writes at commits, as bits of Store.metaHeld.
const (
	metaBitFormat uint8 = 1 << iota
	metaBitCurrentRev
	metaBitApplied
	metaBitScheduled
	metaBitLeaseSeq
)

// metaWrites collects the meta records of a commit, and the bytes of
// those not stored before.
type metaWrites struct {
	held  uint8 // Store.metaHeld
	bits  uint8 // records new to the engine
	added int64
}

// set adds a meta record to b.
func (m *metaWrites) set(b *engine.Batch, bit uint8, key, value []byte) {
	b.Set(key, value)
	if (m.held|m.bits)&bit == 0 {
		m.bits |= bit
		m.added += int64(len(key) + len(value))
	}
}

// countRecords adds the meta and auxiliary records to the live bytes at
// open, and notes which meta records and auxiliary names are stored.
func (s *Store) countRecords(snap engine.Snapshot) error {
	metas := [...]struct {
		bit uint8
		key []byte
	}{
		{metaBitFormat, metaFormat}, {metaBitCurrentRev, metaCurrentRev}, {metaBitApplied, metaAppliedIndex},
		{metaBitScheduled, metaScheduledCompact}, {metaBitLeaseSeq, metaLeaseSeq},
	}
	for _, area := range [...][2]byte{{prefixMeta, prefixMeta + 1}, {prefixAux, prefixAux + 1}} {
		it, err := snap.NewIter(&engine.IterOptions{LowerBound: area[:1], UpperBound: area[1:]})
		if err != nil {
			return fmt.Errorf("mvcc: open: %w", err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			n := int64(len(k) + len(it.Value()))
			s.live.Add(n)
			if k[0] == prefixAux {
				s.auxSizes[string(k[1:])] = n
				continue
			}
			for _, m := range metas {
				if bytes.Equal(k, m.key) {
					s.metaHeld |= m.bit
				}
			}
			if bytes.Equal(k, metaFinishedCompact) {
				s.finishedHeld.Store(true)
			}
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("mvcc: open: scan: %w", err)
		}
	}
	return nil
}

// Close stops the background compaction (an unfinished one resumes on the
// next Open), closes every WatchStream and stops the watch loops, and
// waits for the open WriteBatch to finish. It does not close the backend.
// Close is idempotent.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	close(s.closec)
	s.hub.close()
	s.compactor.stop()
	return nil
}

// Rev returns the current revision.
func (s *Store) Rev() int64 { return s.state.Load().rev }

// CompactRev returns the compact revision, or -1 if the store was never
// compacted.
func (s *Store) CompactRev() int64 { return s.state.Load().compactRev }

// AppliedIndex returns the applied index stored with the last commit.
func (s *Store) AppliedIndex() uint64 { return s.state.Load().applied }

// LiveBytes returns the bytes of the keys and values the store keeps in
// its engine: for the keyspace, the revision key and the encoded KeyValue
// of every revision and tombstone a compaction has not removed; and the
// lease, meta and auxiliary records. A put of key k and value v adds
// len(k)+len(v) and a few dozen bytes of revisions and protobuf fields; a
// compaction takes off what it removes. The figure is summed anew from
// the engine whenever the store is opened (at start, and after a snapshot
// is restored), and kept up by the commits and compactions at the cost of
// an addition per record.
func (s *Store) LiveBytes() int64 { return s.live.Load() }

// Stats returns the engine's space figures (engine.Stats). Where the
// engine cannot tell what of its files is in use (InUseUnknown: pebble,
// badger), InUse is LiveBytes, at most Size (compression can make the
// files smaller than the data they hold), and InUseUnknown is cleared.
// bbolt's own figure, its size minus its free pages, is kept, as etcd
// reports it.
func (s *Store) Stats() (engine.Stats, error) {
	st, err := s.be.Stats()
	if err != nil {
		return engine.Stats{}, err
	}
	if st.InUseUnknown {
		st.InUse = min(s.LiveBytes(), st.Size)
		st.InUseUnknown = false
	}
	return st, nil
}

// KeyCount returns the number of keys in the index, including deleted keys
// whose history is not compacted yet.
func (s *Store) KeyCount() int { return s.idx.Len() }
