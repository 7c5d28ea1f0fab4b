package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
)

func TestValueBlockSize(t *testing.T) {
	tests := []struct{ n, left, want int }{
		{300, 100, 30000},                         // all of them, alike
		{300, 1, 300},                             // the last one
		{1000, 1000, maxValueBlock},               // capped
		{maxValueBlock * 2, 5, maxValueBlock * 2}, // a value larger than a block
		{0, 10, 0},
	}
	for _, tt := range tests {
		if got := valueBlockSize(tt.n, tt.left); got != tt.want {
			t.Errorf("valueBlockSize(%d, %d) = %d, want %d", tt.n, tt.left, got, tt.want)
		}
	}
}

// TestRangeValuesOfManySizes reads ranges of values of very different
// sizes (empty ones, small ones, ones larger than a value block), which
// fetchMany copies into shared blocks, at live revisions next to each
// other and far apart (fetchMany steps or seeks): every value comes back
// whole, and appending to one does not overwrite the next.
func TestRangeValuesOfManySizes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine.Engine) {
		s, _ := newTestStore(t, e, nil)
		rng := rand.New(rand.NewPCG(7, 7))
		want := map[string][]byte{}
		for i := range 300 {
			var n int
			switch i % 10 {
			case 0:
				n = 0
			case 1:
				n = maxValueBlock + rng.IntN(maxValueBlock)
			default:
				n = rng.IntN(2000)
			}
			v := make([]byte, n)
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			k := fmt.Sprintf("k/%03d", i)
			want[k] = v
			mustPut(t, s, k, string(v))
		}
		// Gaps between the live revisions, wider than fetchMany steps.
		for round := range 3 * nextSteps {
			for i := 0; i < 300; i += 7 {
				k := fmt.Sprintf("k/%03d", i)
				v := fmt.Appendf(nil, "rewritten %d", round)
				want[k] = v
				mustPut(t, s, k, string(v))
			}
		}
		for _, r := range []*pb.RangeRequest{
			{Key: []byte("k/"), RangeEnd: []byte("k0")},
			{Key: []byte("k/100"), RangeEnd: []byte("k/107")},
			{Key: []byte("k/"), RangeEnd: []byte("k0"), Limit: 50},
		} {
			resp := mustRange(t, s, r)
			if len(resp.Kvs) == 0 {
				t.Fatalf("range %s-%s: no keys", r.Key, r.RangeEnd)
			}
			for i, kv := range resp.Kvs {
				if !bytes.Equal(kv.Value, want[string(kv.Key)]) {
					t.Fatalf("%s: %d bytes back, want %d", kv.Key, len(kv.Value), len(want[string(kv.Key)]))
				}
				if i+1 < len(resp.Kvs) {
					next := bytes.Clone(resp.Kvs[i+1].Value)
					_ = append(kv.Value, 0xAA, 0xBB)
					if !bytes.Equal(resp.Kvs[i+1].Value, next) {
						t.Fatalf("appending to %s changed %s", kv.Key, resp.Kvs[i+1].Key)
					}
				}
			}
		}
	})
}

// TestRangeMissingRevision removes from the engine a live revision the
// index still names: a range over it fails with ErrCorrupt, whether
// fetchMany reaches it by stepping from the revision before or by a seek.
func TestRangeMissingRevision(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine.Engine) {
		for _, gone := range []int{0, 5, 9} {
			s, be := newTestStore(t, e, nil)
			var revs []int64
			for i := range 10 {
				revs = append(revs, mustPut(t, s, fmt.Sprintf("k/%02d", i), "v"))
			}
			var b engine.Batch
			b.Delete(appendRevBytes([]byte{prefixKey}, revision{main: revs[gone]}, false))
			if err := be.Commit(&b, engine.Sync); err != nil {
				t.Fatal(err)
			}
			_, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k/"), RangeEnd: []byte("k0")})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("range with revision %d gone (key %d of 10): %v, want %v", revs[gone], gone, err, ErrCorrupt)
			}
		}
	})
}
