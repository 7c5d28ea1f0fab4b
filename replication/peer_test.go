package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication/peerpb"
)

// TestWireErrors sends every sentinel through the peer service's status
// encoding: the receiver's error has the sender's text and errors.Is finds
// the same sentinel; an unknown code (a newer member's) keeps only the
// text.
func TestWireErrors(t *testing.T) {
	seen := map[peerpb.ErrorCode]bool{}
	for _, w := range wireErrors {
		if seen[w.code] {
			t.Fatalf("code %s used twice", w.code)
		}
		seen[w.code] = true
		for _, sent := range []error{w.err, fmt.Errorf("index 7: %w", w.err)} {
			got := errorOf(statusOf(sent), ErrLeaderChanged)
			if !errors.Is(got, w.err) || got.Error() != sent.Error() {
				t.Errorf("%v came back as %v (Is: %v)", sent, got, errors.Is(got, w.err))
			}
			// And as a batch's per-proposal answer.
			if got := fromWire(toWire(sent)); !errors.Is(got, w.err) || got.Error() != sent.Error() {
				t.Errorf("%v came back from a batch as %v", sent, got)
			}
		}
	}
	for _, tc := range []struct {
		name string
		err  error
		is   error
		text string
	}{
		{"unknown code", status.New(codes.FailedPrecondition, "new trouble").Err(), ErrLeaderChanged, "replication: leader changed: new trouble"},
		{"older member", status.New(codes.Unimplemented, "unknown method Foo").Err(), ErrUnsupportedRequest, "unknown method Foo"},
		{"no status", errors.New("broken pipe"), ErrLeaderChanged, ""},
	} {
		got := errorOf(tc.err, ErrLeaderChanged)
		if !errors.Is(got, tc.is) || (tc.text != "" && got.Error() != tc.text) {
			t.Errorf("%s: %v, want Is %v and text %q", tc.name, got, tc.is, tc.text)
		}
	}
	if got := fromWire(&peerpb.Error{Code: 999, Message: "from the future"}); got.Error() != "from the future" || errors.Unwrap(got) != nil {
		t.Errorf("unknown code: %#v", got)
	}
	plain := errors.New("plain")
	if w := toWire(plain); w.Code != peerpb.ErrorCode_UNKNOWN || w.Message != "plain" {
		t.Errorf("plain error on the wire: %v", w)
	}
}

// TestKinds checks the request table: each request Strata applies has
// exactly one kind, others none, and quota costs are etcd's.
func TestKinds(t *testing.T) {
	put := &pb.PutRequest{Key: []byte("key"), Value: []byte("value")}
	for _, tc := range []struct {
		req  *pb.InternalRaftRequest
		kind string
		cost int
	}{
		{&pb.InternalRaftRequest{Put: put}, "put", 256 + 3 + 5},
		{&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}, "delete range", 0},
		{&pb.InternalRaftRequest{Txn: &pb.TxnRequest{
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: put}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{
				{Request: &pb.RequestOp_RequestPut{RequestPut: put}}, {Request: &pb.RequestOp_RequestPut{RequestPut: put}}}}}}},
		}}, "txn", 2 * (256 + 8)},
		{&pb.InternalRaftRequest{Txn: &pb.TxnRequest{}}, "txn", 0},
		{&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 3}}, "compaction", 0},
		{&pb.InternalRaftRequest{Range: &pb.RangeRequest{Key: []byte("k")}}, "range", 0},
		{&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{TTL: 5}}, "lease grant", 64},
		{&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 5}}, "lease revoke", 0},
		{&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{}}, "lease checkpoint", 0},
		{&pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{}}, "alarm", 0},
		{&pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{}}, "member attributes", 0},
		{&pb.InternalRaftRequest{ClusterVersionSet: &membershippb.ClusterVersionSetRequest{Ver: "3.7.0"}}, "cluster version", 0},
		{&pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, "auth enable", 0},
		{&pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "u"}}, "user add", 0},
		{&pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{}}, "role grant permission", 0},
		{&pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{}}, "authenticate", 0},
		{&pb.InternalRaftRequest{DowngradeInfoSet: &membershippb.DowngradeInfoSetRequest{}}, "", 0},
		{&pb.InternalRaftRequest{}, "", 0},
		{&pb.InternalRaftRequest{Put: put, LeaseRevoke: &pb.LeaseRevokeRequest{ID: 5}}, "", 0},
	} {
		k, err := kindOf(tc.req)
		switch {
		case tc.kind == "" && !errors.Is(err, ErrUnsupportedRequest):
			t.Errorf("%v: kind %v, err %v; want ErrUnsupportedRequest", tc.req, k, err)
		case tc.kind != "" && (err != nil || k.name != tc.kind):
			t.Errorf("%v: kind %v, err %v; want %s", tc.req, k, err, tc.kind)
		}
		if got := QuotaCost(tc.req); got != tc.cost {
			t.Errorf("%v: cost %d, want %d", tc.req, got, tc.cost)
		}
	}
}

