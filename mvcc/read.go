package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/strata-kv/strata/engine"
)

// kvSource returns the encoded KeyValues stored at live revisions. The
// returned bytes are never modified afterwards.
type kvSource interface {
	fetch(rev revision) ([]byte, error)
	// fetchMany sets out[i] to the value of revs[i].
	fetchMany(revs []revision, out [][]byte) error
}

// seekThreshold is the number of revisions from which fetchMany walks one
// iterator in revision order instead of making point reads: an engine
// point read sets up an iterator of its own each time.
const seekThreshold = 4

// snapSource reads revisions from an engine snapshot, taken at the first
// read: requests served from the index alone take none.
type snapSource struct {
	be   engine.Backend
	snap engine.Snapshot
	key  []byte // reused key buffer
	// keyBuf backs key in a View's source: a revision key fits, so
	// reading one takes no allocation for it.
	keyBuf [32]byte
}

func (s *snapSource) snapshot() (engine.Snapshot, error) {
	if s.snap == nil {
		snap, err := s.be.NewSnapshot()
		if err != nil {
			return nil, fmt.Errorf("mvcc: snapshot: %w", err)
		}
		s.snap = snap
	}
	return s.snap, nil
}

func (s *snapSource) close() error {
	if s.snap == nil {
		return nil
	}
	err := s.snap.Close()
	s.snap = nil
	return err
}

func (s *snapSource) fetch(rev revision) ([]byte, error) {
	snap, err := s.snapshot()
	if err != nil {
		return nil, err
	}
	s.key = appendRevBytes(append(s.key[:0], prefixKey), rev, false)
	v, err := snap.Get(s.key)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, fmt.Errorf("%w: revision %v is in the index but not in the backend", ErrCorrupt, rev)
	}
	return v, err
}

func (s *snapSource) fetchMany(revs []revision, out [][]byte) error {
	if len(revs) < seekThreshold {
		for i, rev := range revs {
			v, err := s.fetch(rev)
			if err != nil {
				return err
			}
			out[i] = v
		}
		return nil
	}
	order := make([]int32, len(revs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if revs[a].less(revs[b]) {
			return -1
		}
		return 1 // revisions are distinct
	})
	snap, err := s.snapshot()
	if err != nil {
		return err
	}
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: revAreaLower, UpperBound: revAreaUpper})
	if err != nil {
		return err
	}
	var block []byte // the values are copied into blocks, not one by one
	for n, i := range order {
		s.key = appendRevBytes(append(s.key[:0], prefixKey), revs[i], false)
		// Step when the revision is close after the one before: at most
		// its distance in main revisions lies between them.
		near := n > 0 && revs[i].main-revs[order[n-1]].main <= nextSteps
		if (!near || !nextTo(it, s.key)) && (!it.Seek(s.key) || !bytes.Equal(it.Key(), s.key)) {
			if err := it.Close(); err != nil {
				return err
			}
			return fmt.Errorf("%w: revision %v is in the index but not in the backend", ErrCorrupt, revs[i])
		}
		v := it.Value()
		if cap(block)-len(block) < len(v) {
			block = make([]byte, 0, valueBlockSize(len(v), len(order)-n))
		}
		at := len(block)
		block = append(block, v...)
		out[i] = block[at:len(block):len(block)]
	}
	return it.Close()
}

// nextSteps is how many keys fetchMany steps on from one revision to the
// next, at most nextSteps main revisions after it, before it seeks: a
// range's live revisions are often close together (its keys were written
// together), and a step costs less than a seek, which descends the
// engine's tree again. Revisions further apart (other keys' writes
// between them) are sought at once.
const nextSteps = 4

// nextTo steps it on, at most nextSteps keys, to key (past its current
// key), and reports whether it got there.
func nextTo(it engine.Iterator, key []byte) bool {
	for range nextSteps {
		if !it.Next() {
			return false
		}
		switch c := bytes.Compare(it.Key(), key); {
		case c == 0:
			return true
		case c > 0:
			return false
		}
	}
	return false
}

