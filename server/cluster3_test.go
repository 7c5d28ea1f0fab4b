package server_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/engine"
)

// TestThreeMembers runs a three-member cluster over real TCP: writes
// through followers, linearizable and serializable reads on every member,
// consistent hashes, membership views, leadership transfer and the loss
// of the leader. bbolt always; pebble and badger unless -short.
func TestThreeMembers(t *testing.T) {
	for _, eng := range engines() {
		if testing.Short() && eng.Name != "bbolt" {
			continue
		}
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			testThreeMembers(t, eng)
		})
	}
}

func testThreeMembers(t *testing.T, eng engine.Engine) {
	c := newCluster(t, 3, eng, nil)
	ctx := ctxT(t)
	lead := c.leader()
	f1, f2 := (lead+1)%3, (lead+2)%3
	clis := []*clientv3.Client{c.client(0), c.client(1), c.client(2)}

	// A write through a follower; linearizable reads on every member see
	// it at once.
	put, err := clis[f1].Put(ctx, "k", "v1")
	if err != nil {
		t.Fatalf("put through a follower: %v", err)
	}
	rev := put.Header.Revision
	for i, cli := range clis {
		g, err := cli.Get(ctx, "k")
		if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v1" || g.Header.Revision < rev {
			t.Fatalf("linearizable get on member %d: %v %v", i, g, err)
		}
		if g.Header.MemberId != c.members[i].MemberID() || g.Header.ClusterId != c.members[0].ClusterID() {
			t.Fatalf("member %d header %v", i, g.Header)
		}
	}
	// Serializable reads on followers are local: they catch up.
	for _, i := range []int{f1, f2} {
		waitFor(t, fmt.Sprintf("serializable get on follower %d", i), func() bool {
			g, err := clis[i].Get(ctx, "k", clientv3.WithSerializable())
			return err == nil && len(g.Kvs) == 1 && string(g.Kvs[0].Value) == "v1"
		})
	}

	// Writes through every member, then equal hashes at one revision.
	for i := range 30 {
		if _, err := clis[i%3].Put(ctx, fmt.Sprintf("w/%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatalf("put %d through member %d: %v", i, i%3, err)
		}
	}
	if _, err := clis[f2].Txn(ctx).If(clientv3.Compare(clientv3.Value("k"), "=", "v1")).Then(clientv3.OpPut("k", "v2")).Commit(); err != nil {
		t.Fatal(err)
	}
	top, err := clis[lead].Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	hashRev := top.Header.Revision
	var hashes []uint32
	for i, cli := range clis {
		// A linearizable read first: the member has applied hashRev.
		if _, err := cli.Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		h, err := cli.HashKV(ctx, c.endpoint(i), hashRev)
		if err != nil {
			t.Fatalf("hashkv on member %d: %v", i, err)
		}
		hashes = append(hashes, h.Hash)
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] {
		t.Fatalf("hashes at revision %d differ: %x", hashRev, hashes)
	}

	// Every member agrees on the leader and the membership.
	leaderID := c.members[lead].MemberID()
	for i, cli := range clis {
		st, err := cli.Status(ctx, c.endpoint(i))
		if err != nil || st.Leader != leaderID || st.Header.MemberId != c.members[i].MemberID() {
			t.Fatalf("status of member %d: %v %v (leader %x)", i, st, err, leaderID)
		}
		ml, err := cli.MemberList(ctx)
		if err != nil || len(ml.Members) != 3 {
			t.Fatalf("member list on member %d: %v %v", i, ml, err)
		}
		for _, mb := range ml.Members {
			if mb.Name == "" || len(mb.PeerURLs) != 1 || mb.IsLearner {
				t.Fatalf("member list on member %d: %v", i, mb)
			}
			if mb.ID == c.members[i].MemberID() && (len(mb.ClientURLs) != 1 || mb.ClientURLs[0] != c.members[i].ClientURLs()[0]) {
				t.Fatalf("member %d lists itself as %v", i, mb)
			}
		}
	}

	// A compaction through a follower applies everywhere.
	if _, err := clis[f1].Compact(ctx, rev+1, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for i, cli := range clis {
		if _, err := cli.Get(ctx, "k", clientv3.WithRev(rev)); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("get below the compaction on member %d: %v", i, err)
		}
	}

	// Move the leadership to a follower.
	if _, err := clis[lead].MoveLeader(ctx, c.members[f1].MemberID()); err != nil {
		t.Fatalf("move leader: %v", err)
	}
	waitFor(t, "the new leader", func() bool { return c.members[f1].Node().IsLeader() })
	lead, f1 = f1, lead

	// Lose the leader: the others elect one and go on.
	if err := c.members[lead].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[lead] = nil
	both := c.client(f1, f2)
	waitFor(t, "a write after the leader stopped", func() bool {
		_, err := both.Put(ctx, "after", "x")
		return err == nil
	})
	for _, i := range []int{f1, f2} {
		g, err := clis[i].Get(ctx, "after")
		if err != nil || len(g.Kvs) != 1 {
			t.Fatalf("get on member %d after the leader stopped: %v %v", i, g, err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
