package mvcc

import (
	"errors"
	"fmt"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-kv/strata/engine"
)

// WriteBatch applies many requests and commits them to the engine in one
// batch: the write path of a replication FSM that applies a whole raft
// batch at once.
//
// Each request gets its own revision (none if it changes nothing, as in
// etcd) and its own exact response, and sees the effects of the requests
// before it in the batch. Nothing is visible to readers until Commit, which
// writes every change, the new current revision and the caller's applied
// index in one engine batch, then publishes the new revision; Abort throws
// the batch away.
//
// A request that fails (ErrKeyNotFound, ErrFutureRev, ErrCompacted,
// ErrLeaseNotFound) has no effect and the batch goes on. An engine error
// while reading is sticky: every later call returns it, Commit included,
// and the batch can only be aborted.
//
// The request methods do not validate their requests: call the Validate
// functions first, as etcd's gRPC layer does. Requests and the byte slices
// they hold must not be modified until the batch is done; responses may
// share byte slices with requests and with each other.
//
// A WriteBatch is not safe for concurrent use. The store allows one open
// WriteBatch at a time: NewWriteBatch blocks until the previous one is
// committed or aborted.
type WriteBatch struct {
	s *Store
	// committed is the state when the batch began.
	committed storeState
	// rev and compactRev are the revisions as of the requests so far.
	rev        int64
	compactRev int64

	src     batchSource     // reads pending values, and committed ones from a snapshot
	pending []pendingChange // changes in revision order
	size    int             // bytes of keys and values in pending
	// compacts are the compactions and barriers requested, in order.
	compacts     []compactJob
	scheduled    int64 // last compaction scheduled by the batch, if hasScheduled
	hasScheduled bool

	// lb holds the batch's lease changes.
	lb batchLeases
	// aux holds the batch's changes to the auxiliary area, by name.
	aux map[string]auxChange

	err  error // sticky engine error
	done bool
}

// pendingChange is one change of the batch.
type pendingChange struct {
	rev   revision
	tomb  bool
	key   []byte // aliases value
	value []byte // encoded KeyValue
}

// batchSource reads revisions from the batch's own changes or, below them,
// from the engine snapshot.
type batchSource struct {
	w    *WriteBatch
	snap snapSource
}

func (b *batchSource) fetch(rev revision) ([]byte, error) {
	if rev.main > b.w.committed.rev {
		return b.pending(rev)
	}
	return b.snap.fetch(rev)
}

func (b *batchSource) fetchMany(revs []revision, out [][]byte) error {
	var committed []revision
	var idx []int
	for i, rev := range revs {
		if rev.main > b.w.committed.rev {
			v, err := b.pending(rev)
			if err != nil {
				return err
			}
			out[i] = v
		} else {
			committed = append(committed, rev)
			idx = append(idx, i)
		}
	}
	if len(committed) == 0 {
		return nil
	}
	vals := make([][]byte, len(committed))
	if err := b.snap.fetchMany(committed, vals); err != nil {
		return err
	}
	for j, i := range idx {
		out[i] = vals[j]
	}
	return nil
}

// pending returns the value of a revision of the batch.
func (b *batchSource) pending(rev revision) ([]byte, error) {
	w := b.w
	i := sort.Search(len(w.pending), func(i int) bool { return !w.pending[i].rev.less(rev) })
	if i == len(w.pending) || w.pending[i].rev != rev || w.pending[i].tomb {
		return nil, fmt.Errorf("%w: revision %v is in the index but not in the batch", ErrCorrupt, rev)
	}
	return w.pending[i].value, nil
}

// NewWriteBatch starts a write batch, waiting for the open one (if any)
// to finish.
func (s *Store) NewWriteBatch() (*WriteBatch, error) {
	s.writeMu.Lock()
	if s.closed.Load() {
		s.writeMu.Unlock()
		return nil, ErrClosed
	}
	st := *s.state.Load()
	w := &WriteBatch{s: s, committed: st, rev: st.rev, compactRev: st.compactRev}
	// The lease-ID sequence goes on from the last commit's: starting it
	// anew would hand out the IDs of revoked leases again.
	w.lb.autoSeq = s.leases.autoSeq
	w.src.w = w
	w.src.snap.be = s.be
	return w, nil
}

// Rev returns the revision after the requests applied so far.
func (w *WriteBatch) Rev() int64 { return w.rev }

// Len returns the number of changes (puts and tombstones) in the batch.
func (w *WriteBatch) Len() int { return len(w.pending) }

// Size returns about how many bytes the batch will write to the engine.
// Engines cap the size of one batch (engine.ErrBatchTooLarge): a caller
// applying many requests should commit before Size grows past a few MiB.
func (w *WriteBatch) Size() int { return w.size }

