package mvcc

import (
	"bytes"
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
// fetchMany copies into shared blocks: every value comes back whole, and
// appending to one does not overwrite the next.
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
