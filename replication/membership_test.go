package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
)

// addNode starts a node that joins rather than bootstraps.
func (c *cluster) addNode() int {
	c.t.Helper()
	i := len(c.nodes)
	c.dirs = append(c.dirs, c.t.TempDir())
	c.addrs = append(c.addrs, freeAddrs(c.t, 1)[0])
	c.peers = append(c.peers, Peer{ID: fmt.Sprintf("a%d", i), Addr: c.addrs[i]})
	c.nodes = append(c.nodes, nil)
	tweak := c.tweak
	c.tweak = func(cfg *Config) {
		if cfg.ID == c.peers[i].ID {
			cfg.Bootstrap = nil
		}
		if tweak != nil {
			tweak(cfg)
		}
	}
	c.start(i)
	return i
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func member(t *testing.T, n *Node, id string) (Member, bool) {
	t.Helper()
	ms, err := n.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// TestMembershipUnderLoad adds a learner, promotes it, removes an original
// member and moves leadership to the new one, all requested through
// followers while clients keep writing. No acknowledged write may be lost.
func TestMembershipUnderLoad(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, nil)
			l := c.leader()
			first := l
			follower := func() *Node {
				for _, n := range c.nodes {
					if n != nil && !n.IsLeader() {
						return n
					}
				}
				return nil
			}

			var (
				stop    atomic.Bool
				acked   sync.Map
				writers sync.WaitGroup
				nodesMu sync.RWMutex
			)
			// Stop the writers before the cluster's cleanup closes the nodes,
			// also when the test fails early: left running they race with it
			// on c.nodes and spin against closed nodes for the rest of the
			// package's tests.
			t.Cleanup(func() {
				stop.Store(true)
				writers.Wait()
			})
			for w := range 4 {
				writers.Go(func() {
					for i := 0; !stop.Load(); i++ {
						nodesMu.RLock()
						n := c.nodes[w%3]
						nodesMu.RUnlock()
						if n == nil {
							n = first
						}
						key := fmt.Sprintf("w%d/%06d", w, i)
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						res, err := n.Propose(ctx, put(key, "v"))
						cancel()
						if err == nil && res.Err == nil {
							acked.Store(key, true)
						}
					}
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// Add a learner through a follower; it may not vote yet.
			time.Sleep(300 * time.Millisecond)
			nodesMu.Lock()
			ni := c.addNode()
			nodesMu.Unlock()
			newID, newAddr := c.peers[ni].ID, c.nodes[ni].Addr()
			if err := follower().AddLearner(ctx, newID, newAddr); err != nil {
				t.Fatalf("add learner: %v", err)
			}
			if err := follower().AddLearner(ctx, newID, newAddr); !errors.Is(err, ErrMemberExists) {
				t.Fatalf("adding it twice: %v, want ErrMemberExists", err)
			}
			if m, ok := member(t, l, newID); !ok || !m.Learner {
				t.Fatalf("new member %+v (present %v), want a learner", m, ok)
			}
			// Promote it once it has caught up. The leader refuses a learner
			// whose store is below 90% of its commit index; one just added
			// may not have received a single entry yet. Like an etcd client,
			// retry while the answer is ErrLearnerNotReady.
			waitFor(t, "the learner to catch up and be promoted", func() bool {
				err := follower().PromoteLearner(ctx, newID)
				if errors.Is(err, ErrLearnerNotReady) {
					return false
				}
				if err != nil {
					t.Fatalf("promote: %v", err)
				}
				return true
			})
			if m, _ := member(t, l, newID); m.Learner {
				t.Fatalf("still a learner after promotion")
			}
			if err := l.PromoteLearner(ctx, newID); !errors.Is(err, ErrNotLearner) {
				t.Fatalf("promoting a voter: %v, want ErrNotLearner", err)
			}

			// Remove an original follower and stop it.
			var gone int
			for i, n := range c.nodes[:3] {
				if n != l {
					gone = i
					break
				}
			}
			if err := c.nodes[ni].RemoveMember(ctx, c.peers[gone].ID); err != nil {
				t.Fatalf("remove: %v", err)
			}
			nodesMu.Lock()
			c.stop(gone)
			nodesMu.Unlock()
			if _, ok := member(t, l, c.peers[gone].ID); ok {
				t.Fatalf("removed member still listed")
			}

			// Move leadership to the new member.
			if err := l.TransferLeadership(ctx, newID); err != nil {
				t.Fatalf("transfer leadership: %v", err)
			}
			waitFor(t, "the new member to lead", func() bool { return c.nodes[ni].IsLeader() })
			l = c.leader()
			time.Sleep(300 * time.Millisecond)
			stop.Store(true)
			writers.Wait()

			c.waitConverged()
			n := 0
			var missing []string
			acked.Range(func(k, _ any) bool {
				n++
				key := k.(string)
				err := l.View(context.Background(), true, func(s *mvcc.Store) error {
					resp, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte(key)})
					if err == nil && len(resp.Kvs) != 1 {
						missing = append(missing, key)
					}
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return true
			})
			if len(missing) > 0 {
				t.Fatalf("%d of %d acknowledged writes lost, e.g. %s", len(missing), n, missing[0])
			}
			t.Logf("%d acknowledged writes survived the membership changes", n)
		})
	}
}

// TestMemberAttrs publishes members' names and client URLs through
// followers and reads them back on every member, also after a restart.
func TestMemberAttrs(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) { testMemberAttrs(t, eng) })
	}
}

func testMemberAttrs(t *testing.T, eng engine.Engine) {
	c := newCluster(t, eng, 3, nil)
	c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, n := range c.nodes {
		url := fmt.Sprintf("http://127.0.0.1:%d", 3000+i)
		if err := n.SetMemberAttrs(ctx, n.ID(), "name-"+n.ID(), []string{url}); err != nil {
			t.Fatalf("set attrs of %s: %v", n.ID(), err)
		}
	}
	if err := c.nodes[0].SetMemberAttrs(ctx, "not-hex", "x", nil); err == nil {
		t.Fatalf("attributes accepted for a non-hexadecimal ID")
	}
	check := func() {
		c.waitConverged()
		for _, n := range c.nodes {
			ms, err := n.Members()
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range ms {
				want := fmt.Sprintf("http://127.0.0.1:%d", 3000+i)
				if m.Name != "name-"+m.ID || len(m.ClientURLs) != 1 || m.ClientURLs[0] != want {
					t.Fatalf("%s sees member %+v", n.ID(), m)
				}
			}
		}
	}
	check()
	c.stop(1)
	c.start(1)
	check()
}
