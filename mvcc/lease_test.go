package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// mustGrant grants lease id with ttl seconds in a batch of its own.
func mustGrant(t testing.TB, s *Store, id, ttl int64) {
	t.Helper()
	w, err := s.NewWriteBatch()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.LeaseGrant(&pb.LeaseGrantRequest{ID: id, TTL: ttl}); err != nil {
		w.Abort()
		t.Fatalf("grant %d: %v", id, err)
	}
	if err := w.Commit(s.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
}

// batch runs f in a write batch of its own and commits it.
func batch(t testing.TB, s *Store, f func(w *WriteBatch)) {
	t.Helper()
	w, err := s.NewWriteBatch()
	if err != nil {
		t.Fatal(err)
	}
	f(w)
	if err := w.Commit(s.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
}

func revoke(s *Store, id int64) (*pb.LeaseRevokeResponse, error) {
	return single(s, &pb.LeaseRevokeRequest{ID: id}, (*WriteBatch).LeaseRevoke)
}

func checkpoint(t testing.TB, s *Store, id, remaining int64) {
	t.Helper()
	req := &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: id, Remaining_TTL: remaining}}}
	if _, err := single(s, req, (*WriteBatch).LeaseCheckpoint); err != nil {
		t.Fatal(err)
	}
}

// leaseTable describes the lease table: "id ttl/remaining: keys".
func leaseTable(s *Store) []string {
	le := s.leases
	le.mu.RLock()
	defer le.mu.RUnlock()
	var out []string
	for id, l := range le.leases {
		var ks []string
		for k := range l.keys {
			ks = append(ks, k)
			if le.keyLease[k] != id {
				panic(fmt.Sprintf("key %q in lease %d, mapped to %d", k, id, le.keyLease[k]))
			}
		}
		sort.Strings(ks)
		out = append(out, fmt.Sprintf("%d %d/%d: %v", id, l.ttl, l.remainingTTL, ks))
	}
	for k, id := range le.keyLease {
		if _, ok := le.leases[id].keys[k]; !ok {
			panic(fmt.Sprintf("key %q mapped to %d, not in it", k, id))
		}
	}
	sort.Strings(out)
	return out
}

func putLease(t testing.TB, s *Store, k, v string, id int64) {
	t.Helper()
	if _, err := s.Put(&pb.PutRequest{Key: []byte(k), Value: []byte(v), Lease: id}); err != nil {
		t.Fatalf("put %s with lease %d: %v", k, id, err)
	}
}

func wantTable(t testing.TB, s *Store, want ...string) {
	t.Helper()
	if got := leaseTable(s); !slices.Equal(got, want) {
		t.Fatalf("lease table %q, want %q", got, want)
	}
}

// fakeClock is a settable clock for the lessor.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// withClock gives s's lessor a fake clock. Call it before using leases.
func withClock(s *Store) *fakeClock {
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	s.leases.now = c.now
	return c
}

