package replication

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-kv/strata/replication/wal"
)

// BenchmarkPropose measures the write path below gRPC: concurrent clients
// proposing 256-byte puts to a one-node cluster (WAL fsync per raft batch,
// one engine commit per FSM batch). It reports puts/s and raft entries per
// put (proposal batching).
func BenchmarkPropose(b *testing.B) {
	for _, eng := range engines() {
		for _, clients := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/clients=%d", eng.Name, clients), func(b *testing.B) {
				c := newBenchCluster(b, eng)
				n := c.leader()
				val := make([]byte, 256)
				start := n.fsm.appliedEntries.Load()
				b.ResetTimer()
				runClients(b, clients, func(i int64) error {
					res, err := n.Propose(context.Background(), put(fmt.Sprintf("k%08d", i%10000), string(val)))
					if err == nil {
						err = res.Err
					}
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
				b.ReportMetric(float64(n.fsm.appliedEntries.Load()-start)/float64(b.N), "entries/put")
			})
		}
	}
}

// BenchmarkPropose3 measures the write path of a 3-member cluster (bbolt,
// members on loopback, every WAL fsynced): concurrent clients proposing
// 256-byte puts to the leader. A put is acknowledged once its entry is
// durable on a quorum; the leader syncs its own log while it replicates
// (third_party/raft), so the latency is about one fsync plus a round trip
// rather than two fsyncs plus one.
func BenchmarkPropose3(b *testing.B) {
	eng := engines()[0]
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("%s/clients=%d", eng.Name, clients), func(b *testing.B) {
			var syncs, synced, syncNanos atomic.Int64 // over all members
			c := newCluster(b, eng, 3, func(cfg *Config) {
				cfg.OpenLog = func(dir string) (LogStore, error) {
					return wal.Open(dir, &wal.Options{OnSync: func(entries int, took time.Duration) {
						syncs.Add(1)
						synced.Add(int64(entries))
						syncNanos.Add(int64(took))
					}})
				}
			})
			n := c.leader()
			val := string(make([]byte, 256))
			commits := n.fsm.commits.Load()
			syncs.Store(0)
			synced.Store(0)
			syncNanos.Store(0)
			b.ResetTimer()
			runClients(b, clients, func(i int64) error {
				res, err := n.Propose(context.Background(), put(fmt.Sprintf("k%08d", i%10000), val))
				if err == nil {
					err = res.Err
				}
				return err
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			b.ReportMetric(float64(b.N)/float64(n.fsm.commits.Load()-commits), "puts/commit")
			if k := syncs.Load(); k > 0 {
				b.ReportMetric(float64(b.N)*3/float64(k), "puts/fsync")
				b.ReportMetric(float64(synced.Load())/float64(k), "entries/fsync")
				b.ReportMetric(float64(syncNanos.Load())/float64(k)/1e3, "µs/fsync")
			}
		})
	}
}

// BenchmarkFollowerApplies measures how long after a put is acknowledged
// on the leader of a 3-member cluster (bbolt) a follower has applied it,
// with one client and nothing else written: the time for the new commit
// index to reach the follower. hashicorp/raft sent it only with the next
// entries or after CommitTimeout (50-100 ms); third_party/raft sends it at
// once. µs-lag-both is until both followers have applied it (mean, and
// p99): the one outside the quorum used to apply only after its own fsync
// of the entry (raft patch 6).
func BenchmarkFollowerApplies(b *testing.B) {
	eng := engines()[0]
	c := newCluster(b, eng, 3, nil)
	l := c.leader()
	f := c.nodes[c.follower(l)]
	val := string(make([]byte, 256))
	ctx := context.Background()
	var lag, lagAll time.Duration
	lags := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		res, err := l.Propose(ctx, put(fmt.Sprintf("k%08d", i%10000), val))
		if err == nil {
			err = res.Err
		}
		if err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		if err := f.fsm.applied.wait(ctx, l.AppliedIndex()); err != nil {
			b.Fatal(err)
		}
		lag += time.Since(acked)
		for _, o := range c.nodes {
			if err := o.fsm.applied.wait(ctx, l.AppliedIndex()); err != nil {
				b.Fatal(err)
			}
		}
		both := time.Since(acked)
		lagAll += both
		lags = append(lags, both)
	}
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "µs-lag-both-p99")
	b.ReportMetric(float64(lag.Microseconds())/float64(b.N), "µs-lag/op")
	b.ReportMetric(float64(lagAll.Microseconds())/float64(b.N), "µs-lag-both/op")
}

