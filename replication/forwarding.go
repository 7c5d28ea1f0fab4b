package replication

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/replication/peerpb"
)

// A follower forwards proposals and read-index requests to the leader in
// batches, as the leader packs proposals into raft entries: the requests
// waiting at a moment go out in one call, while earlier calls are in
// flight. Each caller still gets its own answer, and stops waiting at its
// own deadline or cancellation.

// maxForwardBytes bounds the requests of one forwarded proposal batch.
const maxForwardBytes = 8 << 20

// maxForwardInflight is how many forwarded batches of each kind may be in
// flight at once.
const maxForwardInflight = 8

// forwardItem is one caller waiting for a forwarded request.
type forwardItem struct {
	ctx  context.Context
	addr string
	// body is the marshalled InternalRaftRequest of a proposal; nil for a
	// read index.
	body []byte
	done chan forwardResult // buffered: the sender never blocks
}

type forwardResult struct {
	// resp is the marshalled response of a proposal; index a read index.
	resp     []byte
	index    uint64
	reqErr   error // the request's own error: it had no effect
	err      error
	answered bool // the leader answered; for a proposal with no message
}

// forwarder batches the forwarded requests of one kind. Its goroutines
// belong to the node: they stop with it.
type forwarder struct {
	n *Node
	// calls and items count the calls sent and the requests they carried.
	calls, items atomic.Uint64
	c            chan *forwardItem
	slots        chan struct{}
	send         func(ctx context.Context, addr string, items []*forwardItem)
}

func newForwarder(n *Node, send func(ctx context.Context, addr string, items []*forwardItem)) *forwarder {
	return &forwarder{n: n, c: make(chan *forwardItem, 4*n.cfg.MaxBatch), slots: make(chan struct{}, maxForwardInflight), send: send}
}

// do queues an item and waits for its answer.
func (f *forwarder) do(it *forwardItem) (forwardResult, error) {
	select {
	case f.c <- it:
	case <-it.ctx.Done():
		return forwardResult{}, it.ctx.Err()
	case <-f.n.stopc:
		return forwardResult{}, ErrStopped
	}
	select {
	case r := <-it.done:
		return r, r.err
	case <-it.ctx.Done():
		return forwardResult{}, it.ctx.Err()
	case <-f.n.stopc:
		return forwardResult{}, ErrStopped
	}
}

// loop gathers the items waiting when a slot is free into batches, one per
// leader address, and sends each from a goroutine of the node's.
func (f *forwarder) loop() {
	defer f.n.wg.Done()
	for {
		select {
		case f.slots <- struct{}{}:
		case <-f.n.stopc:
			return
		}
		var batch []*forwardItem
		select {
		case it := <-f.c:
			batch = append(batch, it)
		case <-f.n.stopc:
			<-f.slots
			return
		}
		size := len(batch[0].body)
	drain:
		for len(batch) < f.n.cfg.MaxBatch && size < maxForwardBytes {
			select {
			case it := <-f.c:
				batch = append(batch, it)
				size += len(it.body)
			default:
				break drain
			}
		}
		byAddr := make(map[string][]*forwardItem)
		for _, it := range batch {
			if it.ctx.Err() != nil {
				it.done <- forwardResult{err: it.ctx.Err()}
				continue
			}
			byAddr[it.addr] = append(byAddr[it.addr], it)
		}
		var wg sync.WaitGroup
		for addr, items := range byAddr {
			f.calls.Add(1)
			f.items.Add(uint64(len(items)))
			wg.Go(func() {
				ctx, cancel := f.n.callContext(items)
				defer cancel()
				f.send(ctx, addr, items)
			})
		}
		f.n.wg.Add(1)
		go func() {
			defer f.n.wg.Done()
			wg.Wait()
			<-f.slots
		}()
	}
}

// callContext is the context of a call made for items: it ends at the
// latest of their deadlines (none if one has none), or when the node stops.
func (n *Node) callContext(items []*forwardItem) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, it := range items {
		d, ok := it.ctx.Deadline()
		if !ok {
			return context.WithCancel(n.ctx)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(n.ctx, latest)
}

// sendProposals forwards a batch of proposals to the leader at addr.
func (n *Node) sendProposals(ctx context.Context, addr string, items []*forwardItem) {
	req := &peerpb.ProposeRequest{Proposals: make([]*peerpb.Proposal, len(items))}
	for i, it := range items {
		p := &peerpb.Proposal{Request: it.body}
		if d, ok := it.ctx.Deadline(); ok {
			p.Deadline = d.UnixNano()
		}
		req.Proposals[i] = p
	}
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.ProposeResponse, error) {
		return c.Propose(ctx, req)
	})
	if err == nil && len(resp.GetResults()) != len(items) {
		err = fmt.Errorf("%w: leader %s answered %d of %d proposals", ErrLeaderChanged, addr, len(resp.GetResults()), len(items))
	}
	for i, it := range items {
		if err != nil {
			it.done <- forwardResult{err: err}
			continue
		}
		r := resp.Results[i]
		switch {
		case r.GetError() != nil:
			it.done <- forwardResult{err: fromWire(r.GetError())}
		case r.GetRequestError() != nil:
			it.done <- forwardResult{reqErr: fromWire(r.GetRequestError()), answered: true}
		default:
			it.done <- forwardResult{resp: r.GetResponse(), answered: true}
		}
	}
}

// sendReadIndex asks the leader at addr for one read index, which answers
// every item: each was waiting before the call went out.
func (n *Node) sendReadIndex(ctx context.Context, addr string, items []*forwardItem) {
	resp, err := peerCall(ctx, n, addr, func(ctx context.Context, c peerpb.PeerClient) (*peerpb.ReadIndexResponse, error) {
		return c.ReadIndex(ctx, &peerpb.ReadIndexRequest{})
	})
	for _, it := range items {
		it.done <- forwardResult{index: resp.GetIndex(), err: err}
	}
}

// forwardPropose proposes req at the leader at addr.
func (n *Node) forwardPropose(ctx context.Context, addr string, req *pb.InternalRaftRequest) (Result, error) {
	k, err := kindOf(req)
	if err != nil {
		return Result{Err: err}, nil
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	r, err := n.fwdPropose.do(&forwardItem{ctx: ctx, addr: addr, body: body, done: make(chan forwardResult, 1)})
	if err != nil {
		return Result{}, err
	}
	if r.reqErr != nil {
		return Result{Err: r.reqErr}, nil
	}
	if k.newResponse == nil {
		return Result{}, nil // a kind answered without a message
	}
	m := k.newResponse()
	if err := proto.Unmarshal(r.resp, m); err != nil {
		return Result{}, fmt.Errorf("replication: forwarded %s response: %w", k.name, err)
	}
	return Result{Resp: m}, nil
}

// forwardReadIndex asks the leader at addr for its read index.
func (n *Node) forwardReadIndex(ctx context.Context, addr string) (uint64, error) {
	r, err := n.fwdRead.do(&forwardItem{ctx: ctx, addr: addr, done: make(chan forwardResult, 1)})
	return r.index, err
}
