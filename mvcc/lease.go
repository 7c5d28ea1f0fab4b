package mvcc

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-kv/strata/engine"
)

// This file holds the lease table: the leases granted, the keys attached
// to each, and the in-memory expiry bookkeeping of etcd v3.7.3's lessor
// (server/lease/lessor.go). Leases are changed only through a WriteBatch
// (lease_batch.go), so every replica applies the same grants, revokes and
// checkpoints in the same engine batches as the keys; expiry is decided by
// whoever drives the store (the raft leader), through Promote, Renew,
// Expired and DueCheckpoints, and nothing here revokes a lease by itself.

// MaxLeaseTTL is the largest TTL a lease can be granted with, in seconds
// (etcd's lease.MaxLeaseTTL).
const MaxLeaseTTL = 9_000_000_000

// leaseRevokeRate is etcd's default number of leases revoked per second;
// Promote spreads the expiries of piled-up leases so that about 3/4 of it
// expire per second.
const leaseRevokeRate = 1000

// Lease defaults.
const (
	defaultLeaseCheckpointInterval = 5 * time.Minute
	defaultLeaseRetryInterval      = 3 * time.Second
)

// leaseRec is one granted lease. Its fields are guarded by the lessor's mu;
// id, ttl, remainingTTL and keys change only at WriteBatch commits.
type leaseRec struct {
	id  int64
	ttl int64 // granted TTL, in seconds
	// remainingTTL is the last checkpointed remaining TTL in seconds; 0
	// means none, and the full ttl counts.
	remainingTTL int64
	// stored is the bytes of the lease's record in the engine.
	stored int64
	// expiry is when the lease expires; the zero time means never (the
	// store is not primary).
	expiry time.Time
	keys   map[string]struct{}
	// revokec is closed when the lease is revoked, for Renew waiting on an
	// expired lease.
	revokec chan struct{}
}

// remaining is the TTL Promote counts from: the checkpointed remaining
// TTL if there is one, else the granted TTL.
func (l *leaseRec) remaining() int64 {
	if l.remainingTTL > 0 {
		return l.remainingTTL
	}
	return l.ttl
}

// lessor is the store's lease table.
type lessor struct {
	// mu guards every field below and the leases' fields. The maps leases
	// and keyLease, and the leases' keys, ttl and remainingTTL, change only
	// under the store's writeMu too (at Commit), so the open WriteBatch
	// reads them without mu.
	mu       sync.RWMutex
	leases   map[int64]*leaseRec
	keyLease map[string]int64 // the lease of every key attached to one
	// primary is set between Promote and Demote: only then do leases have
	// expiries.
	primary bool
	demotec chan struct{} // closed by Demote; non-nil while primary
	expiry  leaseQueue    // one entry per lease, by expiry, while primary
	// checkpoints are the scheduled checkpoints, by time, while primary.
	checkpoints leaseQueue
	// autoSeq numbers the IDs generated for grants without one; each
	// WriteBatch goes on from it. It changes only at commits (under mu
	// and writeMu), so the open WriteBatch reads it without mu.
	autoSeq uint64

	now                func() time.Time
	minTTL             int64
	checkpointInterval time.Duration
	retryInterval      time.Duration
}

func newLessor(opts *Options) *lessor {
	return &lessor{
		leases:             make(map[int64]*leaseRec),
		keyLease:           make(map[string]int64),
		now:                time.Now,
		minTTL:             opts.MinLeaseTTL,
		checkpointInterval: opts.LeaseCheckpointInterval,
		retryInterval:      opts.LeaseRetryInterval,
	}
}

// refresh sets the expiry of l to now + ttl seconds + extend, and
// registers it in the expiry queue. The caller holds mu and is primary.
func (le *lessor) refresh(l *leaseRec, now time.Time, ttl int64, extend time.Duration) {
	l.expiry = now.Add(extend + time.Duration(ttl)*time.Second)
	le.expiry.registerOrUpdate(l.id, l.expiry)
}

// scheduleCheckpoint schedules a checkpoint of l, as etcd does for leases
// whose remaining TTL is longer than the checkpoint interval. The caller
// holds mu and is primary.
func (le *lessor) scheduleCheckpoint(l *leaseRec, now time.Time) {
	if le.checkpointInterval <= 0 {
		return
	}
	if l.remaining() > int64(le.checkpointInterval.Seconds()) {
		le.checkpoints.push(l.id, now.Add(le.checkpointInterval))
	}
}

