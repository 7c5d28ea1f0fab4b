package server_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/server"
)

// TestMemberAddLearner grows a cluster as etcd's docs do: MemberAdd a
// learner, start it with --initial-cluster-state=existing, promote it,
// then remove a member.
func TestMemberAddLearner(t *testing.T) {
	c := newCluster(t, 3, engines()[0], nil)
	cli := c.client()
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	peer := "http://" + freePorts(t, 1)[0]
	if _, err := cli.MemberAdd(ctx, []string{peer}); err == nil || !strings.Contains(err.Error(), "learner") {
		t.Fatalf("adding a voter: %v, want Unimplemented", err)
	}
	add, err := cli.MemberAddAsLearner(ctx, []string{peer})
	if err != nil {
		t.Fatal(err)
	}
	if !add.Member.IsLearner || len(add.Members) != 4 {
		t.Fatalf("member add: %v", add)
	}
	cfg := c.cfgs[0]
	cfg.Name = "m3"
	cfg.DataDir = filepath.Join(t.TempDir(), "m3")
	cfg.ListenPeerURLs = []string{peer}
	cfg.InitialAdvertisePeerURLs = []string{peer}
	cfg.InitialCluster = c.cfgs[0].InitialCluster + ",m3=" + peer
	cfg.InitialClusterState = server.ClusterStateExisting
	cfg.Logger = testLogger(t, "m3")
	m3, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.members = append(c.members, m3)
	c.cfgs = append(c.cfgs, cfg)
	select {
	case <-m3.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("the new member is not ready")
	}
	if m3.MemberID() != add.Member.ID || m3.ClusterID() != c.members[0].ClusterID() {
		t.Fatalf("new member IDs %x/%x, want %x/%x", m3.MemberID(), m3.ClusterID(), add.Member.ID, c.members[0].ClusterID())
	}
	cli3 := c.client(3)
	waitFor(t, "the learner to catch up", func() bool {
		g, err := cli3.Get(ctx, "before", clientv3.WithSerializable())
		return err == nil && len(g.Kvs) == 1
	})
	waitFor(t, "the promotion", func() bool {
		_, err := cli.MemberPromote(ctx, add.Member.ID)
		return err == nil
	})
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 4 {
		t.Fatalf("member list: %v %v", ml, err)
	}
	for _, m := range ml.Members {
		if m.IsLearner {
			t.Fatalf("member %x is still a learner", m.ID)
		}
	}
	if _, err := cli3.Put(ctx, "after", fmt.Sprint(4)); err != nil {
		t.Fatal(err)
	}

	// Remove a follower (not the one cli3 talks to).
	lead := c.leader()
	victim := 0
	for victim == lead {
		victim++
	}
	if _, err := cli3.MemberRemove(ctx, c.members[victim].MemberID()); err != nil {
		t.Fatal(err)
	}
	ml, err = cli3.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("member list after remove: %v %v", ml, err)
	}
}
