package replication

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/mvcc"
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

// Forward serves a follower's stream: every request is answered on its own
// goroutine (owned by this call: it returns once all are answered), in
// whatever order they finish.
func (s *peerService) Forward(stream peerpb.Peer_ForwardServer) error {
	ctx := stream.Context()
	var wg sync.WaitGroup
	defer wg.Wait()
	var sendMu sync.Mutex
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the follower closed the stream, or went away
		}
		if m := req.GetMember(); m != "" {
			s.n.verifier.echo(raft.ServerID(m), req.GetTerm(), req.GetSeen())
		}
		wg.Go(func() {
			resp := s.forward(ctx, req)
			sendMu.Lock()
			defer sendMu.Unlock()
			// Stamped last: the answer leaves after the round named began.
			resp.Round = s.n.verifier.stamp()
			stream.Send(resp) // fails only once the stream is gone
		})
	}
}

func (s *peerService) forward(ctx context.Context, req *peerpb.ForwardRequest) *peerpb.ForwardResponse {
	resp := &peerpb.ForwardResponse{Id: req.GetId()}
	var err error
	switch c := req.GetCall().(type) {
	case *peerpb.ForwardRequest_Propose:
		var r *peerpb.ProposeResponse
		if r, err = s.propose(ctx, c.Propose); err == nil {
			resp.Result = &peerpb.ForwardResponse_Propose{Propose: r}
		}
	case *peerpb.ForwardRequest_ReadIndex:
		var ri, term uint64
		if ri, term, err = s.n.followerReadIndex(ctx, req.GetMember()); err == nil {
			resp.Result = &peerpb.ForwardResponse_ReadIndex{ReadIndex: &peerpb.ReadIndexResponse{Index: ri, Term: term}}
		}
	default:
		// A call of a newer member's.
		err = fmt.Errorf("%w: forward call %T", ErrUnsupportedRequest, c)
	}
	if err != nil {
		resp.Result = &peerpb.ForwardResponse_Error{Error: toWire(err)}
	}
	return resp
}

// propose proposes every request of the batch at once (the proposer packs
// them into as few raft entries as it can) and answers each on its own,
// from this goroutine: the answers come in the order the requests were
// proposed, and the batch's response waits for the last one anyway. A
// request past its deadline is not proposed; the others are proposed
// until the latest deadline among them.
func (s *peerService) propose(ctx context.Context, req *peerpb.ProposeRequest) (*peerpb.ProposeResponse, error) {
	if !s.n.IsLeader() {
		return nil, ErrNotLeader
	}
	ps := req.GetProposals()
	out := &peerpb.ProposeResponse{Results: make([]*peerpb.ProposeResult, len(ps))}
	var latest int64
	for _, p := range ps {
		d := p.GetDeadline()
		if d == 0 {
			latest = 0
			break
		}
		latest = max(latest, d)
	}
	// The latest deadline bounds the waits on the node's deadline clock
	// (within deadlineTick of it), not with a context: a timer per call
	// was 3% of a 3-member leader's CPU under etcd's benchmark tool's put
	// with the clients spread over the members (one call per forwarded
	// put). Each proposer stops waiting at its own deadline anyway.
	var dw deadlineWait
	if latest != 0 {
		dw = deadlineWait{deadline: time.Unix(0, latest), clock: &s.n.deadlines}
	}
	props := make([]*proposal, len(ps))
	for i, p := range ps {
		r, refused := decodeForwarded(p)
		if refused != nil {
			out.Results[i] = refused
			continue
		}
		if d := p.GetDeadline(); d != 0 && time.Now().UnixNano() >= d {
			out.Results[i] = forwardedResult(Result{}, context.DeadlineExceeded)
			continue
		}
		props[i] = newProposal(r)
		if err := s.n.submit(ctx, props[i], dw); err != nil {
			props[i] = nil
			out.Results[i] = forwardedResult(Result{}, err)
		}
	}
	for i, p := range props {
		if p == nil {
			continue
		}
		out.Results[i] = forwardedResult(s.n.result(ctx, p, dw))
	}
	return out, nil
}