// leaseState is a lease as a WriteBatch sees it.
type leaseState struct {
	ttl          int64
	remainingTTL int64
	// fresh marks a lease granted by the batch: the keys attached to a
	// committed lease of the same ID (revoked earlier in the batch) do not
	// count.
	fresh bool
	// stored is the bytes of the record Commit writes.
	stored int64
}

// apply makes the lease changes of a committed batch: leases holds the
// final state of every lease the batch changed (nil: revoked), keys the
// final lease of every key whose lease changed (0: none). The caller
// holds mu.
func (le *lessor) apply(leases map[int64]*leaseState, keys map[string]int64, autoSeq uint64) {
	now := le.now()
	le.autoSeq = autoSeq
	for id, st := range leases {
		old := le.leases[id]
		if st == nil || st.fresh {
			if old != nil {
				delete(le.leases, id)
				close(old.revokec)
				le.expiry.remove(id)
			}
		}
		switch {
		case st == nil:
		case st.fresh:
			l := &leaseRec{id: id, ttl: st.ttl, remainingTTL: st.remainingTTL, stored: st.stored, keys: make(map[string]struct{}), revokec: make(chan struct{})}
			le.leases[id] = l
			if le.primary {
				le.refresh(l, now, l.ttl, 0)
				le.scheduleCheckpoint(l, now)
			}
		case old != nil:
			// A checkpoint: it only records the remaining TTL, which
			// Promote honours; the expiry of a primary stays.
			old.remainingTTL = st.remainingTTL
			old.stored = st.stored
			if le.primary {
				le.scheduleCheckpoint(old, now)
			}
		}
	}
	for k, id := range keys {
		if oldID, ok := le.keyLease[k]; ok {
			if l := le.leases[oldID]; l != nil {
				delete(l.keys, k)
			}
			delete(le.keyLease, k)
		}
		if id == 0 {
			continue
		}
		if l := le.leases[id]; l != nil {
			l.keys[k] = struct{}{}
			le.keyLease[k] = id
		}
	}
}

// Lease area encoding: 'l' + the ID as 8 big-endian bytes -> the lease as
// etcd's leasepb.Lease{ID, TTL, RemainingTTL} protobuf encoding.
const (
	fieldLeaseID           protowire.Number = 1
	fieldLeaseTTL          protowire.Number = 2
	fieldLeaseRemainingTTL protowire.Number = 3
)

var (
	leaseAreaLower = []byte{prefixLease}
	leaseAreaUpper = []byte{prefixLease + 1}
	// metaLeaseSeq holds the lessor's autoSeq.
	metaLeaseSeq = []byte("m" + "lease_seq")
)

func leaseKey(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixLease}, uint64(id))
}

