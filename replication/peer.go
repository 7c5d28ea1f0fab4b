package replication

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/replication/peerpb"
)

// The peer service (peerpb.Peer) lets any member take writes and
// linearizable reads: a follower sends proposals, read-index requests,
// keep-alives and membership changes to the leader over the peer port and
// relays the answers. It is gRPC, served on the peer port beside raft (the
// mux routes connections by their first byte).

// maxPeerMessage bounds one peer-service message: a batch of proposals, or
// an answer to one.
const maxPeerMessage = 64 << 20

// peerService serves peerpb.Peer for a node.
type peerService struct {
	peerpb.UnimplementedPeerServer
	n *Node
}

// Fixed HTTP/2 flow-control windows for the peer service: they turn off
// gRPC's bandwidth estimation, whose pings cost a forwarded request a
// round trip now and then, and suit a LAN link between members.
const (
	peerStreamWindow = 1 << 20
	peerConnWindow   = 8 << 20
)

func newPeerServer(n *Node) *grpc.Server {
	s := grpc.NewServer(grpc.MaxRecvMsgSize(maxPeerMessage), grpc.MaxSendMsgSize(maxPeerMessage),
		grpc.InitialWindowSize(peerStreamWindow), grpc.InitialConnWindowSize(peerConnWindow))
	peerpb.RegisterPeerServer(s, &peerService{n: n})
	return s
}

// Propose proposes every request of the batch at once (the proposer packs
// them into as few raft entries as it can) and answers each on its own.
func (s *peerService) Propose(ctx context.Context, req *peerpb.ProposeRequest) (*peerpb.ProposeResponse, error) {
	if !s.n.IsLeader() {
		return nil, statusOf(ErrNotLeader)
	}
	out := &peerpb.ProposeResponse{Results: make([]*peerpb.ProposeResult, len(req.GetProposals()))}
	var wg sync.WaitGroup
	for i, p := range req.GetProposals() {
		wg.Go(func() { out.Results[i] = s.propose(ctx, p) })
	}
	wg.Wait()
	return out, nil
}

func (s *peerService) propose(ctx context.Context, p *peerpb.Proposal) *peerpb.ProposeResult {
	r := &pb.InternalRaftRequest{}
	if err := proto.Unmarshal(p.GetRequest(), r); err != nil {
		return &peerpb.ProposeResult{Error: toWire(fmt.Errorf("%w: forwarded request: %w", ErrCorruptEntry, err))}
	}
	// A kind this member does not know (a newer member's, during a
	// rolling upgrade) is refused here rather than proposed.
	if _, err := kindOf(r); err != nil {
		return &peerpb.ProposeResult{RequestError: toWire(err)}
	}
	if d := p.GetDeadline(); d != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, d))
		defer cancel()
	}
	res, err := s.n.proposeLocal(ctx, r)
	switch {
	case err != nil:
		return &peerpb.ProposeResult{Error: toWire(err)}
	case res.Err != nil:
		return &peerpb.ProposeResult{RequestError: toWire(res.Err)}
	case res.Resp == nil:
		return &peerpb.ProposeResult{}
	}
	b, err := proto.Marshal(res.Resp)
	if err != nil {
		return &peerpb.ProposeResult{Error: toWire(err)}
	}
	return &peerpb.ProposeResult{Response: b}
}

func (s *peerService) ReadIndex(ctx context.Context, _ *peerpb.ReadIndexRequest) (*peerpb.ReadIndexResponse, error) {
	ri, err := s.n.leaderReadIndex(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	return &peerpb.ReadIndexResponse{Index: ri}, nil
}

func (s *peerService) LeaseRenew(ctx context.Context, req *peerpb.LeaseRenewRequest) (*peerpb.LeaseRenewResponse, error) {
	if !s.n.IsLeader() {
		return nil, statusOf(ErrNotLeader)
	}
	ttl, err := s.n.leaseRenewLocal(ctx, req.GetId())
	if err != nil {
		return nil, statusOf(err)
	}
	return &peerpb.LeaseRenewResponse{Ttl: ttl}, nil
}

func (s *peerService) LeaseTimeToLive(ctx context.Context, req *peerpb.LeaseTimeToLiveRequest) (*peerpb.LeaseTimeToLiveResponse, error) {
	if !s.n.IsLeader() {
		return nil, statusOf(ErrNotLeader)
	}
	resp, err := s.n.leaseTTLLocal(ctx, req.GetId(), req.GetKeys())
	if err != nil {
		return nil, statusOf(err)
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		return nil, statusOf(err)
	}
	return &peerpb.LeaseTimeToLiveResponse{Response: b}, nil
}

func (s *peerService) MemberChange(ctx context.Context, req *peerpb.MemberChangeRequest) (*peerpb.MemberChangeResponse, error) {
	if !s.n.IsLeader() {
		return nil, statusOf(ErrNotLeader)
	}
	if err := s.n.memberOpLocal(ctx, req.GetOp(), req.GetId(), req.GetAddress()); err != nil {
		return nil, statusOf(err)
	}
	return &peerpb.MemberChangeResponse{}, nil
}

func (s *peerService) Applied(context.Context, *peerpb.AppliedRequest) (*peerpb.AppliedResponse, error) {
	return &peerpb.AppliedResponse{Index: s.n.AppliedIndex()}, nil
}

func (s *peerService) MemberState(_ context.Context, req *peerpb.MemberStateRequest) (*peerpb.MemberStateResponse, error) {
	return &peerpb.MemberStateResponse{Status: s.n.memberState(req.GetId())}, nil
}

// peerClients keeps one gRPC connection per peer address.
type peerClients struct {
	m      *peerMux
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// client returns the peer-service client of the member at addr.
func (c *peerClients) client(addr string) (peerpb.PeerClient, *grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrStopped
	}
	if cc := c.conns[addr]; cc != nil {
		return peerpb.NewPeerClient(cc), cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			timeout := 5 * time.Second
			if d, ok := ctx.Deadline(); ok {
				timeout = min(timeout, time.Until(d))
			}
			return c.m.dialProto(a, muxPeer, timeout)
		}),
		// A leader that comes back is reached again quickly.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPeerMessage), grpc.MaxCallSendMsgSize(maxPeerMessage)),
		grpc.WithInitialWindowSize(peerStreamWindow), grpc.WithInitialConnWindowSize(peerConnWindow),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("replication: peer %s: %w", addr, err)
	}
	if c.conns == nil {
		c.conns = make(map[string]*grpc.ClientConn)
	}
	c.conns[addr] = cc
	return peerpb.NewPeerClient(cc), cc, nil
}

