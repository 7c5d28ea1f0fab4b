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
// that arrive while every call slot is taken wait, and go out together in
// the next call. A request that finds a free slot and nobody waiting is
// sent at once, from its caller's goroutine (no hand-off: one client sees
// one call's latency). Each caller gets its own answer, and stops waiting
// at its own deadline or cancellation.
//
// A read-index call holds its slot until the leader answers: the reads
// that gather meanwhile share the next call's index. A proposal batch
// holds its slot only while it is being sent, as etcd's followers send
// their proposals on the raft stream: its callers are answered by this
// member's own apply (waiters.go), not by the leader's answer, so nothing
// is gained by holding proposals back until earlier ones are answered.

// maxForwardBytes bounds the requests of one forwarded proposal batch.
const maxForwardBytes = 8 << 20

// maxForwardSending is how many forwarded proposal batches may be being
// sent at once: the proposals that arrive meanwhile go out together in the
// next batch. A call slot before (held until the leader answered, 8 of
// them): a forwarded put then waited about 1 ms for a slot under etcd's
// benchmark tool, and its caller for the leader's answer besides its own
// apply.
const maxForwardSending = 1

// maxReadIndexInflight is how many read-index calls may be in flight at
// once. Fewer than for proposals: one call answers every read waiting when
// it goes out, at the cost of one verification round at the leader, so
// larger batches save the most CPU per read (etcd's followers keep one
// ReadIndex in flight). On a 3-member cluster on two cores, 2 calls served
// 7-10% more linearizable reads than 8 (16 alternating rounds, three runs);
// 1 was no better than 8.
const maxReadIndexInflight = 2

// forwardItem is one caller waiting for a forwarded request.
type forwardItem struct {
	ctx  context.Context
	addr string
	// body is the marshalled InternalRaftRequest of a proposal; nil for a
	// read index.
	body []byte
	// deadline, if not zero, is when a proposal's caller stops waiting:
	// the leader does not propose it after that.
	deadline time.Time
	done     chan forwardResult // buffered: the sender never blocks
}

type forwardResult struct {
	// resp is the marshalled response of a proposal; index a read index,
	// or the log index of the entry the leader applied a proposal in.
	resp   []byte
	index  uint64
	reqErr error // the request's own error: it had no effect
	err    error
}

// forwarder batches the forwarded requests of one kind. The goroutines it
// starts belong to the node (n.wg); none starts once close was called.
type forwarder struct {
	n    *Node
	send func(ctx context.Context, addr string, items []*forwardItem)
	// limit bounds the calls in flight.
	limit int

	mu       sync.Mutex
	pending  []*forwardItem
	inflight int
	closed   bool

	// calls and items count the calls sent and the requests they carried.
	calls, items atomic.Uint64
}

func newForwarder(n *Node, limit int, send func(ctx context.Context, addr string, items []*forwardItem)) *forwarder {
	return &forwarder{n: n, limit: limit, send: send}
}

// do sends it (alone, or with others waiting) and waits for its answer.
func (f *forwarder) do(it *forwardItem) (forwardResult, error) {
	if err := f.start(it); err != nil {
		return forwardResult{}, err
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

// start sends it (alone, or with others waiting); its answer arrives on
// it.done.
func (f *forwarder) start(it *forwardItem) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrStopped
	}
	f.pending = append(f.pending, it)
	batch := f.nextLocked()
	if batch != nil && !(len(batch) == 1 && batch[0] == it) {
		f.n.wg.Add(1)
		go f.sendLoop(batch)
	}
	f.mu.Unlock()
	if batch != nil && len(batch) == 1 && batch[0] == it {
		// Alone: send from here, bounded by the caller's own context.
		ctx, cancel := context.WithCancel(it.ctx)
		stop := context.AfterFunc(f.n.ctx, cancel)
		f.sendBatch(ctx, batch)
		stop()
		cancel()
		f.mu.Lock()
		f.inflight--
		if next := f.nextLocked(); next != nil {
			f.n.wg.Add(1)
			go f.sendLoop(next)
		}
		f.mu.Unlock()
	}
	return nil
}