func TestLeaseGrant(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustPut(t, s, "a", "1")
		w, _ := s.NewWriteBatch()
		r, err := w.LeaseGrant(&pb.LeaseGrantRequest{ID: 5, TTL: 10})
		if err != nil || r.ID != 5 || r.TTL != 10 || r.Header.Revision != 2 {
			t.Fatalf("grant: %v %v", r, err)
		}
		for _, tc := range []struct {
			req  *pb.LeaseGrantRequest
			want error
		}{
			{&pb.LeaseGrantRequest{ID: 5, TTL: 10}, ErrLeaseExists},
			{&pb.LeaseGrantRequest{ID: 6, TTL: MaxLeaseTTL + 1}, ErrLeaseTTLTooLarge},
		} {
			if _, err := w.LeaseGrant(tc.req); err != tc.want {
				t.Fatalf("%v: %v, want %v", tc.req, err, tc.want)
			}
		}
		if _, err := w.LeaseGrant(&pb.LeaseGrantRequest{ID: -3, TTL: MaxLeaseTTL}); err != nil {
			t.Fatal(err)
		}
		var auto []int64
		for range 3 {
			r, err := w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 7})
			if err != nil || r.ID <= 0 {
				t.Fatalf("auto grant: %v %v", r, err)
			}
			auto = append(auto, r.ID)
		}
		if err := w.Commit(1); err != nil {
			t.Fatal(err)
		}
		if s.Rev() != 2 {
			t.Fatalf("grants took a revision: %d", s.Rev())
		}
		want := append([]int64{-3, 5}, auto...)
		slices.Sort(want)
		if got := s.Leases(); !slices.Equal(got, want) {
			t.Fatalf("Leases %v, want %v", got, want)
		}
		// Another store applying the same grants picks the same IDs.
		s2, _ := newTestStore(t, e, nil)
		batch(t, s2, func(w *WriteBatch) {
			w.LeaseGrant(&pb.LeaseGrantRequest{ID: 5, TTL: 10})
			w.LeaseGrant(&pb.LeaseGrantRequest{ID: -3, TTL: 10})
			for i := range 3 {
				if r, _ := w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 7}); r.ID != auto[i] {
					t.Fatalf("auto ID %d on another store, want %d", r.ID, auto[i])
				}
			}
		})
		// An aborted batch does not use up IDs; a grant after a restart
		// does not reuse one.
		w, _ = s.NewWriteBatch()
		r, _ = w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 7})
		next := r.ID
		w.Abort()
		s.Close()
		s, err = Open(s.be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		batch(t, s, func(w *WriteBatch) {
			if r, _ := w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 7}); r.ID != next || slices.Contains(auto, r.ID) {
				t.Fatalf("auto ID %d after restart, want %d", r.ID, next)
			}
		})
	})
}

func TestLeaseAttach(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustGrant(t, s, 5, 10)
		mustGrant(t, s, 6, 20)
		putLease(t, s, "k1", "1", 5)
		putLease(t, s, "k2", "1", 5)
		wantTable(t, s, "5 10/0: [k1 k2]", "6 20/0: []")
		putLease(t, s, "k1", "2", 6) // moves
		wantTable(t, s, "5 10/0: [k2]", "6 20/0: [k1]")
		if _, err := s.Put(&pb.PutRequest{Key: []byte("k1"), Value: []byte("3"), IgnoreLease: true}); err != nil {
			t.Fatal(err)
		}
		if kv := get(t, s, "k1"); kv.Lease != 6 {
			t.Fatalf("ignore_lease: %v", kv)
		}
		wantTable(t, s, "5 10/0: [k2]", "6 20/0: [k1]")
		putLease(t, s, "k1", "4", 0) // detaches
		wantTable(t, s, "5 10/0: [k2]", "6 20/0: []")
		putLease(t, s, "k3", "1", 6)
		if _, err := s.DeleteRange(delReq("k3", "")); err != nil {
			t.Fatal(err)
		}
		wantTable(t, s, "5 10/0: [k2]", "6 20/0: []")
		rev := s.Rev()
		// Unknown leases: the request has no effect.
		if _, err := s.Put(&pb.PutRequest{Key: []byte("k4"), Lease: 7}); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("put with an unknown lease: %v", err)
		}
		if _, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k4"), Lease: 6}}},
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k5"), Lease: 7}}},
		}}); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("txn with an unknown lease: %v", err)
		}
		// A txn failing after a write (a put with ignore_lease of a key
		// an earlier delete of the txn removed, etcd's panic) is undone,
		// lease attachment included.
		putLease(t, s, "z", "1", 0)
		rev = s.Rev()
		if _, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k6"), Lease: 6}}},
			opDel("z", "\x00"),
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("z"), IgnoreLease: true}}},
		}}); !errors.Is(err, ErrKeyNotFound) {
			t.Fatalf("failing txn: %v", err)
		}
		if s.Rev() != rev {
			t.Fatalf("failed requests took revision %d", s.Rev())
		}
		wantTable(t, s, "5 10/0: [k2]", "6 20/0: []")
		// In one batch: grant, attach, revoke, grant again, attach.
		batch(t, s, func(w *WriteBatch) {
			w.LeaseGrant(&pb.LeaseGrantRequest{ID: 8, TTL: 1})
			if _, err := w.Put(&pb.PutRequest{Key: []byte("x"), Lease: 8}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Put(&pb.PutRequest{Key: []byte("k2"), Lease: 8}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: 8}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Put(&pb.PutRequest{Key: []byte("y"), Lease: 8}); !errors.Is(err, ErrLeaseNotFound) {
				t.Fatalf("put with a lease revoked in the batch: %v", err)
			}
			w.LeaseGrant(&pb.LeaseGrantRequest{ID: 8, TTL: 2})
			if _, err := w.Put(&pb.PutRequest{Key: []byte("y"), Lease: 8}); err != nil {
				t.Fatal(err)
			}
		})
		wantTable(t, s, "5 10/0: []", "6 20/0: []", "8 2/0: [y]")
		if get(t, s, "x") != nil || get(t, s, "k2") != nil {
			t.Fatal("keys of the revoked lease survive")
		}
	})
}

