package replication

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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
			var f *Node
			for _, n := range c.nodes {
				if n != l {
					f = n
					break
				}
			}
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
