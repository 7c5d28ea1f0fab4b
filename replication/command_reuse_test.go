package replication

import (
	"context"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// TestLeaderAppliesItsOwnRequests checks the leader applies the requests
// it proposed as they are, without decoding its own entries, while the
// followers decode theirs and reach the same state; and that nothing is
// held once raft answered.
func TestLeaderAppliesItsOwnRequests(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	reused := l.fsm.reusedEntries.Load()
	for i := range 50 {
		res, err := l.Propose(context.Background(), put(fmt.Sprint("k", i%5), fmt.Sprint(i)))
		if err == nil {
			err = res.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := l.fsm.reusedEntries.Load() - reused; got == 0 {
		t.Errorf("the leader decoded every entry it proposed")
	}
	for _, n := range c.nodes {
		if n != l && n.fsm.reusedEntries.Load() != 0 {
			t.Errorf("%s applied %d entries it did not decode as a follower", n.cfg.ID, n.fsm.reusedEntries.Load())
		}
	}
	if n := l.fsm.proposed.len(); n != 0 {
		t.Errorf("%d answered entries still held", n)
	}
	c.waitConverged()
	if d := c.hashDiff(); d != "" {
		t.Fatal(d)
	}
	err := l.View(context.Background(), false, func(s *mvcc.Store) error {
		r, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k4")})
		if err == nil && (len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "49" || r.Kvs[0].Version != 10) {
			err = fmt.Errorf("k4: %v", r.Kvs)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestProposedEntries checks entries are found by the slice proposed, not
// by equal bytes elsewhere.
func TestProposedEntries(t *testing.T) {
	var p proposedEntries
	req := &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("a")}}
	data, err := encodeEntry(nil, []*pb.InternalRaftRequest{req})
	if err != nil {
		t.Fatal(err)
	}
	p.add(data, []*pb.InternalRaftRequest{req})
	if got := p.get(data); len(got) != 1 || got[0] != req {
		t.Fatalf("get(proposed) = %v", got)
	}
	if got := p.get(append([]byte(nil), data...)); got != nil {
		t.Fatalf("get(a copy) = %v, want nil", got)
	}
	if got := p.get(nil); got != nil {
		t.Fatalf("get(nil) = %v", got)
	}
	p.remove(data)
	if got := p.get(data); got != nil || p.len() != 0 {
		t.Fatalf("after remove: %v, %d held", got, p.len())
	}
}