func TestLeaseRevoke(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustGrant(t, s, 5, 10)
		mustGrant(t, s, 6, 10)
		for _, k := range []string{"b", "a", "c"} {
			putLease(t, s, k, "1", 5)
		}
		putLease(t, s, "d", "1", 6)
		ws := newStream(t, s, nil)
		c := newCollector(t, ws)
		id := mustWatch(t, ws, watchReq("\x00", "\x00", 0))
		rev := s.Rev()
		r, err := revoke(s, 5)
		if err != nil || r.Header.Revision != rev+1 || s.Rev() != rev+1 {
			t.Fatalf("revoke: %v %v, rev %d", r, err, s.Rev())
		}
		rs := c.waitFor("deletes", func(rs []*pb.WatchResponse) bool { return len(rs) == 2 })
		if got := showResps(rs[1:]); got != fmt.Sprintf("id=%d rev=%d [\"DELETE a=@%d\" \"DELETE b=@%d\" \"DELETE c=@%d\"]\n", id, rev+1, rev+1, rev+1, rev+1) {
			t.Fatalf("revoke events: %s", got)
		}
		wantTable(t, s, "6 10/0: [d]")
		if resp := mustRange(t, s, rangeReq("\x00", "\x00")); !slices.Equal(keysOf(resp.Kvs), []string{"d"}) {
			t.Fatalf("keys after revoke: %v", keysOf(resp.Kvs))
		}
		if _, err := revoke(s, 5); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		// A lease without keys takes no revision.
		mustGrant(t, s, 7, 10)
		if r, err := revoke(s, 7); err != nil || r.Header.Revision != rev+1 || s.Rev() != rev+1 {
			t.Fatalf("revoke without keys: %v %v", r, err)
		}
		wantTable(t, s, "6 10/0: [d]")
	})
}