// nextLocked takes the next batch of waiting items and a call slot for it,
// or returns nil if none waits or every slot is taken. The caller holds mu.
func (f *forwarder) nextLocked() []*forwardItem {
	if len(f.pending) == 0 || f.inflight >= f.limit || f.closed {
		return nil
	}
	n, size := 0, 0
	for n < len(f.pending) && n < f.n.cfg.MaxBatch && (n == 0 || size+len(f.pending[n].body) <= maxForwardBytes) {
		size += len(f.pending[n].body)
		n++
	}
	batch := f.pending[:n:n]
	f.pending = f.pending[n:]
	if len(f.pending) == 0 {
		f.pending = nil // let the array go
	}
	f.inflight++
	return batch
}

// sendLoop sends batch, then the batches that gathered meanwhile, until
// none waits.
func (f *forwarder) sendLoop(batch []*forwardItem) {
	defer f.n.wg.Done()
	for batch != nil {
		ctx, cancel := f.n.callContext(batch)
		f.sendBatch(ctx, batch)
		cancel()
		f.mu.Lock()
		f.inflight--
		batch = f.nextLocked()
		f.mu.Unlock()
	}
}

// sendBatch sends the items still wanted, one call per leader address.
func (f *forwarder) sendBatch(ctx context.Context, batch []*forwardItem) {
	// Usually every item is still wanted and has the same address: one
	// call with the batch as it is. (batch is not written: do may still
	// be reading it.)
	simple := true
	for _, it := range batch {
		if it.ctx.Err() != nil || it.addr != batch[0].addr {
			simple = false
			break
		}
	}
	if simple {
		f.sendTo(ctx, batch[0].addr, batch)
		return
	}
	byAddr := make(map[string][]*forwardItem, 2)
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			it.done <- forwardResult{err: err}
			continue
		}
		byAddr[it.addr] = append(byAddr[it.addr], it)
	}
	for addr, items := range byAddr {
		f.sendTo(ctx, addr, items)
	}
}

func (f *forwarder) sendTo(ctx context.Context, addr string, items []*forwardItem) {
	f.calls.Add(1)
	f.items.Add(uint64(len(items)))
	f.send(ctx, addr, items)
}

// close makes do refuse new items; the node's stopc answers the waiting
// ones.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
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

// sendProposals forwards a batch of proposals to the leader at addr. It
// returns once the batch is sent: the leader's answer reaches the items
// from the stream's receiver.
func (n *Node) sendProposals(ctx context.Context, addr string, items []*forwardItem) {
	req := &peerpb.ProposeRequest{Proposals: make([]*peerpb.Proposal, len(items))}
	for i, it := range items {
		p := &peerpb.Proposal{Request: it.body}
		if !it.deadline.IsZero() {
			p.Deadline = it.deadline.UnixNano()
		}
		req.Proposals[i] = p
	}
	answer := func(fr *peerpb.ForwardResponse, err error) { answerProposals(addr, items, fr, err) }
	if _, _, err := n.peers.forwardSend(ctx, addr, &peerpb.ForwardRequest{Call: &peerpb.ForwardRequest_Propose{Propose: req}}, answer); err != nil {
		answer(nil, err)
	}
}

// answerProposals hands each item of a forwarded batch its answer, fr or
// err.
func answerProposals(addr string, items []*forwardItem, fr *peerpb.ForwardResponse, err error) {
	resp := fr.GetPropose()
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
			it.done <- forwardResult{reqErr: fromWire(r.GetRequestError()), index: r.GetIndex()}
		default:
			it.done <- forwardResult{resp: r.GetResponse(), index: r.GetIndex()}
		}
	}
}

// sendReadIndex asks the leader at addr for one read index, which answers
// every item: each was waiting before the call went out. When the leader
// leaves the confirmation to this node (a term in the answer), this node's
// term, read now that the answer is here, confirms it: if it is newer, a
// newer leader may have been elected before the index was taken.
func (n *Node) sendReadIndex(ctx context.Context, addr string, items []*forwardItem) {
	fr, err := n.peers.forwardCall(ctx, addr, &peerpb.ForwardRequest{Call: &peerpb.ForwardRequest_ReadIndex{ReadIndex: &peerpb.ReadIndexRequest{}}})
	ri := fr.GetReadIndex()
	if err == nil {
		err = n.confirmReadIndex(ri)
	}
	for _, it := range items {
		it.done <- forwardResult{index: ri.GetIndex(), err: err}
	}
}

