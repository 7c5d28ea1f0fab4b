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

// history records a porcupine history from clients writing and reading
// linearizably. Writes that fail have an unknown outcome and are recorded as
// never returning; failed reads tell nothing and are dropped.
type history struct {
	mu    sync.Mutex
	ops   []porcupine.Operation
	start time.Time
	stop  atomic.Bool
	wg    sync.WaitGroup
	// acked counts, per phase, the writes both sent and acknowledged in
	// it (a write committed before a fault but answered after it does not
	// show that the cluster serves through the fault).
	acked [3]atomic.Int64
	phase atomic.Int32
}

// run starts clients goroutines; client cl sends each operation to
// pick(cl, r) and uses keys k0..k(keys-1). The clients stop at finish, or
// when t ends: call run after starting the cluster, so that they stop before
// its cleanup closes the nodes they use.
func (h *history) run(t *testing.T, clients, keys int, timeout time.Duration, pick func(cl int, r *rand.Rand) *Node) {
	t.Cleanup(h.halt)
	h.start = time.Now()
	now := func() int64 { return int64(time.Since(h.start)) }
	for cl := range clients {
		h.wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(cl), 99))
			for seq := 0; !h.stop.Load(); seq++ {
				n := pick(cl, r)
				key := fmt.Sprintf("k%d", r.IntN(keys))
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				phase := h.phase.Load()
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
					} else if h.phase.Load() == phase {
						h.acked[phase].Add(1)
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
				h.mu.Lock()
				h.ops = append(h.ops, op)
				h.mu.Unlock()
			}
		})
	}
}

// enter starts phase p and keeps it for at least d and until a write has
// been acknowledged in it: the cluster must make progress in every phase, and
// how soon depends on the machine (an election under -race on a loaded
// machine can take longer than d). It fails the test if no write is
// acknowledged within 30 seconds, and logs how long the first one took.
func (h *history) enter(t *testing.T, p int32, d time.Duration) {
	t.Helper()
	h.phase.Store(p)
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	var first time.Duration
	for {
		if first == 0 && h.acked[p].Load() > 0 {
			first = time.Since(start)
		}
		if first != 0 && time.Since(start) >= d {
			t.Logf("phase %d: first write acknowledged after %v", p, first.Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %d: no write acknowledged in %v", p, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// halt stops the clients and waits for them.
func (h *history) halt() {
	h.stop.Store(true)
	h.wg.Wait()
}

// finish stops the clients and checks the history.
func (h *history) finish(t *testing.T) {
	t.Helper()
	h.halt()
	res, _ := porcupine.CheckOperationsVerbose(kvModel, h.ops, 60*time.Second)
	t.Logf("%d operations; acknowledged writes by phase %d/%d/%d; %v",
		len(h.ops), h.acked[0].Load(), h.acked[1].Load(), h.acked[2].Load(), res)
	if res != porcupine.Ok {
		t.Fatalf("history is not linearizable (%v)", res)
	}
}

// TestLinearizableUnderLeaderFailure runs clients against every member
// (followers forward) while the leader is killed and later restarted, and
// checks the history with porcupine.
func TestLinearizableUnderLeaderFailure(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, nil)
			c.leader()
			var nodesMu sync.RWMutex
			var h history
			h.run(t, 6, 4, 3*time.Second, func(_ int, r *rand.Rand) *Node {
				nodesMu.RLock()
				defer nodesMu.RUnlock()
				for {
					if n := c.nodes[r.IntN(len(c.nodes))]; n != nil {
						return n
					}
				}
			})
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
			// Without the old leader: the others elect a new one and serve.
			h.enter(t, 1, 1500*time.Millisecond)
			nodesMu.Lock()
			c.start(li)
			nodesMu.Unlock()
			// The old leader is back and catches up.
			h.enter(t, 2, time.Second)
			h.finish(t)
			c.waitConverged()
		})
	}
}