func TestLeaseExpiry(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		clock := withClock(s)
		ctx := context.Background()
		mustGrant(t, s, 5, 10)
		putLease(t, s, "k", "v", 5)
		// Not primary: no expiry, no renewal, no TTL.
		if _, err := s.LeaseTimeToLive(5, false); err != ErrNotPrimary {
			t.Fatalf("TimeToLive while not primary: %v", err)
		}
		if _, _, err := s.LeaseRenew(ctx, 5); err != ErrNotPrimary {
			t.Fatalf("Renew while not primary: %v", err)
		}
		if ids := s.Expired(clock.add(time.Hour), 10); ids != nil {
			t.Fatalf("expired while not primary: %v", ids)
		}
		s.Promote(0)
		mustGrant(t, s, 6, 30)
		ttl := func(id int64) int64 {
			t.Helper()
			r, err := s.LeaseTimeToLive(id, true)
			if err != nil {
				t.Fatal(err)
			}
			return r.TTL
		}
		if r, err := s.LeaseTimeToLive(5, true); err != nil || r.TTL != 10 || r.GrantedTTL != 10 || len(r.Keys) != 1 || string(r.Keys[0]) != "k" || r.ID != 5 {
			t.Fatalf("TimeToLive: %v %v", r, err)
		}
		if _, err := s.LeaseTimeToLive(9, false); err != ErrLeaseNotFound {
			t.Fatalf("TimeToLive of an unknown lease: %v", err)
		}
		now := clock.add(4 * time.Second)
		if ttl(5) != 6 || s.Expired(now, 10) != nil {
			t.Fatalf("after 4s: ttl %d", ttl(5))
		}
		now = clock.add(6 * time.Second) // 10s: lease 5 expires
		if ids := s.Expired(now, 10); !slices.Equal(ids, []int64{5}) {
			t.Fatalf("expired at 10s: %v", ids)
		}
		if ids := s.Expired(now, 10); ids != nil {
			t.Fatalf("expired again at once: %v", ids)
		}
		now = clock.add(3 * time.Second) // the retry interval
		if ids := s.Expired(now, 10); !slices.Equal(ids, []int64{5}) {
			t.Fatalf("expired after the retry interval: %v", ids)
		}
		// An expired lease is not renewed: Renew waits for its revoke.
		errc := make(chan error)
		go func() {
			_, _, err := s.LeaseRenew(ctx, 5)
			errc <- err
		}()
		select {
		case err := <-errc:
			t.Fatalf("renew of an expired lease returned %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := revoke(s, 5); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != ErrLeaseNotFound {
			t.Fatalf("renew of a revoked lease: %v", err)
		}
		// Renew resets the expiry.
		if ttl(6) != 17 {
			t.Fatalf("lease 6: ttl %d", ttl(6))
		}
		if got, clear, err := s.LeaseRenew(ctx, 6); got != 30 || clear || err != nil {
			t.Fatalf("renew: %d %v %v", got, clear, err)
		}
		if ttl(6) != 30 {
			t.Fatalf("after renew: ttl %d", ttl(6))
		}
		if ids := s.Expired(clock.add(29*time.Second), 10); ids != nil {
			t.Fatalf("expired before its renewed TTL: %v", ids)
		}
		if ids := s.Expired(clock.add(time.Second), 10); !slices.Equal(ids, []int64{6}) {
			t.Fatalf("expired after its renewed TTL: %v", ids)
		}
		// Demote: nothing expires, renewals waiting return.
		go func() {
			_, _, err := s.LeaseRenew(ctx, 6)
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond)
		s.Demote()
		if err := <-errc; err != ErrNotPrimary {
			t.Fatalf("renew across a demotion: %v", err)
		}
		if ids := s.Expired(clock.add(time.Hour), 10); ids != nil || s.IsPrimary() {
			t.Fatalf("expired after demotion: %v", ids)
		}
		// Promote with an extension.
		s.Promote(5 * time.Second)
		if ttl(6) != 35 {
			t.Fatalf("after promote(5s): ttl %d", ttl(6))
		}
		// A renewal waiting on an expired lease gives up with its context.
		clock.add(time.Minute)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		if _, _, err := s.LeaseRenew(cctx, 6); err != context.DeadlineExceeded {
			t.Fatalf("renew with a context: %v", err)
		}
		if _, _, err := s.LeaseRenew(ctx, 99); err != ErrLeaseNotFound {
			t.Fatalf("renew of an unknown lease: %v", err)
		}
	})
}