// decodeForwarded decodes a forwarded request, or returns the answer that
// refuses it: a kind this member does not know (a newer member's, during a
// rolling upgrade) is refused here rather than proposed, as is one only
// the leader proposes.
func decodeForwarded(p *peerpb.Proposal) (*pb.InternalRaftRequest, *peerpb.ProposeResult) {
	r := &pb.InternalRaftRequest{}
	if err := proto.Unmarshal(p.GetRequest(), r); err != nil {
		return nil, &peerpb.ProposeResult{Error: toWire(fmt.Errorf("%w: forwarded request: %w", ErrCorruptEntry, err))}
	}
	k, err := kindOf(r)
	if err == nil && k.leaderOnly {
		err = fmt.Errorf("%w: a %s is proposed by the leader only", ErrUnsupportedRequest, k.name)
	}
	if err != nil {
		return nil, &peerpb.ProposeResult{RequestError: toWire(err)}
	}
	return r, nil
}

// forwardedResult is the wire answer of a forwarded proposal.
func forwardedResult(res Result, err error) *peerpb.ProposeResult {
	switch {
	case err != nil:
		return &peerpb.ProposeResult{Error: toWire(err)}
	case res.Err != nil:
		return &peerpb.ProposeResult{RequestError: toWire(res.Err), Index: res.Index}
	case res.Resp == nil:
		return &peerpb.ProposeResult{Index: res.Index}
	}
	b, err := proto.Marshal(res.Resp)
	if err != nil {
		return &peerpb.ProposeResult{Error: toWire(err)}
	}
	return &peerpb.ProposeResult{Response: b, Index: res.Index}
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

func (s *peerService) HashKV(_ context.Context, req *peerpb.HashKVRequest) (*peerpb.HashKVResponse, error) {
	var (
		h   mvcc.KeyValueHash
		rev int64
	)
	err := s.n.fsm.view(func(st *mvcc.Store) error {
		var err error
		h, rev, err = st.HashByRev(req.GetRevision())
		return err
	})
	if err != nil {
		return nil, statusOf(err)
	}
	return &peerpb.HashKVResponse{Hash: h.Hash, CompactRevision: h.CompactRevision, HashRevision: h.Revision, Revision: rev}, nil
}

func (s *peerService) MemberState(_ context.Context, req *peerpb.MemberStateRequest) (*peerpb.MemberStateResponse, error) {
	return &peerpb.MemberStateResponse{Status: s.n.memberState(req.GetId())}, nil
}

// peerClients keeps one gRPC connection per peer address, and one Forward
// stream on it while it works.
type peerClients struct {
	m *peerMux
	// member is this node's raft server ID and term its current term,
	// sent with every forwarded call (peerpb.ForwardRequest).
	member  string
	term    func() uint64
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	streams map[string]*forwardStream
	closed  bool
	// ctx ends the streams; cancel is called by close, which then waits
	// for their receivers (wg).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
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
	c.conns, c.streams, c.closed = nil, nil, true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	for _, cc := range conns {
		cc.Close()
	}
}

// forwardStream is a Forward stream to one peer: calls are sent with an
// id, and its receiver hands each answer to the call waiting for it.
type forwardStream struct {
	stream peerpb.Peer_ForwardClient
	cancel context.CancelFunc

	sendMu sync.Mutex // the stream's Send is not safe for concurrent use

	// seen is the highest round stamp received on the stream
	// (peerpb.ForwardResponse.round); written by receive only.
	seen atomic.Uint64

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]func(*peerpb.ForwardResponse, error)
	err     error // why the stream broke; nil while it works
}

// forwardCall sends one call on the Forward stream to addr (opening the
// stream if needed) and waits for its answer. A call that cannot be sent
// fails with ErrNoLeader; once sent, a broken stream fails it with
// ErrLeaderChanged (it may have been served).
func (c *peerClients) forwardCall(ctx context.Context, addr string, req *peerpb.ForwardRequest) (*peerpb.ForwardResponse, error) {
	type answer struct {
		resp *peerpb.ForwardResponse
		err  error
	}
	ch := make(chan answer, 1)
	fs, id, err := c.forwardSend(ctx, addr, req, func(resp *peerpb.ForwardResponse, err error) { ch <- answer{resp, err} })
	if err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		return a.resp, a.err
	case <-ctx.Done():
		fs.mu.Lock()
		delete(fs.pending, id)
		fs.mu.Unlock()
		return nil, ctx.Err()
	}
}

