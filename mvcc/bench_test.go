package mvcc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// measureIndex returns the heap bytes per key of an index holding n keys
// (15-byte keys) with revs revisions each.
func measureIndex(n, revs int, tombstone bool) float64 {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "/registry/%05d", i)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	idx := newTreeIndex()
	rev := int64(1)
	for range revs {
		for _, k := range keys {
			rev++
			idx.put(k, revision{main: rev})
			idx.published.Store(rev) // committed: as a store publishes
		}
	}
	if tombstone {
		for _, k := range keys {
			rev++
			idx.tombstone(k, revision{main: rev})
			idx.published.Store(rev)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(idx)
	return float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
}

// TestIndexMemory measures the memory the key index takes per key (heap
// bytes over 100k keys of 15 bytes), and fails if it grows far past the
// documented figures (doc.go).
func TestIndexMemory(t *testing.T) {
	const n = 100_000
	for _, tc := range []struct {
		name      string
		revs      int
		tombstone bool
		limit     float64
	}{
		{"1 revision", 1, false, 250},
		{"3 revisions", 3, false, 350},
		{"2 revisions + tombstone", 2, true, 400},
	} {
		got := measureIndex(n, tc.revs, tc.tombstone)
		t.Logf("index, %s: %.0f bytes/key", tc.name, got)
		if got > tc.limit {
			t.Errorf("index, %s: %.0f bytes/key, more than %.0f", tc.name, got, tc.limit)
		}
	}
}

func BenchmarkIndexMemory(b *testing.B) {
	for range b.N {
		b.ReportMetric(measureIndex(100_000, 1, false), "bytes/key")
	}
}

const benchKeys = 10_000

var benchValue = make([]byte, 256)

func benchKey(i int) []byte { return fmt.Appendf(nil, "k%07d", i) } // 8 bytes

// benchStore opens a store on e with benchKeys keys loaded.
func benchStore(b *testing.B, e engineT) *Store {
	s, _ := newTestStore(b, e, nil)
	w, err := s.NewWriteBatch()
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchKeys {
		if _, err := w.Put(&pb.PutRequest{Key: benchKey(i), Value: benchValue}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(1); err != nil {
		b.Fatal(err)
	}
	return s
}

func forEachEngineB(b *testing.B, f func(b *testing.B, e engineT)) {
	for _, e := range testEngines(b) {
		b.Run(e.Name, func(b *testing.B) { f(b, e) })
	}
}

// BenchmarkPut commits one put per write batch (engine.NoSync).
func BenchmarkPut(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, e engineT) {
		s := benchStore(b, e)
		rng := rand.New(rand.NewPCG(1, 1))
		b.ResetTimer()
		for i := range b.N {
			w, _ := s.NewWriteBatch()
			if _, err := w.Put(&pb.PutRequest{Key: benchKey(rng.IntN(benchKeys)), Value: benchValue}); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(uint64(i + 2)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPutBatch100 commits 100 puts per write batch, as the FSM does
// with a raft batch; ns/op is per put.
func BenchmarkPutBatch100(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, e engineT) {
		s := benchStore(b, e)
		rng := rand.New(rand.NewPCG(1, 1))
		b.ResetTimer()
		var w *WriteBatch
		for i := range b.N {
			if w == nil {
				w, _ = s.NewWriteBatch()
			}
			if _, err := w.Put(&pb.PutRequest{Key: benchKey(rng.IntN(benchKeys)), Value: benchValue}); err != nil {
				b.Fatal(err)
			}
			if i%100 == 99 || i == b.N-1 {
				if err := w.Commit(uint64(i + 2)); err != nil {
					b.Fatal(err)
				}
				w = nil
			}
		}
	})
}

// BenchmarkTxn commits one compare-and-swap txn (k8s update shape: MOD
// compare, put, else get) per write batch.
func BenchmarkTxn(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, e engineT) {
		s := benchStore(b, e)
		mods := make([]int64, benchKeys)
		for i := range mods {
			mods[i] = int64(i + 2)
		}
		rng := rand.New(rand.NewPCG(1, 1))
		b.ResetTimer()
		for i := range b.N {
			k := rng.IntN(benchKeys)
			key := benchKey(k)
			w, _ := s.NewWriteBatch()
			resp, err := w.Txn(&pb.TxnRequest{
				Compare: []*pb.Compare{{Key: key, Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: mods[k]}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: benchValue}}}},
				Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key}}}},
			})
			if err != nil || !resp.Succeeded {
				b.Fatalf("txn: %v %v", resp, err)
			}
			mods[k] = resp.Header.Revision
			if err := w.Commit(uint64(i + 2)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRange reads one key (get) or 100 keys (scan100) per request.
func BenchmarkRange(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, e engineT) {
		s := benchStore(b, e)
		for _, tc := range []struct {
			name string
			req  func(i int) *pb.RangeRequest
			n    int
		}{
			{"get", func(i int) *pb.RangeRequest { return &pb.RangeRequest{Key: benchKey(i)} }, 1},
			{"scan100", func(i int) *pb.RangeRequest {
				i = i % (benchKeys - 100)
				return &pb.RangeRequest{Key: benchKey(i), RangeEnd: benchKey(i + 100)}
			}, 100},
			{"count100", func(i int) *pb.RangeRequest {
				i = i % (benchKeys - 100)
				return &pb.RangeRequest{Key: benchKey(i), RangeEnd: benchKey(i + 100), CountOnly: true}
			}, 0},
			// kube-apiserver's object count: every key of a resource.
			{"count-all", func(int) *pb.RangeRequest {
				return &pb.RangeRequest{Key: benchKey(0), RangeEnd: benchKey(benchKeys), CountOnly: true}
			}, 0},
			// YCSB E's scan: up to 100 keys from a key to the end of the
			// keyspace; etcd's answer counts every key after it.
			{"limit100-to-end", func(i int) *pb.RangeRequest {
				i = i % (benchKeys - 100)
				return &pb.RangeRequest{Key: benchKey(i), RangeEnd: []byte{0}, Limit: 100}
			}, 100},
		} {
			b.Run(tc.name, func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 1))
				ctx := context.Background()
				for range b.N {
					resp, err := s.Range(ctx, tc.req(rng.IntN(benchKeys)))
					if err != nil || len(resp.Kvs) != tc.n {
						b.Fatalf("range: %d kvs, %v", len(resp.GetKvs()), err)
					}
				}
			})
		}
	})
}
