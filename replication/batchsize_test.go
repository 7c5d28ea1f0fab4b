package replication

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/backends/badger"
)

// bigValue is just under badger's value threshold (1 MiB), so it is kept
// in the LSM tree and counts in full towards badger's transaction limit
// (4.8 MiB at the default memtable).
const bigValue = 1_040_000

// TestApplyBatchBounds applies raft batches whose entries together would
// make one engine batch past badger's transaction limit, by size and by
// count of changes. Every engine must apply them all: an engine batch that
// fails for its size stops the replica, and every replica with it.
func TestApplyBatchBounds(t *testing.T) {
	for _, tc := range []struct {
		name       string
		entries    int
		perEntry   int
		valueBytes int
	}{
		{"one large put an entry", 12, 1, bigValue},        // 12.5 MB
		{"many small puts an entry", 300, 256, 1},          // 76.8k changes
		{"mid-sized puts", 64, 4, 100_000},                 // 25.6 MB
		{"one entry of large puts", 1, 4, bigValue},        // what proposeLoop may close
		{"a large entry after small ones", 3, 128, 20_000}, // 7.7 MB
	} {
		for _, eng := range engines() {
			t.Run(tc.name+"/"+eng.Name, func(t *testing.T) {
				f := openTestFSM(t, eng)
				f.onFail = func(err error) { t.Fatalf("the replica stopped: %v", err) }
				val := strings.Repeat("v", tc.valueBytes)
				logs := make([]*raft.Log, tc.entries)
				for i := range logs {
					reqs := make([]*pb.InternalRaftRequest, tc.perEntry)
					for j := range reqs {
						reqs[j] = put(fmt.Sprintf("k%04d-%04d", i, j), val)
					}
					data, err := encodeEntry(nil, reqs)
					if err != nil {
						t.Fatal(err)
					}
					logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}
				}
				out := f.ApplyBatch(logs)
				for i, o := range out {
					for j, r := range o.([]Result) {
						if r.Err != nil {
							t.Fatalf("entry %d request %d: %v", i, j, r.Err)
						}
					}
				}
				if got, want := f.store.Rev(), int64(1+tc.entries*tc.perEntry); got != want {
					t.Errorf("revision %d after the batch, want %d", got, want)
				}
				if got := f.store.AppliedIndex(); got != uint64(tc.entries) {
					t.Errorf("applied index %d, want %d", got, tc.entries)
				}
			})
		}
	}
}

// TestConcurrentLargePuts proposes large puts from many clients at once to
// a member on badger: proposal batching must not pack them into one entry
// too large for one badger transaction (24 MB here), which stopped the
// member on its first apply and again on every restart.
func TestConcurrentLargePuts(t *testing.T) {
	c := newCluster(t, badger.Engine(), 1, nil)
	n := c.leader()
	val := strings.Repeat("v", bigValue)
	const clients = 24
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := n.Propose(ctx, put(fmt.Sprintf("big%02d", i), val))
			if err == nil {
				err = res.Err
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("put %d: %v", i, err)
		}
	}
	if got := n.fsm.store.Rev(); got != 1+clients {
		t.Errorf("revision %d, want %d", got, 1+clients)
	}
}