func (w *WriteBatch) usable() error {
	if w.done {
		return ErrBatchDone
	}
	return w.err
}

// begin starts a request at the batch's current revision.
func (w *WriteBatch) begin() *txnCtx {
	r := &reader{idx: w.s.idx, src: &w.src, rev0: w.rev, compactRev: w.compactRev, minRead: w.rev}
	return &txnCtx{reader: r, w: w, leaseMark: len(w.lb.journal)}
}

// end finishes a request: on success its changes, if any, take the next
// revision; on error they are undone.
func (w *WriteBatch) end(t *txnCtx, mark int, err error) error {
	if err != nil {
		w.rollback(mark, revision{main: t.rev0 + 1})
		w.undoLeases(t.leaseMark)
		if !isRequestError(err) {
			w.err = err
		}
		return err
	}
	if t.changes > 0 {
		w.rev++
	}
	return nil
}

// isRequestError tells request failures (the request has no effect) from
// engine failures (the batch is broken).
func isRequestError(err error) bool {
	for _, e := range [...]error{ErrKeyNotFound, ErrFutureRev, ErrCompacted, ErrLeaseNotFound, ErrLeaseExists, ErrLeaseTTLTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// rollback drops the changes from position mark on, which all have
// revisions at or above from, and removes them from the index.
func (w *WriteBatch) rollback(mark int, from revision) {
	for i := len(w.pending) - 1; i >= mark; i-- {
		w.s.idx.rollback(w.pending[i].key, from)
		w.size -= markedRevKeyLen + len(w.pending[i].value)
	}
	clear(w.pending[mark:])
	w.pending = w.pending[:mark]
}

func (w *WriteBatch) addPut(key []byte, rev revision, created, ver int64, value []byte, lease int64) {
	enc := appendKV(make([]byte, 0, kvSize(key, created, rev.main, ver, value, lease)), key, created, rev.main, ver, value, lease)
	w.pending = append(w.pending, pendingChange{rev: rev, key: encodedKey(enc, len(key)), value: enc})
	w.size += markedRevKeyLen + len(enc)
}

func (w *WriteBatch) addTombstone(key []byte, rev revision) {
	enc := appendKV(make([]byte, 0, kvSize(key, 0, 0, 0, nil, 0)), key, 0, 0, 0, nil, 0)
	w.pending = append(w.pending, pendingChange{rev: rev, tomb: true, key: encodedKey(enc, len(key)), value: enc})
	w.size += markedRevKeyLen + len(enc)
}

// encodedKey returns the key field of an encoding made by appendKV.
func encodedKey(enc []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	off := 1 + protowire.SizeVarint(uint64(n))
	return enc[off : off+n : off+n]
}

// Range serves a RangeRequest at the batch's current state, as a Range
// applied through the log would be.
func (w *WriteBatch) Range(req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	t := w.begin()
	resp, err := t.executeRange(req)
	return resp, w.end(t, len(w.pending), err)
}

// Put applies a PutRequest.
func (w *WriteBatch) Put(req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	t, mark := w.begin(), len(w.pending)
	resp, err := func() (*pb.PutResponse, error) {
		if err := t.checkLease(req); err != nil {
			return nil, err
		}
		prev, err := t.checkAndGetPrevKV(req)
		if err != nil {
			return nil, err
		}
		return t.executePut(req, prev)
	}()
	if err := w.end(t, mark, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// DeleteRange applies a DeleteRangeRequest.
func (w *WriteBatch) DeleteRange(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	t, mark := w.begin(), len(w.pending)
	resp, err := t.executeDeleteRange(req)
	if err := w.end(t, mark, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// Txn applies a TxnRequest. A txn that writes nothing takes no revision.
func (w *WriteBatch) Txn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	t, mark := w.begin(), len(w.pending)
	resp, err := t.txn(req)
	if err := w.end(t, mark, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// Apply applies one RequestOp (a Range, Put, DeleteRange or Txn) and
// returns its response.
func (w *WriteBatch) Apply(op *pb.RequestOp) (*pb.ResponseOp, error) {
	switch tv := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		r, err := w.Range(tv.RequestRange)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: r}}, nil
	case *pb.RequestOp_RequestPut:
		r, err := w.Put(tv.RequestPut)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: r}}, nil
	case *pb.RequestOp_RequestDeleteRange:
		r, err := w.DeleteRange(tv.RequestDeleteRange)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: r}}, nil
	case *pb.RequestOp_RequestTxn:
		r, err := w.Txn(tv.RequestTxn)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: r}}, nil
	}
	return nil, ErrKeyNotFound // an empty op, as etcd's validation answers
}