// forwardSend sends one call on the Forward stream to addr (opening the
// stream if needed) and returns once it is sent; answer gets its answer
// (or error) later, from the stream's receiver: it must not block. A call
// that cannot be sent fails with ErrNoLeader, and answer is not called;
// once sent, a broken stream answers it with ErrLeaderChanged (it may have
// been served). ctx bounds the opening of the stream only.
func (c *peerClients) forwardSend(ctx context.Context, addr string, req *peerpb.ForwardRequest, answer func(*peerpb.ForwardResponse, error)) (*forwardStream, uint64, error) {
	fs, err := c.forwardStream(ctx, addr)
	if err != nil {
		return nil, 0, err
	}
	fs.mu.Lock()
	if fs.err != nil {
		fs.mu.Unlock()
		return nil, 0, fmt.Errorf("%w: %w", ErrNoLeader, fs.err)
	}
	fs.nextID++
	id := fs.nextID
	fs.pending[id] = answer
	fs.mu.Unlock()
	req.Id = id
	// The term is read after the stamp's answer arrived: see
	// peerpb.ForwardRequest.
	req.Member, req.Seen, req.Term = c.member, fs.seen.Load(), c.term()
	fs.sendMu.Lock()
	err = fs.stream.Send(req)
	fs.sendMu.Unlock()
	if err != nil {
		fs.fail(err)
	}
	return fs, id, nil
}

// forwardStream returns the working Forward stream to addr, opening one if
// there is none.
func (c *peerClients) forwardStream(ctx context.Context, addr string) (*forwardStream, error) {
	c.mu.Lock()
	fs := c.streams[addr]
	c.mu.Unlock()
	if fs != nil && fs.broken() == nil {
		return fs, nil
	}
	cl, err := c.connected(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrStopped
	}
	if fs := c.streams[addr]; fs != nil && fs.broken() == nil {
		return fs, nil // opened meanwhile
	}
	sctx, cancel := context.WithCancel(c.ctx)
	st, err := cl.Forward(sctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: open a stream to %s: %w", ErrNoLeader, addr, err)
	}
	fs = &forwardStream{stream: st, cancel: cancel, pending: make(map[uint64]func(*peerpb.ForwardResponse, error))}
	if c.streams == nil {
		c.streams = make(map[string]*forwardStream)
	}
	c.streams[addr] = fs
	c.wg.Go(fs.receive)
	return fs, nil
}

// receive hands answers to their calls until the stream breaks, then fails
// the calls still waiting.
func (fs *forwardStream) receive() {
	for {
		resp, err := fs.stream.Recv()
		if err != nil {
			fs.fail(err)
			return
		}
		if r := resp.GetRound(); r > fs.seen.Load() {
			fs.seen.Store(r)
		}
		fs.mu.Lock()
		answer := fs.pending[resp.GetId()]
		delete(fs.pending, resp.GetId())
		fs.mu.Unlock()
		if answer == nil {
			continue
		}
		if e := resp.GetError(); e != nil {
			answer(nil, fromWire(e))
		} else {
			answer(resp, nil)
		}
	}
}

// fail marks the stream broken with err and answers every waiting call
// with ErrLeaderChanged and the first error that broke the stream.
func (fs *forwardStream) fail(err error) {
	fs.mu.Lock()
	if fs.err == nil {
		fs.err = err
		fs.cancel()
	}
	broken := errorOf(fs.err, ErrLeaderChanged)
	pending := fs.pending
	fs.pending = make(map[uint64]func(*peerpb.ForwardResponse, error))
	fs.mu.Unlock()
	for _, answer := range pending {
		answer(nil, broken)
	}
}

func (fs *forwardStream) broken() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.err
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

// PeerHashKV asks the member at peer address addr for etcd's HashKV of
// its store at rev (0: its current revision), and its current revision.
// It fails with mvcc.ErrCompacted or mvcc.ErrFutureRev as HashByRev does.
func (n *Node) PeerHashKV(ctx context.Context, addr string, rev int64) (mvcc.KeyValueHash, int64, error) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.HashKVResponse, error) {
		return c.HashKV(ctx, &peerpb.HashKVRequest{Revision: rev})
	})
	if err != nil {
		return mvcc.KeyValueHash{}, 0, err
	}
	return mvcc.KeyValueHash{Hash: resp.GetHash(), CompactRevision: resp.GetCompactRevision(), Revision: resp.GetHashRevision()},
		resp.GetRevision(), nil
}

// askMemberState asks the member at addr whether id is a member.
func (n *Node) askMemberState(ctx context.Context, addr, id string) (peerpb.MemberStatus, error) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.MemberStateResponse, error) {
		return c.MemberState(ctx, &peerpb.MemberStateRequest{Id: id})
	})
	return resp.GetStatus(), err
}
