package replication

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// TestPartitions cuts a 5-node cluster into a minority holding the leader
// and a majority, then heals it, while clients on every node write and read
// linearizably. The majority must elect a new leader and keep serving; the
// history must be linearizable and every member must converge.
func TestPartitions(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			fn := newFaultNet()
			c := newCluster(t, eng, 5, nil)
			// Restart the nodes on the fault-injecting network.
			for i := range c.nodes {
				c.stop(i)
			}
			c.tweak = func(cfg *Config) { cfg.Dial = fn.dialer(cfg.Bind) }
			for i := range c.nodes {
				c.start(i)
			}
			l := c.leader()

			var (
				mu      sync.Mutex
				history []porcupine.Operation
				start   = time.Now()
				stop    atomic.Bool
				acked   [3]atomic.Int64 // before, during and after the cut
				phase   atomic.Int32
			)
			now := func() int64 { return int64(time.Since(start)) }
			var wg sync.WaitGroup
			for cl := range 10 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(cl), 7))
					n := c.nodes[cl%len(c.nodes)]
					for seq := 0; !stop.Load(); seq++ {
						key := fmt.Sprintf("k%d", r.IntN(3))
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						op := porcupine.Operation{ClientId: cl, Call: now()}
						if r.IntN(2) == 0 {
							val := fmt.Sprintf("c%d-%d", cl, seq)
							op.Input = kvInput{put: true, key: key, value: val}
							res, err := n.Propose(ctx, put(key, val))
							if err == nil {
								err = res.Err
							}
							op.Return = now()
							if err != nil {
								op.Return = math.MaxInt64
							} else {
								acked[phase.Load()].Add(1)
							}
						} else {
							op.Input = kvInput{key: key}
							var val string
							err := n.View(ctx, true, func(s *mvcc.Store) error {
								resp, err := s.Range(ctx, &pb.RangeRequest{Key: []byte(key)})
								if err == nil && len(resp.Kvs) == 1 {
									val = string(resp.Kvs[0].Value)
								}
								return err
							})
							op.Return = now()
							if err != nil {
								cancel()
								continue
							}
							op.Output = kvOutput{val}
						}
						cancel()
						mu.Lock()
						history = append(history, op)
						mu.Unlock()
					}
				})
			}
			time.Sleep(700 * time.Millisecond)
			// Minority: the leader and one follower; majority: the rest.
			minority := []string{l.Addr()}
			var majority []string
			for _, n := range c.nodes {
				switch {
				case n == l:
				case len(minority) < 2:
					minority = append(minority, n.Addr())
				default:
					majority = append(majority, n.Addr())
				}
			}
			phase.Store(1)
			fn.partition(minority, majority)
			time.Sleep(2500 * time.Millisecond)
			fn.heal()
			phase.Store(2)
			time.Sleep(1500 * time.Millisecond)
			stop.Store(true)
			wg.Wait()

			res, _ := porcupine.CheckOperationsVerbose(kvModel, history, 60*time.Second)
			t.Logf("%d operations; acknowledged writes: %d before the cut, %d during, %d after; %v",
				len(history), acked[0].Load(), acked[1].Load(), acked[2].Load(), res)
			if res != porcupine.Ok {
				t.Fatalf("history is not linearizable (%v)", res)
			}
			if acked[1].Load() == 0 || acked[2].Load() == 0 {
				t.Fatalf("no write acknowledged during or after the partition: the cluster did not recover")
			}
			c.waitConverged()
		})
	}
}