// Compact schedules a compaction at req.Revision. The compaction starts
// when the batch is committed; the returned channel is closed when it is
// done on disk (the Physical wait of etcd), or at once if the batch is
// aborted. Compacting at or below the compact revision fails with
// ErrCompacted (the channel then closes once the compactions already
// scheduled are done, as etcd's does); above the current revision with
// ErrFutureRev (and a nil channel). A compaction does not take a revision.
func (w *WriteBatch) Compact(req *pb.CompactionRequest) (*pb.CompactionResponse, <-chan struct{}, error) {
	if err := w.usable(); err != nil {
		return nil, nil, err
	}
	rev := req.GetRevision()
	if rev <= w.compactRev {
		job := compactJob{barrier: true, done: make(chan struct{})}
		w.compacts = append(w.compacts, job)
		return nil, job.done, ErrCompacted
	}
	if rev > w.rev {
		return nil, nil, ErrFutureRev
	}
	job := compactJob{rev: rev, prevCompactRev: w.compactRev, keepHash: true, done: make(chan struct{})}
	w.compacts = append(w.compacts, job)
	w.compactRev = rev
	w.scheduled, w.hasScheduled = rev, true
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: w.rev}}, job.done, nil
}

// maxKeptBatch is the largest engine batch buffer the store keeps for the
// next commit.
const maxKeptBatch = 4 << 20

// Commit writes the batch's changes, its revision and appliedIndex to the
// engine in one engine batch (with Options.WriteOptions), or in parts if
// the engine refuses it as too large (engine.ErrBatchTooLarge; see
// commitSplit), then makes them visible to readers and starts the
// compactions the batch scheduled. On error the batch is aborted and
// nothing of it is read, then or after the store is reopened. The batch is
// done after Commit either way.
//
// A batch with no change and an unchanged applied index writes nothing.
func (w *WriteBatch) Commit(appliedIndex uint64) error {
	if w.done {
		return ErrBatchDone
	}
	if w.err != nil {
		err := w.err
		w.abort()
		return err
	}
	if appliedIndex < w.committed.applied {
		w.abort()
		return fmt.Errorf("%w: %d after %d", ErrAppliedIndexRegressed, appliedIndex, w.committed.applied)
	}
	s := w.s
	leaseChanges := len(w.lb.leases) > 0 || w.lb.seqChanged
	if len(w.pending) > 0 || w.hasScheduled || leaseChanges || len(w.aux) > 0 || appliedIndex != w.committed.applied {
		b := &s.batch
		b.Reset()
		m := metaWrites{held: s.metaHeld}
		if !s.formatWritten {
			m.set(b, metaBitFormat, metaFormat, []byte(formatVersion))
		}
		added := w.writeRevisions(b, w.pending)
		added += w.writeTail(b, &m, appliedIndex)
		err := s.be.Commit(b, s.opts.WriteOptions)
		if errors.Is(err, engine.ErrBatchTooLarge) && len(w.pending) > 1 {
			m = metaWrites{held: s.metaHeld}
			added, err = w.commitSplit(b, &m, appliedIndex)
		}
		// Checked here, while the write lock is held: the buffer is shared
		// by every batch of the store.
		if b.Size() > maxKeptBatch {
			*b = engine.Batch{} // do not keep a huge buffer around
		}
		if err != nil {
			w.abort()
			return fmt.Errorf("mvcc: commit: %w", err)
		}
		s.live.Add(added + m.added)
		s.metaHeld |= m.bits
		w.applyAux()
		s.formatWritten = true
	}
	w.applyLeases()
	s.state.Store(&storeState{rev: w.rev, compactRev: w.compactRev, applied: appliedIndex})
	s.idx.published.Store(w.rev)
	for _, job := range w.compacts {
		s.compactor.enqueue(job)
	}
	if len(w.pending) > 0 {
		s.hub.notify(w.pending, w.rev)
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(w.rev, w.events())
		}
	}
	w.finish()
	return nil
}

// writeRevisions adds the revisions of changes to b and returns the bytes
// they add to the engine's records.
func (w *WriteBatch) writeRevisions(b *engine.Batch, changes []pendingChange) int64 {
	key := make([]byte, 0, markedRevKeyLen)
	var added int64
	for i := range changes {
		p := &changes[i]
		key = appendRevBytes(append(key[:0], prefixKey), p.rev, p.tomb)
		b.Set(key, p.value)
		added += int64(len(key) + len(p.value))
	}
	return added
}

