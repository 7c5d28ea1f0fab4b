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

// kvInput is one operation of the register-per-key model.
type kvInput struct {
	put   bool
	key   string
	value string
}

// kvOutput is a read's result; writes have none.
type kvOutput struct{ value string }

// kvModel is a set of registers, one per key, checked key by key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(kvOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output.(kvOutput).value)
	},
}

// TestLinearizableUnderLeaderFailure runs clients against every member
// (followers forward) while the leader is killed and later restarted, records
// the history and checks it with porcupine. Writes that fail have an
// unknown outcome and are recorded as never returning.
func TestLinearizableUnderLeaderFailure(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, nil)
			c.leader()
			var (
				mu      sync.Mutex
				history []porcupine.Operation
				nodesMu sync.RWMutex
				start   = time.Now()
				stop    atomic.Bool
				acked   atomic.Int64
			)
			now := func() int64 { return int64(time.Since(start)) }
			pick := func(r *rand.Rand) *Node {
				nodesMu.RLock()
				defer nodesMu.RUnlock()
				for {
					if n := c.nodes[r.IntN(len(c.nodes))]; n != nil {
						return n
					}
				}
			}
			var wg sync.WaitGroup
			for cl := range 6 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(cl), 99))
					for seq := 0; !stop.Load(); seq++ {
						n := pick(r)
						key := fmt.Sprintf("k%d", r.IntN(4))
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
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
								op.Return = math.MaxInt64 // outcome unknown
							} else {
								acked.Add(1)
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
								continue // a failed read tells nothing
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
			time.Sleep(time.Second)
			l := c.leader()
			li := 0
			for i, n := range c.nodes {
				if n == l {
					li = i
				}
			}
			nodesMu.Lock()
			c.stop(li)
			nodesMu.Unlock()
			time.Sleep(1500 * time.Millisecond)
			nodesMu.Lock()
			c.start(li)
			nodesMu.Unlock()
			time.Sleep(time.Second)
			stop.Store(true)
			wg.Wait()

			res, info := porcupine.CheckOperationsVerbose(kvModel, history, 60*time.Second)
			t.Logf("%d operations (%d acknowledged writes), result %v", len(history), acked.Load(), res)
			if res != porcupine.Ok {
				_ = info
				t.Fatalf("history is not linearizable (%v)", res)
			}
			if acked.Load() < 50 {
				t.Fatalf("only %d writes acknowledged: the cluster made no progress", acked.Load())
			}
			c.waitConverged()
		})
	}
}