// confirmReadIndex confirms a read index the leader left to this member
// to confirm (peerpb.ReadIndexResponse.term): this member's term, read
// after the answer arrived, must not be newer than the leader's when it
// took the index. Call it only once the answer is here.
func (n *Node) confirmReadIndex(ri *peerpb.ReadIndexResponse) error {
	if ri.GetTerm() == 0 {
		return nil // confirmed by the leader
	}
	if cur := n.raft.CurrentTerm(); cur > ri.GetTerm() {
		return fmt.Errorf("%w: read index of term %d, this member is at term %d", ErrLeaderChanged, ri.GetTerm(), cur)
	}
	return nil
}

// forwardPropose proposes req at the leader at addr, waiting until ctx
// ends or dw's deadline passes (on the node's deadline clock: no timer).
func (n *Node) forwardPropose(ctx context.Context, addr string, req *pb.InternalRaftRequest, dw deadlineWait) (Result, error) {
	k, err := kindOf(req)
	if err != nil {
		return Result{Err: err}, nil
	}
	// The request carries an ID this member waits for in its own apply
	// (waiters.go). req is the caller's: its ID is restored.
	id, saved := n.requestIDs.draw(), req.ID
	req.ID = id
	body, err := proto.Marshal(req)
	req.ID = saved
	if err != nil {
		return Result{}, err
	}
	applied := n.fsm.waiters.register(id)
	defer n.fsm.waiters.cancel(id)
	deadline := dw.deadline
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	it := &forwardItem{ctx: ctx, addr: addr, body: body, deadline: deadline, done: make(chan forwardResult, 1)}
	if err := n.fwdPropose.start(it); err != nil {
		return Result{}, err
	}
	// The answer comes from this member's own apply, as etcd's members
	// answer: a serializable read here, or a watcher here, then sees the
	// write the client was told of. The leader's answer tells a proposal
	// that failed, or the entry it was applied in.
	var (
		r        forwardResult
		answered = it.done // until the leader's answer is here
		changed  <-chan struct{}
	)
	// This member's own result, once its physical compaction is on disk.
	own := func(res Result) (Result, error) {
		if err := n.awaitDone(ctx, res, dw); err != nil {
			return Result{}, err
		}
		return res, nil
	}
	for tick := dw.tick(); ; {
		if answered == nil {
			if r.err != nil {
				return Result{}, r.err
			}
			var reached bool
			if reached, changed = n.fsm.applied.reached(r.index); reached {
				break
			}
		}
		select {
		case res := <-applied:
			return own(res)
		case r = <-answered:
			answered = nil
		case <-changed:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-n.stopc:
			return Result{}, ErrStopped
		case <-tick:
			if dw.expired() {
				return Result{}, context.DeadlineExceeded
			}
			tick = dw.tick()
		}
	}
	select {
	case res := <-applied:
		return own(res)
	default:
	}
	// This member has applied the entry's index without applying the
	// entry: it restored a snapshot past it. The leader's answer is the
	// same result (the apply is deterministic).
	if r.reqErr != nil {
		return Result{Err: r.reqErr, Index: r.index}, nil
	}
	if k.newResponse == nil {
		return Result{Index: r.index}, nil // a kind answered without a message
	}
	m := k.newResponse()
	if err := proto.Unmarshal(r.resp, m); err != nil {
		return Result{}, fmt.Errorf("replication: forwarded %s response: %w", k.name, err)
	}
	return Result{Resp: m, Index: r.index}, nil
}

// forwardReadIndex asks the leader at addr for its read index.
func (n *Node) forwardReadIndex(ctx context.Context, addr string) (uint64, error) {
	r, err := n.fwdRead.do(&forwardItem{ctx: ctx, addr: addr, done: make(chan forwardResult, 1)})
	return r.index, err
}