// writeTail adds the rest of a commit to b: leases, auxiliary records and
// the meta records (revision, applied index, scheduled compaction).
func (w *WriteBatch) writeTail(b *engine.Batch, m *metaWrites, appliedIndex uint64) int64 {
	added := w.writeLeases(b, m)
	added += w.writeAux(b)
	m.set(b, metaBitCurrentRev, metaCurrentRev, putUint64(uint64(w.rev)))
	m.set(b, metaBitApplied, metaAppliedIndex, putUint64(appliedIndex))
	if w.hasScheduled {
		m.set(b, metaBitScheduled, metaScheduledCompact, putUint64(uint64(w.scheduled)))
	}
	return added
}

// commitSplit writes a batch the engine refused as too large (badger's
// transactions are bounded; one request, such as a DeleteRange of 100k
// keys, can be larger) as several engine batches: the revisions in chunks,
// halved until the engine takes them, then the tail (leases, auxiliary and
// meta records). The first chunk records metaSplitCommit, the revision
// they are all above, and the tail deletes it. Until the tail is written
// nothing of the batch is read: the applied index has not moved, and a
// store that opens with the record deletes the revisions above it (the
// log applies them again).
func (w *WriteBatch) commitSplit(b *engine.Batch, m *metaWrites, appliedIndex uint64) (added int64, err error) {
	s := w.s
	n := (len(w.pending) + 1) / 2
	first := true
	for i := 0; i < len(w.pending); {
		chunk := w.pending[i:min(i+n, len(w.pending))]
		b.Reset()
		if first {
			if !s.formatWritten {
				m.set(b, metaBitFormat, metaFormat, []byte(formatVersion))
			}
			b.Set(metaSplitCommit, putUint64(uint64(w.committed.rev)))
		}
		a := w.writeRevisions(b, chunk)
		err := s.be.Commit(b, s.opts.WriteOptions)
		if errors.Is(err, engine.ErrBatchTooLarge) && n > 1 {
			n /= 2
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("split commit, revisions %d of %d: %w", i, len(w.pending), err)
		}
		s.splitCommits.Add(1)
		added += a
		i += len(chunk)
		first = false
	}
	b.Reset()
	added += w.writeTail(b, m, appliedIndex)
	b.Delete(metaSplitCommit)
	if err := s.be.Commit(b, s.opts.WriteOptions); err != nil {
		return 0, fmt.Errorf("split commit, the rest: %w", err)
	}
	s.opts.Logger.Info("mvcc: committed a batch too large for the engine in parts", "revision", w.rev, "changes", len(w.pending))
	return added, nil
}

// events returns the batch's changes as watch events.
func (w *WriteBatch) events() []*mvccpb.Event {
	evs := make([]*mvccpb.Event, len(w.pending))
	for i := range w.pending {
		p := &w.pending[i]
		ev := &mvccpb.Event{Kv: &mvccpb.KeyValue{}}
		if err := decodeKV(p.value, ev.Kv); err != nil {
			panic(err) // we encoded it
		}
		if p.tomb {
			ev.Type = mvccpb.Event_DELETE
			ev.Kv.ModRevision = p.rev.main
		} else {
			ev.Type = mvccpb.Event_PUT
		}
		evs[i] = ev
	}
	return evs
}

// Abort throws the batch away. It is a no-op on a finished batch.
func (w *WriteBatch) Abort() {
	if !w.done {
		w.abort()
	}
}

func (w *WriteBatch) abort() {
	w.rollback(0, revision{main: w.committed.rev + 1})
	for _, job := range w.compacts {
		close(job.done)
	}
	w.finish()
}

func (w *WriteBatch) finish() {
	w.src.snap.close()
	w.pending = nil
	w.compacts = nil
	w.done = true
	w.s.writeMu.Unlock()
}

// single runs one request in a write batch of its own, keeping the stored
// applied index.
func single[Req, Resp any](s *Store, req Req, apply func(*WriteBatch, Req) (Resp, error)) (Resp, error) {
	var zero Resp
	w, err := s.NewWriteBatch()
	if err != nil {
		return zero, err
	}
	resp, err := apply(w, req)
	if err != nil {
		w.Abort()
		return zero, err
	}
	if err := w.Commit(w.committed.applied); err != nil {
		return zero, err
	}
	return resp, nil
}

// Put applies a PutRequest in a write batch of its own.
func (s *Store) Put(req *pb.PutRequest) (*pb.PutResponse, error) {
	return single(s, req, (*WriteBatch).Put)
}

// DeleteRange applies a DeleteRangeRequest in a write batch of its own.
func (s *Store) DeleteRange(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return single(s, req, (*WriteBatch).DeleteRange)
}

// Txn applies a TxnRequest in a write batch of its own.
func (s *Store) Txn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	return single(s, req, (*WriteBatch).Txn)
}