func TestLeaseCheckpoint(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		opts := testOptions()
		opts.LeaseCheckpointInterval = 10 * time.Second
		dir := t.TempDir()
		be := openBackendNoCleanup(t, e, dir)
		defer func() { be.Close() }()
		s, err := Open(be, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close() }()
		clock := withClock(s)
		ctx := context.Background()
		s.Promote(0)
		mustGrant(t, s, 5, 100)
		mustGrant(t, s, 6, 5) // too short to checkpoint
		if cps := s.DueCheckpoints(clock.add(9*time.Second), 10); cps != nil {
			t.Fatalf("checkpoints before the interval: %v", cps)
		}
		now := clock.add(21 * time.Second) // 30s after the grant
		cps := s.DueCheckpoints(now, 10)
		if len(cps) != 1 || cps[0].ID != 5 || cps[0].Remaining_TTL != 70 {
			t.Fatalf("checkpoints at 30s: %v", cps)
		}
		if cps := s.DueCheckpoints(now, 10); cps != nil {
			t.Fatalf("checkpoints again: %v", cps)
		}
		checkpoint(t, s, 5, 70)
		checkpoint(t, s, 42, 7) // unknown: skipped
		wantTable(t, s, "5 100/70: []", "6 5/0: []")
		if cps := s.DueCheckpoints(clock.add(10*time.Second), 10); len(cps) != 1 || cps[0].Remaining_TTL != 60 {
			t.Fatalf("next checkpoint: %v", cps)
		}
		// A new leader counts from the checkpoint, not the full TTL.
		s.Demote()
		s.Promote(0)
		if r, _ := s.LeaseTimeToLive(5, false); r.TTL != 70 {
			t.Fatalf("TTL after promote: %d, want 70", r.TTL)
		}
		// And so does one after a restart.
		s.Close()
		s, err = Open(be, opts)
		if err != nil {
			t.Fatal(err)
		}
		clock = withClock(s)
		wantTable(t, s, "5 100/70: []", "6 5/0: []")
		s.Promote(time.Second)
		if r, _ := s.LeaseTimeToLive(5, false); r.TTL != 71 {
			t.Fatalf("TTL after restart and promote: %d, want 71", r.TTL)
		}
		// Renewal: the full TTL, and the checkpoint is to be cleared.
		if ttl, clear, err := s.LeaseRenew(ctx, 5); ttl != 100 || !clear || err != nil {
			t.Fatalf("renew: %d %v %v", ttl, clear, err)
		}
		checkpoint(t, s, 5, 0)
		if ttl, clear, err := s.LeaseRenew(ctx, 5); ttl != 100 || clear || err != nil {
			t.Fatalf("renew after the clear: %d %v %v", ttl, clear, err)
		}
		wantTable(t, s, "5 100/0: []", "6 5/0: []")
	})
}

func TestLeaseRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		dir := t.TempDir()
		be := openBackendNoCleanup(t, e, dir)
		defer func() { be.Close() }()
		s, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		for id := int64(1); id <= 5; id++ {
			mustGrant(t, s, id, 10*id)
		}
		for i := range 30 {
			putLease(t, s, fmt.Sprintf("k%02d", i), "v", int64(i%6))
		}
		putLease(t, s, "k01", "v2", 3)
		putLease(t, s, "k02", "v2", 0)
		if _, err := s.DeleteRange(delReq("k2", "k3")); err != nil {
			t.Fatal(err)
		}
		if _, err := revoke(s, 4); err != nil {
			t.Fatal(err)
		}
		checkpoint(t, s, 2, 7)
		if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev() - 3, Physical: true}); err != nil {
			t.Fatal(err)
		}
		want := leaseTable(s)
		dump := dumpAll(t, s)
		s.Close()
		for _, reopenEngine := range []bool{false, true} {
			if reopenEngine {
				be.Close()
				be = openBackendNoCleanup(t, e, dir)
			}
			s, err = Open(be, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			if got := leaseTable(s); !slices.Equal(got, want) {
				t.Fatalf("after restart: %q, want %q", got, want)
			}
			if got := dumpAll(t, s); !slices.Equal(got, dump) {
				t.Fatal("data changed across the restart")
			}
			s.Close()
		}
	})
}