// maxValueBlock bounds the blocks fetchMany copies values into.
const maxValueBlock = 64 << 10

// valueBlockSize is the size of a block for a value of size n and left-1
// more values after it: room for all of them if they are alike, up to
// maxValueBlock, and never less than the value.
func valueBlockSize(n, left int) int {
	return max(n, min(maxValueBlock, n*left))
}

// rangeOptions mirror etcd's mvcc.RangeOptions.
type rangeOptions struct {
	limit        int64
	rev          int64
	countOnly    bool
	fastKeysOnly bool // keys only, served from the index (no value, no lease)
	withTotal    bool
}

// rangeResult mirrors etcd's mvcc.RangeResult.
type rangeResult struct {
	kvs   []*mvccpb.KeyValue
	rev   int64
	count int
}

// reader executes the read side of requests: it is a consistent view of
// the index and the data at revision rev0 (plus, in a WriteBatch, the
// writes made so far).
type reader struct {
	ctx        context.Context
	idx        *treeIndex
	src        kvSource
	rev0       int64 // the revision the request starts from
	compactRev int64 // reads below it fail with ErrCompacted
	minRead    int64 // lowest revision read, for the compaction re-check of views
}

// rangeKeys returns the keys in [key, end) at revision ro.rev (<= 0: curRev)
// with etcd's mvcc rules: end nil is the single key, end empty is every key
// >= key; the result's rev is curRev.
func (r *reader) rangeKeys(key, end []byte, curRev int64, ro rangeOptions) (*rangeResult, error) {
	rev := ro.rev
	if rev > curRev {
		return &rangeResult{count: -1, rev: curRev}, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < r.compactRev {
		return &rangeResult{count: -1}, ErrCompacted
	}
	r.minRead = min(r.minRead, rev)
	if ro.countOnly {
		return &rangeResult{count: r.idx.count(key, end, rev), rev: curRev}, nil
	}
	ents, total := r.idx.rangeEntries(key, end, rev, int(ro.limit), ro.withTotal)
	if len(ents) == 0 {
		return &rangeResult{count: total, rev: curRev}, nil
	}
	if ro.limit > 0 && int(ro.limit) < len(ents) {
		ents = ents[:ro.limit]
	}
	kvs := make([]*mvccpb.KeyValue, len(ents))
	// The KeyValues are allocated together: one allocation, not one each.
	slab := make([]mvccpb.KeyValue, len(ents))
	if ro.fastKeysOnly {
		// etcd 3.7 serves these from the index: no value and no lease.
		for i := range ents {
			e := &ents[i]
			kv := &slab[i]
			kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version = e.key, e.created.main, e.modified.main, e.ver
			kvs[i] = kv
		}
		return &rangeResult{kvs: kvs, count: total, rev: curRev}, nil
	}
	if len(ents) == 1 {
		// A single key (a get): no revision and value lists.
		val, err := r.src.fetch(ents[0].modified)
		if err != nil {
			return nil, err
		}
		if err := decodeKV(val, &slab[0]); err != nil {
			return nil, fmt.Errorf("revision %v: %w", ents[0].modified, err)
		}
		kvs[0] = &slab[0]
		return &rangeResult{kvs: kvs, count: total, rev: curRev}, nil
	}
	// Fetch the values in chunks, checking the context between them.
	const chunk = 1024
	revs := make([]revision, min(len(ents), chunk))
	vals := make([][]byte, len(revs))
	for start := 0; start < len(ents); start += chunk {
		if r.ctx != nil && start > 0 {
			if err := r.ctx.Err(); err != nil {
				return nil, fmt.Errorf("mvcc: range: %w", err)
			}
		}
		part := ents[start:min(start+chunk, len(ents))]
		for i := range part {
			revs[i] = part[i].modified
		}
		if err := r.src.fetchMany(revs[:len(part)], vals[:len(part)]); err != nil {
			return nil, err
		}
		for i := range part {
			kv := &slab[start+i]
			if err := decodeKV(vals[i], kv); err != nil {
				return nil, fmt.Errorf("revision %v: %w", part[i].modified, err)
			}
			kvs[start+i] = kv
		}
	}
	return &rangeResult{kvs: kvs, count: total, rev: curRev}, nil
}

// View is a consistent read-only view of the store at one revision: the
// revision current when it was taken, read from the index and from an
// engine snapshot taken after it (at the view's first value read). A View
// is not safe for concurrent use; Close it when done.
type View struct {
	s   *Store
	st  storeState
	src snapSource
}

// View returns a view of the current revision.
func (s *Store) View() (*View, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// The state is loaded first: a snapshot taken after it holds every
	// revision up to st.rev.
	v := &View{s: s, st: *s.state.Load(), src: snapSource{be: s.be}}
	v.src.key = v.src.keyBuf[:0]
	return v, nil
}

// Rev returns the view's revision, the store's current revision when the
// view was taken.
func (v *View) Rev() int64 { return v.st.rev }

// CompactRev returns the compact revision when the view was taken.
func (v *View) CompactRev() int64 { return v.st.compactRev }

// Close releases the view's snapshot.
func (v *View) Close() error { return v.src.close() }

func (v *View) reader(ctx context.Context) *reader {
	return &reader{ctx: ctx, idx: v.s.idx, src: &v.src, rev0: v.st.rev, compactRev: v.st.compactRev, minRead: v.st.rev}
}

// finish fails a read that went below a compaction that started after the
// view was taken: the index it read, or the snapshot, may have lost
// revisions it needed (a missing revision shows as ErrCorrupt).
func (v *View) finish(r *reader, err error) error {
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	if r.minRead < v.s.state.Load().compactRev {
		return errCompactedUnderRead
	}
	return err
}

// errCompactedUnderRead is a view's ErrCompacted caused by a compaction
// that started after the view was taken. The Store's reads retry on a new
// view: a read of the current revision must not fail because the revision
// moved on and got compacted while it ran (etcd's never does).
var errCompactedUnderRead = fmt.Errorf("%w (during the read)", ErrCompacted)

// maxReadRetries bounds the retries of a read overtaken by compactions.
const maxReadRetries = 10

// retryRead runs read on fresh views until it is not overtaken by a
// compaction.
func retryRead[T any](s *Store, read func(*View) (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		v, err := s.View()
		if err != nil {
			var zero T
			return zero, err
		}
		out, err := read(v)
		v.Close()
		if err != errCompactedUnderRead || attempt == maxReadRetries {
			return out, err
		}
	}
}

// Range serves a RangeRequest at the view with etcd's semantics. The
// response header carries only the revision (the view's).
func (v *View) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	r := v.reader(ctx)
	t := &txnCtx{reader: r}
	resp, err := t.executeRange(req)
	if err := v.finish(r, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// Txn serves a read-only TxnRequest (one whose branches hold only ranges)
// at the view, as etcd serves a serializable read-only txn. A txn that
// writes fails with ErrTxnNotReadOnly.
func (v *View) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if !IsTxnReadOnly(req) {
		return nil, ErrTxnNotReadOnly
	}
	r := v.reader(ctx)
	t := &txnCtx{reader: r}
	resp, err := t.txn(req)
	if err := v.finish(r, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// Range serves a RangeRequest at the current revision (or the one it
// names). It does not validate the request (see ValidateRange).
//
// A read that a compaction overtakes (one that started after the read
// took its view and removed revisions it needed) is retried on a new view,
// so that it fails with ErrCompacted only if its revision is compacted.
func (s *Store) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	return retryRead(s, func(v *View) (*pb.RangeResponse, error) { return v.Range(ctx, req) })
}

// ReadTxn serves a read-only TxnRequest at the current revision, retried
// as Range is. A txn that writes fails with ErrTxnNotReadOnly.
func (s *Store) ReadTxn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	return retryRead(s, func(v *View) (*pb.TxnResponse, error) { return v.Txn(ctx, req) })
}
