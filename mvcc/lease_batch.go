package mvcc

import (
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
)

// batchLeases holds the lease changes of a WriteBatch, applied to the
// lease table (and written to the lease area) at Commit.
type batchLeases struct {
	// leases is the state, as of the batch, of every lease it changed;
	// nil means revoked.
	leases map[int64]*leaseState
	// keys is the lease, as of the batch, of every key whose lease it
	// changed; 0 means none.
	keys map[string]int64
	// autoSeq is the lessor's autoSeq as of the batch.
	autoSeq    uint64
	seqChanged bool
	// journal undoes the changes of a failed request.
	journal []leaseUndo
}

// leaseUndo restores one entry of leases or keys.
type leaseUndo struct {
	isKey     bool
	key       string
	id        int64
	had       bool // the entry was there before
	prevKey   int64
	prevLease *leaseState
}

// lease returns lease id as of the batch.
func (w *WriteBatch) lease(id int64) (leaseState, bool) {
	if st, ok := w.lb.leases[id]; ok {
		if st == nil {
			return leaseState{}, false
		}
		return *st, true
	}
	// The table's leases change only at commits, under writeMu, which the
	// batch holds: no lock needed.
	if l := w.s.leases.leases[id]; l != nil {
		return leaseState{ttl: l.ttl, remainingTTL: l.remainingTTL}, true
	}
	return leaseState{}, false
}

func (w *WriteBatch) leaseExists(id int64) bool {
	_, ok := w.lease(id)
	return ok
}

// keyLease returns the lease of key as of the batch.
func (w *WriteBatch) keyLease(key []byte) int64 {
	if id, ok := w.lb.keys[string(key)]; ok {
		return id
	}
	return w.s.leases.keyLease[string(key)]
}

// setKeyLease attaches key to lease id (0: detaches it).
func (w *WriteBatch) setKeyLease(key []byte, id int64) {
	if w.keyLease(key) == id {
		return
	}
	if w.lb.keys == nil {
		w.lb.keys = make(map[string]int64)
	}
	k := string(key)
	prev, had := w.lb.keys[k]
	w.lb.journal = append(w.lb.journal, leaseUndo{isKey: true, key: k, had: had, prevKey: prev})
	w.lb.keys[k] = id
}

// setLease sets the state of lease id (nil: revoked).
func (w *WriteBatch) setLease(id int64, st *leaseState) {
	if w.lb.leases == nil {
		w.lb.leases = make(map[int64]*leaseState)
	}
	prev, had := w.lb.leases[id]
	w.lb.journal = append(w.lb.journal, leaseUndo{id: id, had: had, prevLease: prev})
	w.lb.leases[id] = st
	w.size += 1 + 8 + 3*10
}

// undoLeases undoes the lease changes from journal position mark on.
func (w *WriteBatch) undoLeases(mark int) {
	for i := len(w.lb.journal) - 1; i >= mark; i-- {
		u := &w.lb.journal[i]
		switch {
		case u.isKey && u.had:
			w.lb.keys[u.key] = u.prevKey
		case u.isKey:
			delete(w.lb.keys, u.key)
		case u.had:
			w.lb.leases[u.id] = u.prevLease
		default:
			delete(w.lb.leases, u.id)
		}
	}
	clear(w.lb.journal[mark:])
	w.lb.journal = w.lb.journal[:mark]
}

