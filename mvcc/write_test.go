package mvcc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/engine"
)

func TestWriteBatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		var events []*mvccpb.Event
		var eventRev int64
		opts := testOptions()
		opts.OnCommit = func(rev int64, evs []*mvccpb.Event) { eventRev, events = rev, append(events, evs...) }
		s, be := newTestStore(t, e, opts)
		mustPut(t, s, "a", "0") // 2
		events = nil

		w, err := s.NewWriteBatch()
		if err != nil {
			t.Fatal(err)
		}
		r1, err := w.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), PrevKv: true})
		if err != nil || r1.Header.Revision != 3 || string(r1.PrevKv.GetValue()) != "0" {
			t.Fatalf("put 1: %v %v", r1, err)
		}
		// The next request sees the first one: compare, prev_kv, range.
		r2, err := w.Txn(&pb.TxnRequest{
			Compare: []*pb.Compare{cmp("a", pb.Compare_MOD, pb.Compare_EQUAL, 3)},
			Success: []*pb.RequestOp{opPut("b", "2"), opRange("a", "\x00")},
		})
		if err != nil || !r2.Succeeded || r2.Header.Revision != 4 {
			t.Fatalf("txn: %v %v", r2, err)
		}
		if got := r2.Responses[1].GetResponseRange(); !slices.Equal(keysOf(got.Kvs), []string{"a", "b"}) || string(got.Kvs[0].Value) != "1" {
			t.Fatalf("range in txn: %v", got)
		}
		// A failing request is undone and takes no revision.
		if _, err := w.Put(&pb.PutRequest{Key: []byte("zz"), IgnoreValue: true}); !errors.Is(err, ErrKeyNotFound) {
			t.Fatalf("failing put: %v", err)
		}
		if _, err := w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("c", "x"), {Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 99}}}}}); !errors.Is(err, ErrFutureRev) {
			t.Fatalf("failing txn: %v", err)
		}
		r3, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("a"), PrevKv: true})
		if err != nil || r3.Header.Revision != 5 || r3.Deleted != 1 || string(r3.PrevKvs[0].Value) != "1" {
			t.Fatalf("delete: %v %v", r3, err)
		}
		rr, err := w.Range(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00")})
		if err != nil || !slices.Equal(keysOf(rr.Kvs), []string{"b"}) || rr.Header.Revision != 5 {
			t.Fatalf("range in batch: %v %v", rr, err)
		}
		rr, err = w.Range(&pb.RangeRequest{Key: []byte("a"), Revision: 3})
		if err != nil || string(rr.Kvs[0].Value) != "1" {
			t.Fatalf("range in batch at a pending revision: %v %v", rr, err)
		}
		if w.Rev() != 5 || w.Len() != 3 {
			t.Fatalf("batch rev %d len %d, want 5 3", w.Rev(), w.Len())
		}
		// Readers do not see the batch before it commits.
		if s.Rev() != 2 || string(get(t, s, "a").GetValue()) != "0" || get(t, s, "b") != nil {
			t.Fatalf("uncommitted batch visible: rev %d", s.Rev())
		}
		if _, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("a"), Revision: 3}); !errors.Is(err, ErrFutureRev) {
			t.Fatalf("read of an uncommitted revision: %v", err)
		}
		if err := w.Commit(42); err != nil {
			t.Fatal(err)
		}
		if s.Rev() != 5 || s.AppliedIndex() != 42 || get(t, s, "a") != nil || string(get(t, s, "b").GetValue()) != "2" {
			t.Fatalf("after commit: rev %d applied %d", s.Rev(), s.AppliedIndex())
		}
		if _, err := w.Put(putReq("x", "1")); !errors.Is(err, ErrBatchDone) {
			t.Fatalf("put on a committed batch: %v", err)
		}
		// Events, in revision order, for the hook.
		want := []string{"PUT a 3.2", "PUT b 4.4", "DELETE a 5.0"} // type key mod.create
		var got []string
		for _, ev := range events {
			got = append(got, fmt.Sprintf("%s %s %d.%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, ev.Kv.CreateRevision))
		}
		if !slices.Equal(got, want) || eventRev != 5 {
			t.Fatalf("events %q at %d, want %q at 5", got, eventRev, want)
		}

		// The applied index alone is committed, and must not go back.
		w, _ = s.NewWriteBatch()
		if err := w.Commit(43); err != nil || s.AppliedIndex() != 43 || s.Rev() != 5 {
			t.Fatalf("empty commit: %v applied %d", err, s.AppliedIndex())
		}
		w, _ = s.NewWriteBatch()
		mustBatchPut(t, w, "y", "1")
		if err := w.Commit(40); !errors.Is(err, ErrAppliedIndexRegressed) || s.Rev() != 5 || get(t, s, "y") != nil {
			t.Fatalf("regressed applied index: %v rev %d", err, s.Rev())
		}

		// Abort leaves no trace, in the index or in the engine.
		before := dumpAll(t, s)
		hashBefore, _, _ := s.HashByRev(0)
		w, _ = s.NewWriteBatch()
		mustBatchPut(t, w, "b", "3")
		mustBatchPut(t, w, "new", "1")
		if _, err := w.DeleteRange(delReq("\x00", "\x00")); err != nil {
			t.Fatal(err)
		}
		mustBatchPut(t, w, "b", "4")
		w.Abort()
		w.Abort() // no-op
		if got := dumpAll(t, s); !slices.Equal(got, before) {
			t.Fatalf("after abort:\n%q\nwant\n%q", got, before)
		}
		if h, _, _ := s.HashByRev(0); h != hashBefore {
			t.Fatalf("hash after abort %v, want %v", h, hashBefore)
		}
		if n := countRevisions(t, be); n != 4 {
			t.Fatalf("%d revisions stored, want 4", n)
		}
		mustPut(t, s, "new", "2")
		if kv := get(t, s, "new"); kv.Version != 1 || kv.CreateRevision != 6 {
			t.Fatalf("key re-created after abort: %v", kv)
		}
	})
}