// TestPeerServiceRefusesBadInput sends the leader's peer service what a
// faulty or newer member might: a request kind it does not know, bytes
// that are no request, a kind only the leader proposes, a proposal to a
// follower, an unknown call, and a connection in the byte-coded protocol
// the service replaced. Each gets a clear answer; the cluster goes on
// serving.
func TestPeerServiceRefusesBadInput(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	f := c.nodes[c.follower(l)]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(to *Node, proposals ...[]byte) (*peerpb.ProposeResponse, error) {
		req := &peerpb.ProposeRequest{}
		for _, b := range proposals {
			req.Proposals = append(req.Proposals, &peerpb.Proposal{Request: b})
		}
		resp, err := f.peers.forwardCall(ctx, to.Addr(), &peerpb.ForwardRequest{Call: &peerpb.ForwardRequest_Propose{Propose: req}})
		return resp.GetPropose(), err
	}
	unknown, _ := proto.Marshal(&pb.InternalRaftRequest{DowngradeInfoSet: &membershippb.DowngradeInfoSetRequest{}})
	// A field number no etcd version uses: a kind from the future.
	future := []byte{0xfa, 0xff, 0x03, 0x00}
	good, _ := proto.Marshal(put("peer", "ok"))
	checkpoint, _ := proto.Marshal(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{}})
	resp, err := call(l, unknown, future, []byte{0xff, 0xff, 0xff}, good, checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{ErrUnsupportedRequest, ErrUnsupportedRequest} {
		if e := resp.Results[i].GetRequestError(); e == nil || !errors.Is(fromWire(e), want) {
			t.Errorf("proposal %d: %v, want request error %v", i, resp.Results[i], want)
		}
	}
	if e := resp.Results[2].GetError(); e == nil || !errors.Is(fromWire(e), ErrCorruptEntry) {
		t.Errorf("junk: %v, want %v", resp.Results[2], ErrCorruptEntry)
	}
	if e := resp.Results[4].GetRequestError(); e == nil || !errors.Is(fromWire(e), ErrUnsupportedRequest) {
		t.Errorf("forwarded lease checkpoint: %v, want request error %v", resp.Results[4], ErrUnsupportedRequest)
	}
	pr := &pb.PutResponse{}
	if r := resp.Results[3]; r.GetError() != nil || r.GetRequestError() != nil || proto.Unmarshal(r.GetResponse(), pr) != nil || pr.Header.GetRevision() < 2 {
		t.Errorf("good proposal: %v", r)
	}
	if _, err := call(f, good); !errors.Is(err, ErrNotLeader) {
		t.Errorf("proposal to a follower: %v, want ErrNotLeader", err)
	}
	// A call of a newer member's: an empty one.
	if _, err := f.peers.forwardCall(ctx, l.Addr(), &peerpb.ForwardRequest{}); !errors.Is(err, ErrUnsupportedRequest) {
		t.Errorf("unknown forward call: %v, want ErrUnsupportedRequest", err)
	}
	// The old byte-coded protocol: the connection is closed.
	conn, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte{'F', 9, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	if n, err := conn.Read(make([]byte, 16)); err == nil {
		t.Errorf("the old protocol got %d bytes back", n)
	}
	conn.Close()
	// A follower still proposes through the leader.
	if res := proposeRetry(t, f, put("after", "1")); res.Resp.(*pb.PutResponse).Header.Revision < 3 {
		t.Errorf("put after the bad input: %v", res.Resp)
	}
}

// TestForwardBatches proposes and reads through a follower from many
// clients at once: the follower sends them to the leader in fewer calls
// than requests, every client gets its own answer, and a client whose
// deadline passes gets its own error while the others succeed.
func TestForwardBatches(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	var f *Node
	for _, n := range c.nodes {
		if n != l {
			f = n
			break
		}
	}
	const clients, each = 64, 20
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			for j := range each {
				key := fmt.Sprintf("b/%02d/%02d", i, j)
				res, err := f.Propose(context.Background(), put(key, key))
				if err == nil {
					err = res.Err
				}
				if err == nil && res.Resp.(*pb.PutResponse).Header.Revision < 2 {
					err = fmt.Errorf("put %s answered %v", key, res.Resp)
				}
				if err == nil {
					err = f.ReadBarrier(context.Background())
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	// A client that gives up at once: its own error, nobody else's.
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := f.Propose(expired, put("late", "1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired proposal: %v", err)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if got := countPrefix(t, l, true, "b/"); got != clients*each {
		t.Fatalf("%d keys, want %d", got, clients*each)
	}
	calls, items := f.fwdPropose.calls.Load(), f.fwdPropose.items.Load()
	reads, readItems := f.fwdRead.calls.Load(), f.fwdRead.items.Load()
	t.Logf("proposals: %d in %d calls; read indexes: %d in %d calls", items, calls, readItems, reads)
	if items < clients*each || calls >= items || reads >= readItems {
		t.Fatalf("no batching: %d proposals in %d calls, %d read indexes in %d calls", items, calls, readItems, reads)
	}
	// Errors keep their identity through the follower.
	res, err := f.Propose(context.Background(), &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 12345}})
	if err != nil || !errors.Is(res.Err, mvcc.ErrLeaseNotFound) {
		t.Fatalf("revoke of an unknown lease through a follower: %v, %v", res.Err, err)
	}
}

// TestForwardedReadYourWrites: a proposal forwarded by a follower is
// answered once the follower has applied it, as etcd's members answer from
// their own apply, so a serializable read on that follower sees the write
// (before, 14-22% of such reads through etcdctl's client missed it).
func TestForwardedReadYourWrites(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	for _, f := range c.nodes {
		if f == l {
			continue
		}
		for i := range 100 {
			val := fmt.Sprint(i)
			res, err := f.Propose(context.Background(), put("ryw", val))
			if err == nil {
				err = res.Err
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Index == 0 || f.AppliedIndex() < res.Index {
				t.Fatalf("put %d answered at index %d with the follower at %d", i, res.Index, f.AppliedIndex())
			}
			err = f.View(context.Background(), false, func(s *mvcc.Store) error {
				r, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("ryw")})
				if err == nil && (len(r.Kvs) != 1 || string(r.Kvs[0].Value) != val) {
					err = fmt.Errorf("serializable read after put %s on the same follower: %v", val, r.Kvs)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestConfigValidate checks the Config convention: Open fills defaults on
// its own copy and refuses what cannot work with ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	good := Config{ID: "a", Dir: t.TempDir(), Engine: engines()[0], OpenLog: openWAL, Bind: "127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no ID", func(c *Config) { c.ID = "" }},
		{"no Dir", func(c *Config) { c.Dir = "" }},
		{"no engine", func(c *Config) { c.Engine.Open = nil }},
		{"no log", func(c *Config) { c.OpenLog = nil }},
		{"no Bind", func(c *Config) { c.Bind = "" }},
		{"negative MaxBatch", func(c *Config) { c.MaxBatch = -1 }},
		{"negative election timeout", func(c *Config) { c.ElectionTimeout = -time.Second }},
	} {
		c := good
		tc.edit(&c)
		c.EnsureDefaults()
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tc.name, err)
		}
	}
	c := good
	c.EnsureDefaults()
	if err := c.Validate(); err != nil || c.MaxBatch != 256 || c.Advertise != c.Bind || c.Logger == nil {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	caller := good
	n, err := Open(caller)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if caller.MaxBatch != 0 || caller.Logger != nil || caller.Advertise != "" {
		t.Fatalf("Open changed the caller's config: %+v", caller)
	}
}

// TestClusterVersion sets the cluster version through a follower: every
// member reports it.
func TestClusterVersion(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	for _, n := range c.nodes {
		if v, err := n.ClusterVersion(); err != nil || v != "" {
			t.Fatalf("before: %q, %v", v, err)
		}
	}
	var f *Node
	for _, n := range c.nodes {
		if n != l {
			f = n
		}
	}
	if err := f.SetClusterVersion(context.Background(), "3.7.0"); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	for i, n := range c.nodes {
		if v, err := n.ClusterVersion(); err != nil || v != "3.7.0" {
			t.Fatalf("member %d: %q, %v", i, v, err)
		}
	}
}
