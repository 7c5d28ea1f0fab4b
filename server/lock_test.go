package server_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
)

// TestLockElection drives the Lock and Election services on a member of a
// three-member cluster (bbolt): a follower, so that the member's own
// client goes through a follower's KV, Lease and Watch.
func TestLockElection(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, engines()[0], nil)
	f := (c.leader() + 1) % 3
	conn := c.client(f).ActiveConnection()
	t.Run("Lock", func(t *testing.T) { testLock(t, conn) })
	t.Run("Election", func(t *testing.T) { testElection(t, conn) })
}

func testLock(t *testing.T, conn *grpc.ClientConn) {
	ctx := ctxT(t)
	lc := v3lockpb.NewLockClient(conn)
	l1, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mylock")})
	if err != nil || len(l1.Key) == 0 || l1.Header.Revision == 0 {
		t.Fatalf("lock: %v %v", l1, err)
	}
	got := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		l2, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mylock")})
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	select {
	case <-got:
		t.Fatal("second lock acquired while the first is held")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: l1.Key}); err != nil {
		t.Fatal(err)
	}
	select {
	case l2 := <-got:
		if l2 == nil || string(l2.Key) == string(l1.Key) {
			t.Fatalf("second lock: %v", l2)
		}
		if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: l2.Key}); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second lock not acquired after unlock")
	}
	// A lock request whose client gives up ends.
	l3, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mylock")})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := lc.Lock(cctx, &v3lockpb.LockRequest{Name: []byte("mylock")}); err == nil {
		t.Fatal("lock acquired while held")
	}
	lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: l3.Key})
}

func testElection(t *testing.T, conn *grpc.ClientConn) {
	ctx := ctxT(t)
	ec := v3electionpb.NewElectionClient(conn)
	c1, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("el"), Value: []byte("a")})
	if err != nil || c1.Leader == nil || c1.Leader.Lease == 0 || string(c1.Leader.Name) != "el" {
		t.Fatalf("campaign: %v %v", c1, err)
	}
	l, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("el")})
	if err != nil || string(l.Kv.Value) != "a" || string(l.Kv.Key) != string(c1.Leader.Key) {
		t.Fatalf("leader: %v %v", l, err)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs, err := ec.Observe(octx, &v3electionpb.LeaderRequest{Name: []byte("el")})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "a" {
		t.Fatalf("observe: %v %v", r, err)
	}
	if _, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: c1.Leader, Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "b" {
		t.Fatalf("observe after proclaim: %v %v", r, err)
	}
	if _, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{}); err == nil {
		t.Fatal("proclaim without a leader key")
	}

	second := make(chan *v3electionpb.CampaignResponse, 1)
	go func() {
		c2, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("el"), Value: []byte("c")})
		if err != nil {
			t.Error(err)
		}
		second <- c2
	}()
	select {
	case <-second:
		t.Fatal("second campaign won while the first leads")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: c1.Leader}); err != nil {
		t.Fatal(err)
	}
	select {
	case c2 := <-second:
		if c2 == nil {
			t.Fatal("second campaign failed")
		}
		if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "c" {
			t.Fatalf("observe after resign: %v %v", r, err)
		}
		ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: c2.Leader})
	case <-time.After(10 * time.Second):
		t.Fatal("second campaign not won after resign")
	}
}
