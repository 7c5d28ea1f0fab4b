package replication

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/backends/bbolt"
)

// TestAlarmsReplicated raises NOSPACE through the log: every member lists
// it, requests that add data are refused when applied (etcd's capped
// applier), others pass, the alarm survives a restart, and clearing it
// lets writes in again.
func TestAlarmsReplicated(t *testing.T) {
	c := newCluster(t, bbolt.Engine(), 3, nil)
	l := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	propose := func(n *Node, r *pb.InternalRaftRequest) Result {
		t.Helper()
		res, err := n.Propose(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	alarm := func(action pb.AlarmRequest_AlarmAction) *pb.InternalRaftRequest {
		return &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{Action: action, MemberID: 0xabc, Alarm: pb.AlarmType_NOSPACE}}
	}
	res := propose(l, alarm(pb.AlarmRequest_ACTIVATE))
	if r := res.Resp.(*pb.AlarmResponse); len(r.Alarms) != 1 || r.Alarms[0].MemberID != 0xabc {
		t.Fatalf("activate answered %v", r)
	}
	if r := propose(l, alarm(pb.AlarmRequest_ACTIVATE)).Resp.(*pb.AlarmResponse); len(r.Alarms) != 0 {
		t.Fatalf("activating twice answered %v, want no alarm", r)
	}
	c.waitConverged()
	for _, n := range c.nodes {
		if a := n.Alarms(pb.AlarmType_NONE); len(a) != 1 || a[0].Alarm != pb.AlarmType_NOSPACE || !n.NoSpace() {
			t.Fatalf("member %s alarms %v", n.ID(), a)
		}
	}
	nested := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}}}}}}}
	readOnly := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}}}
	for _, tc := range []struct {
		name string
		req  *pb.InternalRaftRequest
		want error
	}{
		{"put", put("k", "v"), ErrNoSpace},
		{"txn with a nested put", &pb.InternalRaftRequest{Txn: nested}, ErrNoSpace},
		{"lease grant", &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{TTL: 10}}, ErrNoSpace},
		{"read-only txn", &pb.InternalRaftRequest{Txn: readOnly}, nil},
		{"delete", &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}, nil},
	} {
		// Through a follower too: the refusal happens when applied.
		for _, n := range []*Node{l, c.nodes[(indexOf(c.nodes, l)+1)%3]} {
			if res := propose(n, tc.req); !errors.Is(res.Err, tc.want) {
				t.Fatalf("%s through %s: %v, want %v", tc.name, n.ID(), res.Err, tc.want)
			}
		}
	}

	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	l = c.leader()
	if !l.NoSpace() {
		t.Fatalf("alarm lost on restart")
	}
	// Through a follower: the answer is forwarded back.
	if r, ok := propose(c.nodes[(indexOf(c.nodes, l)+1)%3], alarm(pb.AlarmRequest_DEACTIVATE)).Resp.(*pb.AlarmResponse); !ok || len(r.Alarms) != 1 {
		t.Fatalf("deactivate answered %v", r)
	}
	if res := propose(l, put("k", "v")); res.Err != nil {
		t.Fatalf("put after the alarm cleared: %v", res.Err)
	}
	c.waitConverged()
	for _, n := range c.nodes {
		if n.NoSpace() || len(n.Alarms(pb.AlarmType_NONE)) != 0 {
			t.Fatalf("member %s still has alarms %v", n.ID(), n.Alarms(pb.AlarmType_NONE))
		}
	}
}

func indexOf(nodes []*Node, n *Node) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}