// leaseKeys returns the keys attached to lease id as of the batch, in key
// order.
func (w *WriteBatch) leaseKeys(id int64) []string {
	var keys []string
	st, inBatch := w.lb.leases[id]
	if l := w.s.leases.leases[id]; l != nil && !(inBatch && st != nil && st.fresh) {
		for k := range l.keys {
			if bid, ok := w.lb.keys[k]; ok && bid != id {
				continue // moved by the batch
			}
			keys = append(keys, k)
		}
	}
	for k, bid := range w.lb.keys {
		if bid != id {
			continue
		}
		if w.s.leases.keyLease[k] == id && !(inBatch && st != nil && st.fresh) {
			continue // counted above
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// splitmix64 is the SplitMix64 finalizer, a bijection of uint64.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// nextLeaseID generates the ID of a grant without one: a bijection of a
// counter stored with the leases and replicated with them (in the log's
// order, and in snapshots), so every replica applying the same log picks
// the same ID, whichever member led when the grant was proposed, and an
// ID generated once is never generated again, even after its lease is
// revoked. IDs a client picked itself are skipped while they live.
func (w *WriteBatch) nextLeaseID() int64 {
	for {
		w.lb.autoSeq++
		w.lb.seqChanged = true
		id := int64(splitmix64(w.lb.autoSeq) & math.MaxInt64)
		if id != 0 && !w.leaseExists(id) {
			return id
		}
	}
}

// LeaseGrant grants lease req.ID with req.TTL seconds, as etcd's lessor
// applies a LeaseGrantRequest: a TTL below Options.MinLeaseTTL is raised
// to it, a TTL above MaxLeaseTTL fails with ErrLeaseTTLTooLarge, an ID
// already granted with ErrLeaseExists. The response has the TTL granted.
//
// An ID of 0 makes the store generate one (nextLeaseID), the same on
// every replica applying the same log and never generated twice; etcd's
// leader instead picks a random ID before proposing, which a caller may
// do as well. A client-chosen ID may be granted again once revoked, as in
// etcd. A grant takes no revision.
func (w *WriteBatch) LeaseGrant(req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	ttl := req.GetTTL()
	if ttl > MaxLeaseTTL {
		return nil, ErrLeaseTTLTooLarge
	}
	id := req.GetID()
	if id == 0 {
		id = w.nextLeaseID()
	} else if w.leaseExists(id) {
		return nil, ErrLeaseExists
	}
	ttl = max(ttl, w.s.opts.MinLeaseTTL)
	w.setLease(id, &leaseState{ttl: ttl, fresh: true})
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: w.rev}, ID: id, TTL: ttl}, nil
}

// LeaseRevoke revokes lease req.ID: as etcd, it deletes every key
// attached to it, in key order, in one revision (none if no key is
// attached), and removes the lease, in the same commit. An unknown lease
// fails with ErrLeaseNotFound.
func (w *WriteBatch) LeaseRevoke(req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	id := req.GetID()
	if !w.leaseExists(id) {
		return nil, ErrLeaseNotFound
	}
	t, mark := w.begin(), len(w.pending)
	for _, k := range w.leaseKeys(id) {
		t.deleteRange([]byte(k), nil)
	}
	w.setLease(id, nil)
	if err := w.end(t, mark, nil); err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: w.rev}}, nil
}

// LeaseCheckpoint records the remaining TTL of each lease of req (etcd's
// lease checkpoints; unknown leases are skipped, as etcd does). The
// remaining TTL does not change the expiry on a primary store; Promote
// counts from it. A remaining TTL of 0 clears it. A checkpoint takes no
// revision.
func (w *WriteBatch) LeaseCheckpoint(req *pb.LeaseCheckpointRequest) (*pb.LeaseCheckpointResponse, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	for _, c := range req.GetCheckpoints() {
		st, ok := w.lease(c.GetID())
		if !ok {
			continue
		}
		st.remainingTTL = c.GetRemaining_TTL()
		w.setLease(c.GetID(), &st)
	}
	return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: w.rev}}, nil
}

// writeLeases adds the batch's lease changes to the engine batch b, and
// returns how many bytes they add to the engine's records (negative when
// they remove more).
func (w *WriteBatch) writeLeases(b *engine.Batch, m *metaWrites) int64 {
	var added int64
	for id, st := range w.lb.leases {
		// The table is the committed one until applyLeases.
		if old := w.s.leases.leases[id]; old != nil {
			added -= old.stored
		}
		key := leaseKey(id)
		if st == nil {
			b.Delete(key)
			continue
		}
		v := encodeLease(id, st.ttl, st.remainingTTL)
		b.Set(key, v)
		st.stored = int64(len(key) + len(v))
		added += st.stored
	}
	if w.lb.seqChanged {
		m.set(b, metaBitLeaseSeq, metaLeaseSeq, putUint64(w.lb.autoSeq))
	}
	return added
}

// applyLeases makes the batch's lease changes visible in the lease table.
func (w *WriteBatch) applyLeases() {
	if len(w.lb.leases) == 0 && len(w.lb.keys) == 0 && !w.lb.seqChanged {
		return
	}
	le := w.s.leases
	le.mu.Lock()
	le.apply(w.lb.leases, w.lb.keys, w.lb.autoSeq)
	le.mu.Unlock()
}

// LeaseKeys returns the keys attached to lease id as of the batch, in key
// order (none for an unknown lease).
func (w *WriteBatch) LeaseKeys(id int64) []string { return w.leaseKeys(id) }
