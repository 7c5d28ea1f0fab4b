package mvcc

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
)

// compactJob is a compaction to run, or a barrier (closed once the jobs
// before it are done).
type compactJob struct {
	rev            int64
	prevCompactRev int64 // the compact revision before this one
	keepHash       bool  // remember the compaction's hash for HashByRev
	barrier        bool
	done           chan struct{}
}

// waitCompactions waits until the compactions scheduled so far are done.
func (s *Store) waitCompactions() {
	done := make(chan struct{})
	s.compactor.enqueue(compactJob{barrier: true, done: done})
	<-done
}

// compactor runs compactions one at a time, in order, on its own
// goroutine.
type compactor struct {
	mu    sync.Mutex
	queue []compactJob // guarded by mu
	wake  chan struct{}
	stopc chan struct{}
	donec chan struct{}
}

func (c *compactor) start(s *Store) {
	c.wake = make(chan struct{}, 1)
	c.stopc = make(chan struct{})
	c.donec = make(chan struct{})
	go c.run(s)
}

func (c *compactor) enqueue(job compactJob) {
	c.mu.Lock()
	c.queue = append(c.queue, job)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// stop interrupts the running compaction and waits for the goroutine. The
// jobs still queued are released (their done channels closed); an
// unfinished compaction resumes on the next Open.
func (c *compactor) stop() {
	close(c.stopc)
	<-c.donec
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, job := range c.queue {
		close(job.done)
	}
	c.queue = nil
}

func (c *compactor) run(s *Store) {
	defer close(c.donec)
	for {
		c.mu.Lock()
		var job compactJob
		ok := len(c.queue) > 0
		if ok {
			job = c.queue[0]
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()
		if !ok {
			select {
			case <-c.wake:
				continue
			case <-c.stopc:
				return
			}
		}
		if !job.barrier {
			if err := s.compact(job, c.stopc); err != nil {
				s.opts.Logger.Warn("mvcc: compaction failed", "revision", job.rev, "error", err)
			}
		}
		close(job.done)
		select {
		case <-c.stopc:
			return
		default:
		}
	}
}

// errStopped is returned by compact when the store closes under it.
var errStopped = fmt.Errorf("mvcc: compaction interrupted by close")

// compact removes from the index and from the engine every revision at or
// below rev that is not needed to read at rev or later. The engine deletes
// go in batches of Options.CompactionBatchLimit revisions, so writers are
// never held up for long, with Options.CompactionSleepInterval between
// two batches (etcd's --compaction-batch-limit and
// --compaction-sleep-interval, with their meaning: a batch visits that
// many revisions, deleting those not kept). The last batch records the
// compaction as finished; then the engine is synced, outside any commit.
//
// Like etcd, it hashes the revisions it visits (see HashByRev).
func (s *Store) compact(job compactJob, stopc <-chan struct{}) error {
	start := time.Now()
	rev := job.rev
	keep := s.idx.compact(rev)
	h := newKVHasher(job.prevCompactRev, rev, keep)
	end := revKey(revision{main: rev + 1}, false)
	lower := append([]byte(nil), revAreaLower...)
	limit := s.opts.CompactionBatchLimit
	deleted := 0
	var b engine.Batch
	for {
		b.Reset()
		n, last, freed, err := s.compactChunk(&b, lower, end, limit, keep, h)
		if err != nil {
			return err
		}
		deleted += b.Len()
		if n < limit {
			// The last batch is committed like the others, then synced
			// apart: an engine that syncs a commit under its write lock
			// (bbolt) would hold every writer for the whole fsync of the
			// compaction's pages.
			b.Set(metaFinishedCompact, putUint64(uint64(rev)))
			if !s.finishedHeld.Load() {
				freed -= int64(len(metaFinishedCompact) + 8)
			}
			if err := s.be.Commit(&b, s.opts.WriteOptions); err != nil {
				return fmt.Errorf("mvcc: compaction commit: %w", err)
			}
			s.live.Add(-freed)
			s.finishedHeld.Store(true)
			if err := s.be.Sync(); err != nil {
				return fmt.Errorf("mvcc: compaction sync: %w", err)
			}
			s.opts.Logger.Info("mvcc: finished compaction", "revision", rev,
				"deleted", deleted, "took", time.Since(start))
			if job.keepHash {
				s.storeHash(h.sum())
			}
			return nil
		}
		if !b.Empty() {
			if err := s.be.Commit(&b, s.opts.WriteOptions); err != nil {
				return fmt.Errorf("mvcc: compaction commit: %w", err)
			}
			s.live.Add(-freed)
		}
		lower = append(last, 0) // the next key after last
		if d := s.opts.CompactionSleepInterval; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-stopc:
				t.Stop()
				return errStopped
			case <-t.C:
			}
		} else {
			select {
			case <-stopc:
				return errStopped
			default:
			}
		}
	}
}

// compactChunk adds to b the deletes of up to limit revisions from lower
// on, and returns how many it visited, the last key visited and the bytes
// of the records it deletes (keys and values).
func (s *Store) compactChunk(b *engine.Batch, lower, upper []byte, limit int, keep map[revision]struct{}, h *kvHasher) (n int, last []byte, freed int64, err error) {
	snap, err := s.be.NewSnapshot()
	if err != nil {
		return 0, nil, 0, fmt.Errorf("mvcc: compaction: %w", err)
	}
	defer snap.Close()
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, nil, 0, fmt.Errorf("mvcc: compaction: %w", err)
	}
	for ok := it.First(); ok && n < limit; ok = it.Next() {
		k := it.Key()
		rev, tomb, err := parseRevKey(k)
		if err != nil {
			it.Close()
			return 0, nil, 0, err
		}
		if _, ok := keep[rev]; !ok {
			b.Delete(k)
			freed += int64(len(k) + len(it.Value()))
		}
		h.write(k, rev, tomb, it.Value())
		last = append(last[:0], k...)
		n++
	}
	if err := it.Close(); err != nil {
		return 0, nil, 0, fmt.Errorf("mvcc: compaction scan: %w", err)
	}
	return n, bytes.Clone(last), freed, nil
}

// Compact compacts the store at req.Revision in a write batch of its own
// (keeping the applied index) and, if req.Physical, waits until the
// compaction is done on disk. See WriteBatch.Compact.
func (s *Store) Compact(req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	w, err := s.NewWriteBatch()
	if err != nil {
		return nil, err
	}
	resp, done, err := w.Compact(req)
	if cerr := w.Commit(w.committed.applied); err == nil {
		err = cerr
	}
	if req.GetPhysical() && done != nil {
		<-done
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}
