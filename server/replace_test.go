package server_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/server"
)

// TestReplaceMembersEngines moves a running three-member bbolt cluster to
// one member per engine, replacing members one at a time (etcd's way: add
// the new member as a learner, start it, promote it, remove the old one)
// while a client keeps writing. The new members catch up from a raft
// snapshot written by a member on another engine. At the end every member
// has the same HashKV and every acknowledged write is there.
func TestReplaceMembersEngines(t *testing.T) {
	eng := engines()
	c := newCluster(t, 3, eng[0], func(cfg *server.Config) { cfg.SnapshotCount, cfg.SnapshotCatchUpEntries = 50, 50 })
	ctx := ctxT(t)
	cli := c.client(2) // member 2 stays
	// Member 2 leads: removing the leader would fail the writes in flight
	// with "leader changed" (their outcome unknown), as in etcd.
	if lead := c.leader(); lead != 2 {
		if _, err := c.client(lead).MoveLeader(ctx, c.members[2].MemberID()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("pre/%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		if err := m.Node().Snapshot(); err != nil {
			t.Fatal(err)
		}
	}

	// The writer.
	wctx, stop := context.WithCancel(ctx)
	var (
		wg     sync.WaitGroup
		acked  []string
		failed int
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			k := fmt.Sprintf("w/%05d", i)
			pctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			_, err := cli.Put(pctx, k, "v", clientv3.WithLease(lease.ID))
			cancel()
			if err == nil {
				acked = append(acked, k)
			} else if wctx.Err() == nil {
				failed++ // an election under load: the outcome is unknown
			}
		}
	}()

	for old, to := range []engine.Engine{eng[1], eng[2]} {
		name := fmt.Sprintf("n%d", old)
		peer := "http://" + freePorts(t, 1)[0]
		addID := addLearner(t, cli, peer)
		cfg := c.cfgs[0]
		cfg.Name, cfg.DataDir, cfg.Engine = name, filepath.Join(t.TempDir(), name), to
		cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peer}, []string{peer}
		cfg.InitialCluster = c.cfgs[0].InitialCluster + "," + name + "=" + peer
		cfg.InitialClusterState = server.ClusterStateExisting
		cfg.Logger = testLogger(t, name)
		m, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.members, c.cfgs = append(c.members, m), append(c.cfgs, cfg)
		select {
		case <-m.ReadyNotify():
		case <-time.After(20 * time.Second):
			t.Fatalf("member %s is not ready", name)
		}
		waitFor(t, "the promotion of "+name, func() bool {
			_, err := cli.MemberPromote(ctx, addID)
			return err == nil
		})
		if n := m.Node().SnapshotRestores(); n == 0 {
			t.Errorf("member %s (%s) caught up without a snapshot", name, to.Name)
		}
		waitFor(t, "the removal of the old member", func() bool {
			_, err := cli.MemberRemove(ctx, c.members[old].MemberID())
			return err == nil || errors.Is(err, rpctypes.ErrMemberNotFound)
		})
		select {
		case <-c.members[old].StopNotify():
		case <-time.After(20 * time.Second):
			t.Fatalf("removed member %d did not stop", old)
		}
		c.members[old].Close()
		c.members[old] = nil
	}
	time.Sleep(200 * time.Millisecond) // writes go on with the new members
	stop()
	wg.Wait()
	if failed > len(acked)/10 {
		t.Fatalf("%d writes failed during the replacements, %d acknowledged", failed, len(acked))
	}

	live := []int{2, 3, 4}
	last, err := cli.Put(ctx, "last", "1")
	if err != nil {
		t.Fatal(err)
	}
	rev := last.Header.Revision
	var first *clientv3.HashKVResponse
	for _, i := range live {
		mc := c.client(i)
		var h *clientv3.HashKVResponse
		waitFor(t, "HashKV", func() bool {
			h, err = mc.HashKV(ctx, c.endpoint(i), rev)
			return err == nil
		})
		if first == nil {
			first = h
		} else if h.Hash != first.Hash || h.CompactRevision != first.CompactRevision {
			t.Fatalf("member %d (%s): HashKV %x/%d at %d, member 2 (bbolt): %x/%d", i, c.cfgs[i].Engine.Name,
				h.Hash, h.CompactRevision, rev, first.Hash, first.CompactRevision)
		}
		g, err := mc.Get(ctx, "w/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithSerializable(), clientv3.WithRev(rev))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, kv := range g.Kvs {
			got[string(kv.Key)] = true
		}
		for _, k := range acked {
			if !got[k] {
				t.Fatalf("member %d: acknowledged write %s missing", i, k)
			}
		}
		ttl, err := mc.TimeToLive(ctx, lease.ID)
		if err != nil || ttl.TTL <= 0 {
			t.Fatalf("member %d: lease %x: %v %v", i, lease.ID, ttl, err)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no write acknowledged")
	}
	t.Logf("%d writes acknowledged during the replacements (%d of unknown outcome); HashKV %x at revision %d", len(acked), failed, first.Hash, rev)
}

// addLearner adds a learner with peer URL peer and returns its ID. A call
// that fails with an unknown outcome (a leader change) is checked against
// the member list before it is tried again.
func addLearner(t *testing.T, cli *clientv3.Client, peer string) uint64 {
	t.Helper()
	ctx := ctxT(t)
	var id uint64
	waitFor(t, "the learner "+peer+" to be added", func() bool {
		add, err := cli.MemberAddAsLearner(ctx, []string{peer})
		if err == nil {
			id = add.Member.ID
			return true
		}
		ml, lerr := cli.MemberList(ctx)
		if lerr != nil {
			return false
		}
		for _, m := range ml.Members {
			if slices.Contains(m.PeerURLs, peer) {
				id = m.ID
				return true
			}
		}
		return false
	})
	return id
}
