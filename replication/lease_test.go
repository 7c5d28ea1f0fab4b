package replication

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// proposeRetry proposes req until the cluster answers it, as a client
// would after "leader changed" on a loaded machine, and fails the test on
// a request error.
func proposeRetry(t *testing.T, n *Node, req *pb.InternalRaftRequest) Result {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := n.Propose(ctx, req)
		cancel()
		if err == nil {
			if res.Err != nil {
				t.Fatalf("%v: %v", req, res.Err)
			}
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: %v", req, err)
		}
	}
}

func grant(t *testing.T, n *Node, ttl int64) int64 {
	t.Helper()
	res := proposeRetry(t, n, &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{TTL: ttl}})
	return res.Resp.(*pb.LeaseGrantResponse).ID
}

func keyExists(t *testing.T, n *Node, key string) bool {
	t.Helper()
	return countPrefix(t, n, false, key) == 1
}

// TestLeasesThroughFollower grants, attaches, renews and lets a lease expire,
// all through a follower: renewals and time-to-live questions reach the
// leader, and the leader revokes the expired lease, deleting its key on
// every member.
func TestLeasesThroughFollower(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, nil)
			l := c.leader()
			f := c.nodes[c.follower(l)]
			ctx := context.Background()
			id := grant(t, f, 2)
			proposeRetry(t, f, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("leased"), Value: []byte("v"), Lease: id}})
			ttl, err := f.LeaseTimeToLive(ctx, id, true)
			if err != nil {
				t.Fatalf("time to live: %v", err)
			}
			if ttl.GrantedTTL != 2 || ttl.TTL < 1 || ttl.TTL > 2 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "leased" {
				t.Fatalf("time to live = %v", ttl)
			}
			// Keep it alive well past its TTL.
			for range 8 {
				got, err := f.LeaseRenew(ctx, id)
				if err != nil || got != 2 {
					t.Fatalf("renew = %d, %v", got, err)
				}
				time.Sleep(400 * time.Millisecond)
			}
			if !keyExists(t, l, "leased") {
				t.Fatalf("a renewed lease expired")
			}
			// Stop renewing: the leader revokes it and the key goes away.
			waitFor(t, "the lease to expire", func() bool {
				for _, n := range c.nodes {
					if keyExists(t, n, "leased") {
						return false
					}
				}
				return true
			})
			if _, err := f.LeaseRenew(ctx, id); err == nil {
				t.Fatalf("renewed a revoked lease")
			}
		})
	}
}

// TestLeaseSurvivesLeaderChange checks a leader change does not cut a TTL
// short: the new leader counts the remaining TTL from its own promotion.
func TestLeaseSurvivesLeaderChange(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, nil)
			l := c.leader()
			id := grant(t, l, 3)
			granted := time.Now()
			proposeRetry(t, l, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Lease: id}})
			for i, n := range c.nodes {
				if n == l {
					c.stop(i)
				}
			}
			l = c.leader()
			if since := time.Since(granted); since < 2500*time.Millisecond && !keyExists(t, l, "k") {
				t.Fatalf("lease gone %s after a 3 s grant", since)
			}
			waitFor(t, "the lease to expire under the new leader", func() bool { return !keyExists(t, l, "k") })
			if since := time.Since(granted); since < 3*time.Second {
				t.Fatalf("lease expired %s after a 3 s grant", since)
			}
		})
	}
}

// TestLeaseIDsUniqueAcrossLeaderChanges grants and revokes leases through
// every member while the leader is stopped and restarted and a member with
// a lost disk catches up from a snapshot: no ID the cluster hands out is
// handed out again, and every member ends up with the same lease table.
// The sequence behind the IDs is part of the replicated state, so it does
// not matter which member led when a grant was proposed.
func TestLeaseIDsUniqueAcrossLeaderChanges(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, func(cfg *Config) {
				cfg.SnapshotCount = 50
				cfg.SnapshotInterval = 100 * time.Millisecond
			})
			seen := make(map[int64]bool)
			var live []int64
			cycles := func(n *Node, count int) {
				t.Helper()
				for range count {
					id := grant(t, n, 600)
					if seen[id] {
						t.Fatalf("lease ID %x handed out again (after %d grants)", id, len(seen))
					}
					seen[id] = true
					live = append(live, id)
					if len(live) > 2 {
						revokeLease(t, n, live[0])
						live = live[1:]
					}
				}
			}
			for round := range 3 {
				for _, n := range c.nodes {
					cycles(n, 40)
				}
				// Stop the leader; grant through the others while it is
				// down; bring it back.
				li := c.index(c.leader())
				c.stop(li)
				cycles(c.leader(), 40)
				c.start(li)
				if round == 1 {
					// A member with a lost disk catches up from a snapshot.
					fi := (c.index(c.leader()) + 1) % len(c.nodes)
					c.stop(fi)
					cycles(c.leader(), 100)
					if err := c.leader().Snapshot(); err != nil {
						t.Fatalf("snapshot: %v", err)
					}
					c.dirs[fi] = t.TempDir()
					c.start(fi)
					c.waitConverged()
					if c.nodes[fi].fsm.restores.Load() == 0 {
						t.Fatalf("member %d caught up from the log, not from a snapshot", fi)
					}
					cycles(c.nodes[fi], 40)
				}
			}
			c.waitConverged()
			var want []int64
			for i, n := range c.nodes {
				var got []int64
				if err := n.View(context.Background(), false, func(s *mvcc.Store) error {
					got = s.Leases()
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				for _, id := range live {
					if !slices.Contains(got, id) {
						t.Fatalf("member %d lacks live lease %x", i, id)
					}
				}
				if i == 0 {
					want = got
				} else if !slices.Equal(got, want) {
					t.Fatalf("member %d has leases %x, member 0 %x", i, got, want)
				}
			}
		})
	}
}

// revokeLease revokes lease id; a retried revoke whose first try was
// applied finds it gone, which counts as done.
func revokeLease(t *testing.T, n *Node, id int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := n.Propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
		cancel()
		if err == nil {
			if res.Err != nil && !errors.Is(res.Err, mvcc.ErrLeaseNotFound) {
				t.Fatalf("revoke %x: %v", id, res.Err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoke %x: %v", id, err)
		}
	}
}

// index returns the position of n among the cluster's members.
// follower returns the index of the first node that is not l.
func (c *cluster) follower(l *Node) int {
	c.t.Helper()
	for i, n := range c.nodes {
		if n != l {
			return i
		}
	}
	c.t.Fatalf("no node but the leader")
	return -1
}

func (c *cluster) index(n *Node) int {
	c.t.Helper()
	i := slices.Index(c.nodes, n)
	if i < 0 {
		c.t.Fatalf("node %s is not running", n.ID())
	}
	return i
}