func mustBatchPut(t *testing.T, w *WriteBatch, k, v string) {
	t.Helper()
	if _, err := w.Put(putReq(k, v)); err != nil {
		t.Fatal(err)
	}
}

// dumpAll describes every key at every readable revision.
func dumpAll(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for rev := max(s.CompactRev(), 1); rev <= s.Rev(); rev++ {
		resp := mustRange(t, s, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		for _, kv := range resp.Kvs {
			out = append(out, fmt.Sprintf("@%d %q=%q c%d m%d v%d l%d", rev, kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
		}
	}
	return out
}

// countRevisions counts the entries of the revision area.
func countRevisions(t *testing.T, be engine.Backend) int {
	t.Helper()
	snap, err := be.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: revAreaLower, UpperBound: revAreaUpper})
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

// TestAbortRandom applies random batches and aborts some of them: an
// aborted batch must leave exactly the state before it.
func TestAbortRandom(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		rng := rand.New(rand.NewPCG(7, 7))
		g := &reqGen{rng: rng, rev: 1}
		rounds := 60
		if testing.Short() || raceEnabled {
			rounds = 20
		}
		for range rounds {
			abort := rng.IntN(3) == 0
			var before []string
			var hash KeyValueHash
			if abort {
				before = dumpAll(t, s)
				hash, _, _ = s.HashByRev(0)
			}
			w, err := s.NewWriteBatch()
			if err != nil {
				t.Fatal(err)
			}
			for range 1 + rng.IntN(10) {
				g.rev = w.Rev()
				switch rng.IntN(3) {
				case 0:
					if req := g.putReq(); ValidatePut(req) == nil {
						w.Put(req)
					}
				case 1:
					w.DeleteRange(g.deleteReq())
				default:
					w.Txn(g.txnReq())
				}
			}
			if abort {
				w.Abort()
				if got := dumpAll(t, s); !slices.Equal(got, before) {
					t.Fatalf("after abort:\n%q\nwant\n%q", got, before)
				}
				if h, _, _ := s.HashByRev(0); h != hash {
					t.Fatalf("hash after abort %v, want %v", h, hash)
				}
			} else if err := w.Commit(0); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestResponsesAreFresh checks that responses do not share messages with
// the store: a caller may modify them.
func TestResponsesAreFresh(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustPut(t, s, "a", "1")
		w, _ := s.NewWriteBatch()
		mustBatchPut(t, w, "b", "2")
		r1, _ := w.Range(rangeReq("b", ""))
		r1.Kvs[0].Version = 99
		r1.Kvs[0].Value = nil
		r2, _ := w.Range(rangeReq("b", ""))
		if r2.Kvs[0].Version != 1 || string(r2.Kvs[0].Value) != "2" {
			t.Fatalf("second read saw the first one's changes: %v", r2.Kvs[0])
		}
		w.Commit(0)
		a1 := mustRange(t, s, rangeReq("a", ""))
		a1.Kvs[0].ModRevision = 0
		if a2 := mustRange(t, s, rangeReq("a", "")); a2.Kvs[0].ModRevision != 2 || proto.Equal(a1, a2) {
			t.Fatalf("read shares messages: %v", a2)
		}
	})
}

func TestApplyAndView(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		w, _ := s.NewWriteBatch()
		ops := []*pb.RequestOp{
			opPut("a", "1"),
			opRange("a", ""),
			opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("b", "2")}}),
			opDel("a", ""),
		}
		var revs []int64
		for _, op := range ops {
			resp, err := w.Apply(op)
			if err != nil {
				t.Fatal(err)
			}
			switch r := resp.Response.(type) {
			case *pb.ResponseOp_ResponsePut:
				revs = append(revs, r.ResponsePut.Header.Revision)
			case *pb.ResponseOp_ResponseRange:
				revs = append(revs, r.ResponseRange.Header.Revision)
			case *pb.ResponseOp_ResponseTxn:
				revs = append(revs, r.ResponseTxn.Header.Revision)
			case *pb.ResponseOp_ResponseDeleteRange:
				revs = append(revs, r.ResponseDeleteRange.Header.Revision)
			}
		}
		if _, err := w.Apply(&pb.RequestOp{}); !errors.Is(err, ErrKeyNotFound) {
			t.Fatalf("empty op: %v", err)
		}
		if err := w.Commit(1); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(revs, []int64{2, 2, 3, 4}) {
			t.Fatalf("revisions %v, want [2 2 3 4]", revs)
		}
		v, err := s.View()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		mustPut(t, s, "c", "3") // after the view: invisible to it
		resp, err := v.Txn(context.Background(), &pb.TxnRequest{Success: []*pb.RequestOp{opRange("\x00", "\x00")}})
		if err != nil || resp.Header.Revision != 4 || !slices.Equal(keysOf(resp.Responses[0].GetResponseRange().Kvs), []string{"b"}) {
			t.Fatalf("view txn: %v %v", resp, err)
		}
		if _, err := v.Txn(context.Background(), &pb.TxnRequest{Success: []*pb.RequestOp{opPut("x", "1")}}); !errors.Is(err, ErrTxnNotReadOnly) {
			t.Fatalf("write txn on a view: %v", err)
		}
		if v.Rev() != 4 || s.Rev() != 5 {
			t.Fatalf("view rev %d, store rev %d", v.Rev(), s.Rev())
		}
	})
}
