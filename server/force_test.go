package server_test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/server"
)

// TestForceNewCluster loses two of three members for good, then restarts
// the third with ForceNewCluster (etcd's --force-new-cluster): it keeps
// its data, member ID and cluster ID, is the only member, and serves
// writes, also after a restart without the flag; a lost member started
// again on its data learns it was removed and stops.
func TestForceNewCluster(t *testing.T) {
	c := newCluster(t, 3, engines()[1], func(cfg *server.Config) { cfg.ElectionTimeout = 500 * time.Millisecond })
	ctx := ctxT(t)
	cli := c.client(2)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprint("k", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	want, err := cli.Get(ctx, "k", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	memberID, clusterID := c.members[2].MemberID(), c.members[2].ClusterID()
	for _, i := range []int{0, 1, 2} {
		if err := c.members[i].Close(); err != nil {
			t.Fatal(err)
		}
		c.members[i] = nil
	}

	restart := func(force bool) *clientv3.Client {
		t.Helper()
		cfg := c.cfgs[2]
		cfg.ForceNewCluster = force
		m, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.members[2] = m
		select {
		case <-m.ReadyNotify():
		case <-time.After(20 * time.Second):
			t.Fatal("forced member not ready")
		}
		if m.MemberID() != memberID || m.ClusterID() != clusterID {
			t.Fatalf("IDs %x/%x, want %x/%x", m.MemberID(), m.ClusterID(), memberID, clusterID)
		}
		return c.client(2)
	}
	check := func(cli *clientv3.Client, extra int64) {
		t.Helper()
		got, err := cli.Get(ctx, "k", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if got.Header.Revision != want.Header.Revision+extra || len(got.Kvs) != len(want.Kvs) {
			t.Fatalf("%d keys at revision %d, want %d at %d", len(got.Kvs), got.Header.Revision, len(want.Kvs), want.Header.Revision+extra)
		}
		for i, kv := range got.Kvs {
			if w := want.Kvs[i]; string(kv.Key) != string(w.Key) || kv.ModRevision != w.ModRevision || kv.Version != w.Version {
				t.Fatalf("key %d: %v, want %v", i, kv, w)
			}
		}
		ml, err := cli.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ml.Members) != 1 || ml.Members[0].ID != memberID {
			t.Fatalf("members %v, want only %x", ml.Members, memberID)
		}
	}
	cli = restart(true)
	check(cli, 0)
	put, err := cli.Put(ctx, "after", "1")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision != want.Header.Revision+1 {
		t.Fatalf("put at revision %d, want %d", put.Header.Revision, want.Header.Revision+1)
	}
	if err := c.members[2].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[2] = nil
	cli = restart(false)
	check(cli, 1)
	if _, err := cli.Put(ctx, "after", "2"); err != nil {
		t.Fatal(err)
	}

	// A lost member started again on its old data learns from the forced
	// member that it was removed, and stops.
	old, err := server.Start(c.cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	c.members[0] = old
	select {
	case <-old.StopNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("a member removed by --force-new-cluster did not stop")
	}
	check(cli, 2)
}