// connected returns the client of the member at addr once its connection
// is up, or ErrNoLeader when it cannot be had before ctx ends or the
// connection fails: a request not sent yet may be sent elsewhere.
func (c *peerClients) connected(ctx context.Context, addr string) (peerpb.PeerClient, error) {
	cl, cc, err := c.client(addr)
	if err != nil {
		return nil, err
	}
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return cl, nil
		case connectivity.Idle:
			cc.Connect()
		case connectivity.TransientFailure, connectivity.Shutdown:
			return nil, fmt.Errorf("%w: reach %s: %s", ErrNoLeader, addr, s)
		}
		if !cc.WaitForStateChange(ctx, s) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: reach %s", ErrNoLeader, addr)
		}
	}
}

func (c *peerClients) close() {
	c.mu.Lock()
	conns := c.conns
	c.conns, c.closed = nil, true
	c.mu.Unlock()
	for _, cc := range conns {
		cc.Close()
	}
}

// call runs one peer-service call on the member at addr. A call that
// fails before it is sent fails with ErrNoLeader; once sent, a broken
// connection fails it with ErrLeaderChanged (it may have been served).
func peerCall[Resp any](ctx context.Context, n *Node, addr string, call func(context.Context, peerpb.PeerClient) (Resp, error)) (Resp, error) {
	var zero Resp
	cl, err := n.peers.connected(ctx, addr)
	if err != nil {
		return zero, err
	}
	resp, err := call(ctx, cl)
	if err != nil {
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		return zero, errorOf(err, ErrLeaderChanged)
	}
	return resp, nil
}

func (n *Node) forwardLeaseRenew(ctx context.Context, addr string, id int64) (int64, error) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.LeaseRenewResponse, error) {
		return c.LeaseRenew(ctx, &peerpb.LeaseRenewRequest{Id: id})
	})
	return resp.GetTtl(), err
}

func (n *Node) forwardLeaseTTL(ctx context.Context, addr string, id int64, keys bool) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.LeaseTimeToLiveResponse, error) {
		return c.LeaseTimeToLive(ctx, &peerpb.LeaseTimeToLiveRequest{Id: id, Keys: keys})
	})
	if err != nil {
		return nil, err
	}
	out := &pb.LeaseTimeToLiveResponse{}
	if err := proto.Unmarshal(resp.GetResponse(), out); err != nil {
		return nil, fmt.Errorf("replication: lease TTL from leader: %w", err)
	}
	return out, nil
}

func (n *Node) forwardMemberOp(ctx context.Context, leader string, op peerpb.MemberOp, id, addr string) error {
	_, err := peerCall(ctx, n, leader, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.MemberChangeResponse, error) {
		return c.MemberChange(ctx, &peerpb.MemberChangeRequest{Op: op, Id: id, Address: addr})
	})
	return err
}

// memberApplied asks the member at addr for its applied index.
func (n *Node) memberApplied(ctx context.Context, addr string) (uint64, error) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.AppliedResponse, error) {
		return c.Applied(ctx, &peerpb.AppliedRequest{})
	})
	return resp.GetIndex(), err
}

// askMemberState asks the member at addr whether id is a member.
func (n *Node) askMemberState(ctx context.Context, addr, id string) (peerpb.MemberStatus, error) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.MemberStateResponse, error) {
		return c.MemberState(ctx, &peerpb.MemberStateRequest{Id: id})
	})
	return resp.GetStatus(), err
}