// TestLeaseAbort checks that an aborted batch leaves the lease table and
// the lease area as they were.
func TestLeaseAbort(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, be := newTestStore(t, e, nil)
		mustGrant(t, s, 5, 10)
		putLease(t, s, "a", "1", 5)
		before, stored := leaseTable(s), countLeases(t, be)
		w, _ := s.NewWriteBatch()
		w.LeaseGrant(&pb.LeaseGrantRequest{ID: 6, TTL: 1})
		w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 1})
		w.Put(&pb.PutRequest{Key: []byte("b"), Lease: 6})
		w.Put(&pb.PutRequest{Key: []byte("a"), Lease: 6})
		w.LeaseCheckpoint(&pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 5, Remaining_TTL: 3}}})
		w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: 5})
		w.Abort()
		if got := leaseTable(s); !slices.Equal(got, before) || countLeases(t, be) != stored {
			t.Fatalf("after abort: %q, want %q", got, before)
		}
		if kv := get(t, s, "a"); kv == nil || kv.Lease != 5 {
			t.Fatalf("a after abort: %v", kv)
		}
	})
}

func countLeases(t testing.TB, be engineBackend) int {
	t.Helper()
	snap, err := be.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(&engineIterOptions{LowerBound: leaseAreaLower, UpperBound: leaseAreaUpper})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLeasePromoteSpread checks that Promote spreads the expiries of
// piled-up leases, as etcd's lessor does.
func TestLeasePromoteSpread(t *testing.T) {
	s, _ := newTestStore(t, testEngines(t)[0], nil)
	clock := withClock(s)
	batch(t, s, func(w *WriteBatch) {
		for id := int64(1); id <= 3000; id++ {
			w.LeaseGrant(&pb.LeaseGrantRequest{ID: id, TTL: 10})
		}
	})
	s.Promote(0)
	now := clock.now()
	first := s.Expired(now.Add(10500*time.Millisecond), 5000)
	// By 30s every lease has expired (those of the first second are
	// returned again, not being revoked).
	all := s.Expired(now.Add(30*time.Second), 5000)
	if len(first) > 800 || len(first) < 700 || len(all) != 3000 {
		t.Fatalf("%d leases expire in the first second, %d by 30s", len(first), len(all))
	}
}

// TestLeaseWatchEvents checks that a put with a lease reports it in its
// event, as etcd's do.
func TestLeaseWatchEvents(t *testing.T) {
	s, _ := newTestStore(t, testEngines(t)[0], nil)
	mustGrant(t, s, 3, 10)
	ws := newStream(t, s, nil)
	c := newCollector(t, ws)
	id := mustWatch(t, ws, watchReq("k", "", 0))
	putLease(t, s, "k", "v", 3)
	rs := c.waitFor("event", func(rs []*pb.WatchResponse) bool { return len(eventsOf(rs, id)) == 1 })
	if ev := eventsOf(rs, id)[0]; ev.Type != mvccpb.Event_PUT || ev.Kv.Lease != 3 {
		t.Fatalf("event %v", ev)
	}
}

// TestLeaseIDsNeverReused grants and revokes thousands of leases, in
// batches of every shape, across restarts and a backup/restore of the
// engine, and checks that no store-chosen ID is ever handed out twice,
// while client-chosen IDs follow etcd's rules (refused while the lease
// lives, free again once it is revoked).
func TestLeaseIDsNeverReused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		dir := t.TempDir()
		be := openBackendNoCleanup(t, e, dir)
		s, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			s.Close()
			be.Close()
		}()
		seen := make(map[int64]bool)
		var live []int64
		// fatal aborts w first: the batch holds the store's write lock.
		fatal := func(w *WriteBatch, format string, args ...any) {
			t.Helper()
			w.Abort()
			t.Fatalf(format, args...)
		}
		grantAuto := func(w *WriteBatch) {
			r, err := w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 60})
			if err != nil {
				fatal(w, "grant: %v", err)
			}
			if seen[r.ID] || r.ID <= 0 {
				fatal(w, "lease ID %x handed out again (after %d grants)", r.ID, len(seen))
			}
			seen[r.ID] = true
			live = append(live, r.ID)
		}
		revokeOldest := func(w *WriteBatch) {
			if _, err := w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: live[0]}); err != nil {
				fatal(w, "revoke %x: %v", live[0], err)
			}
			live = live[1:]
		}
		reopen := func(restore bool) {
			t.Helper()
			s.Close()
			if restore {
				var buf bytes.Buffer
				if err := be.Backup(&buf); err != nil {
					t.Fatal(err)
				}
				be.Close()
				dir = t.TempDir()
				if err := e.Restore(dir, &buf); err != nil {
					t.Fatal(err)
				}
			} else {
				be.Close()
			}
			be = openBackendNoCleanup(t, e, dir)
			if s, err = Open(be, testOptions()); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 2000 {
			switch round % 5 {
			case 0: // grant, revoke, grant: each in a batch of its own
				batch(t, s, grantAuto)
				batch(t, s, revokeOldest)
				batch(t, s, grantAuto)
			case 1: // all in one batch
				batch(t, s, func(w *WriteBatch) {
					grantAuto(w)
					revokeOldest(w)
					grantAuto(w)
				})
			case 2: // an aborted batch: its IDs were never handed out
				w, _ := s.NewWriteBatch()
				w.LeaseGrant(&pb.LeaseGrantRequest{TTL: 60})
				w.Abort()
				batch(t, s, grantAuto)
				batch(t, s, revokeOldest)
			case 3:
				batch(t, s, func(w *WriteBatch) { grantAuto(w); grantAuto(w); grantAuto(w) })
			case 4: // revoke all: the next grant must not reuse any of them
				for len(live) > 0 {
					batch(t, s, revokeOldest)
				}
			}
			switch round {
			case 700:
				reopen(false)
			case 1400:
				reopen(true)
			}
		}
		if len(seen) != 3200 || len(live) != 0 {
			t.Fatalf("%d IDs seen, %d live", len(seen), len(live))
		}

		// Client-chosen IDs: refused while the lease lives, free once it
		// is revoked, as in etcd; generated IDs skip them.
		const own = 42
		for i := range 3 {
			mustGrant(t, s, own, 10)
			if _, err := single(s, &pb.LeaseGrantRequest{ID: own, TTL: 10}, (*WriteBatch).LeaseGrant); !errors.Is(err, ErrLeaseExists) {
				t.Fatalf("cycle %d: second grant of %d: %v, want ErrLeaseExists", i, own, err)
			}
			if _, err := revoke(s, own); err != nil {
				t.Fatal(err)
			}
			if _, err := revoke(s, own); !errors.Is(err, ErrLeaseNotFound) {
				t.Fatalf("cycle %d: second revoke of %d: %v, want ErrLeaseNotFound", i, own, err)
			}
		}
		next := int64(splitmix64(s.leases.autoSeq+1) & math.MaxInt64)
		mustGrant(t, s, next, 10)
		batch(t, s, func(w *WriteBatch) {
			grantAuto(w)
			if live[0] == next {
				fatal(w, "generated ID %x is a client's live lease", next)
			}
		})
	})
}

// TestLeaseRevokedIDRefused is the reported case: a put naming a revoked
// lease fails, and a new grant does not bring the ID back.
func TestLeaseRevokedIDRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		a, err := single(s, &pb.LeaseGrantRequest{TTL: 600}, (*WriteBatch).LeaseGrant)
		if err != nil {
			t.Fatal(err)
		}
		putLease(t, s, "a", "1", a.ID)
		if _, err := revoke(s, a.ID); err != nil {
			t.Fatal(err)
		}
		b, err := single(s, &pb.LeaseGrantRequest{TTL: 600}, (*WriteBatch).LeaseGrant)
		if err != nil {
			t.Fatal(err)
		}
		if b.ID == a.ID {
			t.Fatalf("revoked lease %x granted again", a.ID)
		}
		if _, err := s.Put(&pb.PutRequest{Key: []byte("b"), Value: []byte("2"), Lease: a.ID}); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("put on revoked lease: %v, want ErrLeaseNotFound", err)
		}
		wantTable(t, s, fmt.Sprintf("%d 600/0: []", b.ID))
	})
}
