package mvcc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestConcurrentReaders runs readers against a writer that commits
// batches, each request of which rewrites every key of one group in one
// txn, and a compaction now and then. A reader must always see whole
// requests (all keys of a group at one revision), never a revision above
// its view, and a current revision that never goes back.
func TestConcurrentReaders(t *testing.T) {
	const groups, perGroup = 4, 8
	batches := 300
	if testing.Short() || raceEnabled {
		batches = 80
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, &Options{CompactionBatchLimit: 7, CompactionSleepInterval: -1})
		var done atomic.Bool
		var wg sync.WaitGroup
		errc := make(chan error, 8)
		report := func(err error) {
			select {
			case errc <- err:
			default:
			}
			done.Store(true)
		}
		wg.Add(1)
		go func() { // the writer
			defer wg.Done()
			defer done.Store(true)
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range batches {
				w, err := s.NewWriteBatch()
				if err != nil {
					report(err)
					return
				}
				for range 1 + rng.IntN(5) {
					g := rng.IntN(groups)
					var ops []*pb.RequestOp
					for k := range perGroup {
						ops = append(ops, opPut(fmt.Sprintf("g%d/%02d", g, k), fmt.Sprint(i)))
					}
					if _, err := w.Txn(&pb.TxnRequest{Success: ops}); err != nil {
						report(err)
						return
					}
				}
				if i%20 == 19 {
					if _, _, err := w.Compact(&pb.CompactionRequest{Revision: w.Rev() - 10}); err != nil {
						report(err)
						return
					}
				}
				if err := w.Commit(uint64(i + 1)); err != nil {
					report(err)
					return
				}
			}
		}()
		for r := range 3 {
			wg.Add(1)
			go func() { // the readers
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(r), 2))
				var last int64
				for !done.Load() {
					v, err := s.View()
					if err != nil {
						report(err)
						return
					}
					if v.Rev() < last {
						report(fmt.Errorf("revision went back from %d to %d", last, v.Rev()))
					}
					last = v.Rev()
					rev := int64(0)
					if rng.IntN(2) == 0 {
						rev = max(1, v.Rev()-int64(rng.IntN(30)))
					}
					for g := range groups {
						p := fmt.Sprintf("g%d/", g)
						resp, err := v.Range(context.Background(), &pb.RangeRequest{Key: []byte(p), RangeEnd: prefixEnd([]byte(p)), Revision: rev})
						if errors.Is(err, ErrCompacted) {
							continue
						}
						if err != nil {
							report(err)
							break
						}
						if len(resp.Kvs) != 0 && len(resp.Kvs) != perGroup {
							report(fmt.Errorf("group %d at %d: %d keys", g, rev, len(resp.Kvs)))
						}
						for _, kv := range resp.Kvs {
							if kv.ModRevision != resp.Kvs[0].ModRevision || string(kv.Value) != string(resp.Kvs[0].Value) {
								report(fmt.Errorf("group %d at %d: torn request: %v vs %v", g, rev, kv, resp.Kvs[0]))
							}
							if kv.ModRevision > v.Rev() {
								report(fmt.Errorf("revision %d above the view's %d", kv.ModRevision, v.Rev()))
							}
						}
					}
					v.Close()
					if rng.IntN(10) == 0 {
						if _, _, err := s.HashByRev(0); err != nil && !errors.Is(err, ErrCompacted) {
							report(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		if s.AppliedIndex() != uint64(batches) {
			t.Fatalf("applied index %d, want %d", s.AppliedIndex(), batches)
		}
	})
}

// TestCurrentReadsSurviveCompaction: reads of the current revision (Range
// and read-only Txn with revision 0) never fail with ErrCompacted while a
// writer compacts at its latest revision every fifth batch, as etcd's
// never do. (Compacting after every batch starves readers on the slower
// engines: each retry is overtaken again. Real compactors run minutes
// apart.)
func TestCurrentReadsSurviveCompaction(t *testing.T) {
	batches := 300
	if testing.Short() || raceEnabled {
		batches = 100
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, &Options{CompactionBatchLimit: 3, CompactionSleepInterval: -1})
		var done atomic.Bool
		var wg sync.WaitGroup
		errc := make(chan error, 8)
		report := func(err error) {
			select {
			case errc <- err:
			default:
			}
			done.Store(true)
		}
		wg.Go(func() {
			defer done.Store(true)
			for i := range batches {
				w, err := s.NewWriteBatch()
				if err != nil {
					report(err)
					return
				}
				for k := range 20 {
					if _, err := w.Put(&pb.PutRequest{Key: []byte(fmt.Sprintf("k%02d", k)), Value: []byte(fmt.Sprint(i))}); err != nil {
						report(err)
						return
					}
				}
				if i%5 == 4 {
					if _, _, err := w.Compact(&pb.CompactionRequest{Revision: w.Rev()}); err != nil {
						report(err)
						return
					}
				}
				if err := w.Commit(uint64(i + 1)); err != nil {
					report(err)
					return
				}
			}
		})
		reads := atomic.Int64{}
		for range 3 {
			wg.Go(func() {
				rr := &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}
				txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: rr}}}}
				for !done.Load() {
					resp, err := s.Range(context.Background(), rr)
					if err != nil {
						report(fmt.Errorf("range: %w", err))
						return
					}
					if len(resp.Kvs) != 0 && len(resp.Kvs) != 20 {
						report(fmt.Errorf("range: %d keys", len(resp.Kvs)))
					}
					if _, err := s.ReadTxn(context.Background(), txn); err != nil {
						report(fmt.Errorf("read-only txn: %w", err))
						return
					}
					reads.Add(2)
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		t.Logf("%d reads during %d compactions", reads.Load(), batches/5)
	})
}