// BenchmarkFollower measures the follower path: concurrent clients of a
// follower of a 3-member cluster (bbolt) proposing 256-byte puts, which
// the follower forwards to the leader, and asking for read barriers, which
// it gets from the leader's read index.
func BenchmarkFollower(b *testing.B) {
	eng := engines()[0]
	for _, op := range []string{"propose", "read-barrier"} {
		for _, clients := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/%s/clients=%d", eng.Name, op, clients), func(b *testing.B) {
				c := newCluster(b, eng, 3, nil)
				l := c.leader()
				f := c.nodes[c.follower(l)]
				val := string(make([]byte, 256))
				fwd := f.fwdPropose
				if op == "read-barrier" {
					fwd = f.fwdRead
				}
				calls, rounds, beats := fwd.calls.Load(), l.verifier.rounds.Load(), l.verifier.heartbeats.Load()
				b.ResetTimer()
				runClients(b, clients, func(i int64) error {
					if op == "read-barrier" {
						return f.ReadBarrier(context.Background())
					}
					res, err := f.Propose(context.Background(), put(fmt.Sprintf("k%08d", i%10000), val))
					if err == nil {
						err = res.Err
					}
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
				// Calls the follower sent to the leader per operation.
				b.ReportMetric(float64(fwd.calls.Load()-calls)/float64(b.N), "calls/op")
				if op == "read-barrier" {
					// The leader's verification rounds per read barrier.
					b.ReportMetric(float64(l.verifier.rounds.Load()-rounds)/float64(b.N), "rounds/op")
					b.ReportMetric(float64(l.verifier.heartbeats.Load()-beats)/float64(b.N), "heartbeats/op")
				}
			})
		}
	}
}

// BenchmarkSpread measures puts from clients spread evenly over the
// members of a 3-member cluster (bbolt), as etcd's benchmark tool spreads
// its connections over the endpoints: two thirds of the puts reach a
// follower, which forwards them to the leader and answers them once it has
// applied them itself. fwd-calls/put is the forwarding calls the followers
// sent per forwarded put.
func BenchmarkSpread(b *testing.B) {
	eng := engines()[0]
	for _, clients := range []int{3, 99} {
		b.Run(fmt.Sprintf("%s/clients=%d", eng.Name, clients), func(b *testing.B) {
			c := newCluster(b, eng, 3, nil)
			c.leader()
			val := string(make([]byte, 256))
			var calls, items uint64
			for _, n := range c.nodes {
				calls -= n.fwdPropose.calls.Load()
				items -= n.fwdPropose.items.Load()
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := range clients {
				n := c.nodes[i%len(c.nodes)]
				wg.Go(func() {
					for {
						j := next.Add(1)
						if j > int64(b.N) {
							return
						}
						res, err := n.Propose(context.Background(), put(fmt.Sprintf("k%08d", j%10000), val))
						if err == nil {
							err = res.Err
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			for _, n := range c.nodes {
				calls += n.fwdPropose.calls.Load()
				items += n.fwdPropose.items.Load()
			}
			if items > 0 {
				b.ReportMetric(float64(calls)/float64(items), "fwd-calls/put")
			}
		})
	}
}

// BenchmarkLeaderReadBarrier measures the leader's read barrier: its
// read index, confirmed by a verification round (a heartbeat to each
// follower) that serves every caller waiting when it starts, for
// concurrent clients of the leader of a 3-member cluster (bbolt).
func BenchmarkLeaderReadBarrier(b *testing.B) {
	eng := engines()[0]
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("%s/clients=%d", eng.Name, clients), func(b *testing.B) {
			c := newCluster(b, eng, 3, nil)
			l := c.leader()
			rounds, beats := l.verifier.rounds.Load(), l.verifier.heartbeats.Load()
			b.ReportAllocs()
			b.ResetTimer()
			runClients(b, clients, func(int64) error { return l.ReadBarrier(context.Background()) })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(float64(l.verifier.rounds.Load()-rounds)/float64(b.N), "rounds/op")
			b.ReportMetric(float64(l.verifier.heartbeats.Load()-beats)/float64(b.N), "heartbeats/op")
		})
	}
}

// runClients runs b.N operations from clients goroutines, numbering them
// from 1, and fails the benchmark on the first error of each client.
func runClients(b *testing.B, clients int, op func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