func encodeLease(id, ttl, remaining int64) []byte {
	var b []byte
	for _, f := range [...]struct {
		n protowire.Number
		v int64
	}{{fieldLeaseID, id}, {fieldLeaseTTL, ttl}, {fieldLeaseRemainingTTL, remaining}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.n, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	return b
}

func decodeLease(b []byte) (id, ttl, remaining int64, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, 0, fmt.Errorf("%w: lease tag: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.VarintType || num < fieldLeaseID || num > fieldLeaseRemainingTTL {
			n = protowire.ConsumeFieldValue(num, typ, b)
		} else {
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			switch num {
			case fieldLeaseID:
				id = int64(v)
			case fieldLeaseTTL:
				ttl = int64(v)
			case fieldLeaseRemainingTTL:
				remaining = int64(v)
			}
		}
		if n < 0 {
			return 0, 0, 0, fmt.Errorf("%w: lease field %d: %v", ErrCorrupt, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return id, ttl, remaining, nil
}

// restoreLeases loads the lease area into the table, and returns the
// bytes of its records. Expiries start at never: Promote sets them.
func (le *lessor) restore(snap engine.Snapshot) (stored int64, err error) {
	v, err := snap.Get(metaLeaseSeq)
	switch {
	case err == nil:
		if le.autoSeq, err = getUint64(v); err != nil {
			return 0, err
		}
	case !errors.Is(err, engine.ErrNotFound):
		return 0, fmt.Errorf("mvcc: open: %w", err)
	}
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: leaseAreaLower, UpperBound: leaseAreaUpper})
	if err != nil {
		return 0, fmt.Errorf("mvcc: open: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			return 0, fmt.Errorf("%w: lease key %x", ErrCorrupt, k)
		}
		id, ttl, remaining, err := decodeLease(it.Value())
		if err != nil {
			return 0, err
		}
		if id != int64(binary.BigEndian.Uint64(k[1:])) {
			return 0, fmt.Errorf("%w: lease %d stored under key %x", ErrCorrupt, id, k)
		}
		// As etcd, a minimum TTL raised since the grant applies.
		ttl = max(ttl, le.minTTL)
		size := int64(len(k) + len(it.Value()))
		stored += size
		le.leases[id] = &leaseRec{id: id, ttl: ttl, remainingTTL: remaining, stored: size, keys: make(map[string]struct{}), revokec: make(chan struct{})}
	}
	if err := it.Error(); err != nil {
		return 0, fmt.Errorf("mvcc: open: scan leases: %w", err)
	}
	return stored, nil
}

// attachRestored attaches the keys found by the index rebuild to their
// leases. Keys naming a lease that does not exist are left unattached.
func (s *Store) attachRestored(keyLease map[string]int64) {
	le := s.leases
	missing := 0
	for k, id := range keyLease {
		l := le.leases[id]
		if l == nil {
			missing++
			continue
		}
		l.keys[k] = struct{}{}
		le.keyLease[k] = id
	}
	if missing > 0 {
		s.opts.Logger.Warn("mvcc: keys attached to leases that do not exist", "keys", missing)
	}
}

// LeaseTimeToLive returns what etcd's LeaseTimeToLive answers for lease
// id: its granted TTL, its remaining TTL in whole seconds (truncated, as
// etcd does) and, with keys, the keys attached to it in key order. It
// fails with ErrLeaseNotFound for an unknown lease and with ErrNotPrimary
// when the store is not primary (etcd forwards the request to the
// leader). The header carries the current revision.
func (s *Store) LeaseTimeToLive(id int64, keys bool) (*pb.LeaseTimeToLiveResponse, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	le := s.leases
	le.mu.RLock()
	defer le.mu.RUnlock()
	l := le.leases[id]
	if l == nil {
		return nil, ErrLeaseNotFound
	}
	if !le.primary {
		return nil, ErrNotPrimary
	}
	resp := &pb.LeaseTimeToLiveResponse{
		Header:     &pb.ResponseHeader{Revision: s.Rev()},
		ID:         id,
		TTL:        int64(l.expiry.Sub(le.now()).Seconds()),
		GrantedTTL: l.ttl,
	}
	if keys {
		ks := make([]string, 0, len(l.keys))
		for k := range l.keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		resp.Keys = make([][]byte, len(ks))
		for i, k := range ks {
			resp.Keys[i] = []byte(k)
		}
	}
	return resp, nil
}

// Leases returns the IDs of the granted leases, in ascending order.
func (s *Store) Leases() []int64 {
	le := s.leases
	le.mu.RLock()
	ids := make([]int64, 0, len(le.leases))
	for id := range le.leases {
		ids = append(ids, id)
	}
	le.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// LeaseRenew is a keepalive of lease id: it resets its expiry to now plus
// its granted TTL, and returns that TTL. Renewals are not replicated (as
// in etcd, only the primary keeps expiries): it fails with ErrNotPrimary
// when the store is not primary, and with ErrLeaseNotFound for an unknown
// lease.
//
// A lease that has expired cannot be renewed: as etcd, LeaseRenew waits
// until it is revoked (ErrLeaseNotFound), the store is demoted
// (ErrNotPrimary) or ctx is done.
//
// clearCheckpoint reports that the lease has a checkpointed remaining TTL
// that is now stale: the caller should commit a LeaseCheckpoint of
// remaining TTL 0 for it (etcd proposes it before renewing), or a later
// Promote would count from the stale value.
func (s *Store) LeaseRenew(ctx context.Context, id int64) (ttl int64, clearCheckpoint bool, err error) {
	le := s.leases
	le.mu.RLock()
	if !le.primary {
		le.mu.RUnlock()
		return -1, false, ErrNotPrimary
	}
	l := le.leases[id]
	if l == nil {
		le.mu.RUnlock()
		return -1, false, ErrLeaseNotFound
	}
	expired := !le.now().Before(l.expiry)
	revokec, demotec := l.revokec, le.demotec
	le.mu.RUnlock()
	if expired {
		select {
		case <-revokec:
			return -1, false, ErrLeaseNotFound
		case <-demotec:
			return -1, false, ErrNotPrimary
		case <-s.closec:
			return -1, false, ErrClosed
		case <-ctx.Done():
			return -1, false, ctx.Err()
		}
	}
	le.mu.Lock()
	defer le.mu.Unlock()
	if l = le.leases[id]; l == nil {
		return -1, false, ErrLeaseNotFound
	}
	if !le.primary {
		return -1, false, ErrNotPrimary
	}
	le.refresh(l, le.now(), l.ttl, 0)
	return l.ttl, l.remainingTTL > 0, nil
}

// Expired returns up to limit leases that have expired at now, for the
// caller to revoke (through WriteBatch.LeaseRevoke), as etcd's lessor
// hands expired leases to its server. A lease returned is returned again
// after Options.LeaseRetryInterval if it is still not revoked (or
// renewed) by then. Nothing expires unless the store is primary.
func (s *Store) Expired(now time.Time, limit int) []int64 {
	le := s.leases
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary || limit <= 0 {
		return nil
	}
	var ids []int64
	for len(ids) < limit && le.expiry.Len() > 0 {
		it := le.expiry.items[0]
		l := le.leases[it.id]
		if l == nil {
			le.expiry.remove(it.id) // revoked
			continue
		}
		if now.Before(it.at) {
			break
		}
		le.expiry.registerOrUpdate(it.id, now.Add(le.retryInterval))
		if !now.Before(l.expiry) {
			ids = append(ids, l.id)
		}
	}
	return ids
}

// DueCheckpoints returns up to limit checkpoints due at now, for the
// caller to commit (through WriteBatch.LeaseCheckpoint) so that a leader
// change does not give the leases their full TTL back (etcd's lease
// checkpointing). While primary, a lease whose remaining TTL exceeds
// Options.LeaseCheckpointInterval is checkpointed once per interval.
func (s *Store) DueCheckpoints(now time.Time, limit int) []*pb.LeaseCheckpoint {
	le := s.leases
	le.mu.Lock()
	defer le.mu.Unlock()
	if !le.primary {
		return nil
	}
	var cps []*pb.LeaseCheckpoint
	for len(cps) < limit && le.checkpoints.Len() > 0 {
		it := le.checkpoints.items[0]
		if it.at.After(now) {
			break
		}
		heap.Pop(&le.checkpoints)
		l := le.leases[it.id]
		if l == nil || !now.Before(l.expiry) {
			continue
		}
		remaining := int64(math.Ceil(l.expiry.Sub(now).Seconds()))
		if remaining >= l.ttl {
			continue
		}
		cps = append(cps, &pb.LeaseCheckpoint{ID: l.id, Remaining_TTL: remaining})
	}
	return cps
}

// Promote makes the store primary, as etcd's lessor.Promote on becoming
// leader: every lease expires at now + extend + its remaining TTL (the
// checkpointed one if any, else the granted TTL), so that a leader change
// does not cut TTLs short; when many leases would expire in the same
// second, the later ones are pushed back so that about 750 expire per
// second (etcd's revoke rate). Promote on a primary store starts over.
func (s *Store) Promote(extend time.Duration) {
	le := s.leases
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.demotec == nil {
		le.demotec = make(chan struct{})
	}
	le.primary = true
	le.expiry = leaseQueue{}
	le.checkpoints = leaseQueue{}
	now := le.now()
	for _, l := range le.leases {
		le.refresh(l, now, l.remaining(), extend)
		le.scheduleCheckpoint(l, now)
	}
	if len(le.leases) < leaseRevokeRate {
		return
	}
	// etcd: spread the expiries of piled-up leases.
	ls := make([]*leaseRec, 0, len(le.leases))
	for _, l := range le.leases {
		ls = append(ls, l)
	}
	sort.Slice(ls, func(i, j int) bool {
		if !ls[i].expiry.Equal(ls[j].expiry) {
			return ls[i].expiry.Before(ls[j].expiry)
		}
		return ls[i].id < ls[j].id
	})
	baseWindow := ls[0].expiry.Sub(now)
	nextWindow := baseWindow + time.Second
	expires := 0
	target := 3 * leaseRevokeRate / 4
	for _, l := range ls {
		remaining := l.expiry.Sub(now)
		if remaining > nextWindow {
			baseWindow = remaining
			nextWindow = baseWindow + time.Second
			expires = 1
			continue
		}
		expires++
		if expires <= target {
			continue
		}
		rateDelay := float64(time.Second) * (float64(expires) / float64(target))
		rateDelay -= float64(remaining - baseWindow)
		delay := time.Duration(rateDelay)
		nextWindow = baseWindow + delay
		le.refresh(l, now, l.remaining(), delay+extend)
		le.scheduleCheckpoint(l, now)
	}
}

// Demote ends the store's primary role, as etcd's lessor.Demote on losing
// leadership: leases no longer expire, Renew and LeaseTimeToLive fail with
// ErrNotPrimary, and renewals waiting on an expired lease return.
func (s *Store) Demote() {
	le := s.leases
	le.mu.Lock()
	defer le.mu.Unlock()
	for _, l := range le.leases {
		l.expiry = time.Time{}
	}
	le.expiry = leaseQueue{}
	le.checkpoints = leaseQueue{}
	le.primary = false
	if le.demotec != nil {
		close(le.demotec)
		le.demotec = nil
	}
}

// IsPrimary reports whether the store is primary (between Promote and
// Demote).
func (s *Store) IsPrimary() bool {
	s.leases.mu.RLock()
	defer s.leases.mu.RUnlock()
	return s.leases.primary
}

// leaseQueue is a min-heap of (lease ID, time). As the expiry queue it
// holds one entry per lease (pos tracks it); as the checkpoint queue it
// may hold several (pos is nil).
type leaseQueue struct {
	items []*leaseItem
	pos   map[int64]*leaseItem
}

type leaseItem struct {
	id    int64
	at    time.Time
	index int
}

func (q *leaseQueue) Len() int { return len(q.items) }
func (q *leaseQueue) Less(i, j int) bool {
	if !q.items[i].at.Equal(q.items[j].at) {
		return q.items[i].at.Before(q.items[j].at)
	}
	return q.items[i].id < q.items[j].id
}
func (q *leaseQueue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.items[i].index = i
	q.items[j].index = j
}
func (q *leaseQueue) Push(x any) {
	it := x.(*leaseItem)
	it.index = len(q.items)
	q.items = append(q.items, it)
}
func (q *leaseQueue) Pop() any {
	n := len(q.items)
	it := q.items[n-1]
	q.items[n-1] = nil
	q.items = q.items[:n-1]
	if q.pos != nil && q.pos[it.id] == it {
		delete(q.pos, it.id)
	}
	return it
}

// push adds an entry (checkpoint queue).
func (q *leaseQueue) push(id int64, at time.Time) {
	heap.Push(q, &leaseItem{id: id, at: at})
}

// registerOrUpdate sets the one entry of id (expiry queue).
func (q *leaseQueue) registerOrUpdate(id int64, at time.Time) {
	if q.pos == nil {
		q.pos = make(map[int64]*leaseItem)
	}
	if it, ok := q.pos[id]; ok {
		it.at = at
		heap.Fix(q, it.index)
		return
	}
	it := &leaseItem{id: id, at: at}
	q.pos[id] = it
	heap.Push(q, it)
}

// remove drops the entry of id (expiry queue).
func (q *leaseQueue) remove(id int64) {
	if it, ok := q.pos[id]; ok {
		heap.Remove(q, it.index)
		delete(q.pos, id)
	}
}

// LeaseKeys returns the keys attached to lease id, in key order (none for
// an unknown lease), on any member.
func (s *Store) LeaseKeys(id int64) []string {
	le := s.leases
	le.mu.RLock()
	defer le.mu.RUnlock()
	l := le.leases[id]
	if l == nil {
		return nil
	}
	ks := make([]string, 0, len(l.keys))
	for k := range l.keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
