package replication

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/mvcc"
)

// Forwarding lets any member take writes and linearizable reads: a follower
// sends proposals, and read-index requests, to the leader over the peer port
// and relays the answer.
//
// Each forwarding connection carries one request at a time:
//
//	request:  uvarint length | kind byte | int64 deadline (unix ns, 0 none) | body
//	response: uvarint length | status byte | body
//
// Kinds: fwdPropose (body: an InternalRaftRequest), fwdReadIndex (no body).
// Statuses: stOK (body: the response message, or for a read index its
// uvarint index), stRequestErr (body: the request's own error text; it had no
// effect), stNodeErr (body: the node error's text).
const (
	fwdPropose    byte = 1
	fwdReadIndex  byte = 2
	fwdMember     byte = 3 // a membership operation, for the leader
	fwdApplied    byte = 4 // the receiver's applied index
	fwdLeaseRenew byte = 5 // a keep-alive, for the leader
	fwdLeaseTTL   byte = 6 // a lease time-to-live question, for the leader
	fwdIsMember   byte = 7 // is the body's ID a member? (memberState)

	stOK         byte = 0
	stRequestErr byte = 1
	stNodeErr    byte = 2

	maxFrame = 64 << 20
)

// wireErrors are the errors that keep their identity across a forward: the
// receiver maps the text back to the sentinel so errors.Is works.
var wireErrors = []error{
	mvcc.ErrCompacted, mvcc.ErrFutureRev, mvcc.ErrKeyNotFound, mvcc.ErrLeaseNotFound,
	mvcc.ErrEmptyKey, mvcc.ErrValueProvided, mvcc.ErrLeaseProvided, mvcc.ErrTooManyOps,
	mvcc.ErrDuplicateKey, mvcc.ErrInvalidSortOption,
	mvcc.ErrLeaseExists, mvcc.ErrLeaseTTLTooLarge, mvcc.ErrNotPrimary,
	ErrNotLeader, ErrNoLeader, ErrLeaderChanged, ErrNotReady, ErrStopped, ErrUnsupportedRequest,
	ErrMemberExists, ErrMemberNotFound, ErrNotLearner, ErrLearnerNotReady, ErrRemoved, ErrNoSpace,
	context.DeadlineExceeded, context.Canceled,
}

func errorFromWire(text string) error {
	for _, e := range wireErrors {
		if e.Error() == text {
			return e
		}
	}
	// Wrapped sentinels keep their identity by prefix or suffix match.
	for _, e := range wireErrors {
		if len(text) > len(e.Error()) && (text[:len(e.Error())] == e.Error() || text[len(text)-len(e.Error()):] == e.Error()) {
			return fmt.Errorf("%s: %w", text, e)
		}
	}
	return errors.New(text)
}

func writeFrame(w *bufio.Writer, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var hdr [binary.MaxVarintLen64]byte
	if _, err := w.Write(hdr[:binary.PutUvarint(hdr[:], uint64(n))]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return w.Flush()
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxFrame {
		return nil, fmt.Errorf("replication: forward frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// serveForward answers forwarded requests on one connection.
func (n *Node) serveForward(c net.Conn) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		req, err := readFrame(r)
		if err != nil {
			return
		}
		status, body := n.handleForward(req)
		if err := writeFrame(w, []byte{status}, body); err != nil {
			return
		}
	}
}

func (n *Node) handleForward(req []byte) (byte, []byte) {
	if len(req) < 9 {
		return stNodeErr, []byte("replication: short forward request")
	}
	kind, deadline, body := req[0], int64(binary.BigEndian.Uint64(req[1:9])), req[9:]
	ctx := context.Background()
	if deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, deadline))
		defer cancel()
	}
	switch kind {
	case fwdPropose:
		if !n.IsLeader() {
			return stNodeErr, []byte(ErrNotLeader.Error())
		}
		r := &pb.InternalRaftRequest{}
		if err := proto.Unmarshal(body, r); err != nil {
			return stNodeErr, []byte("replication: bad forwarded request: " + err.Error())
		}
		res, err := n.proposeLocal(ctx, r)
		if err != nil {
			return stNodeErr, []byte(err.Error())
		}
		if res.Err != nil {
			return stRequestErr, []byte(res.Err.Error())
		}
		if res.Resp == nil {
			return stOK, nil
		}
		out, err := proto.Marshal(res.Resp)
		if err != nil {
			return stNodeErr, []byte(err.Error())
		}
		return stOK, out
	case fwdReadIndex:
		ri, err := n.leaderReadIndex(ctx)
		if err != nil {
			return stNodeErr, []byte(err.Error())
		}
		return stOK, binary.AppendUvarint(nil, ri)
	case fwdMember:
		if !n.IsLeader() {
			return stNodeErr, []byte(ErrNotLeader.Error())
		}
		op, id, addr, err := decodeMemberOp(body)
		if err == nil {
			err = n.memberOpLocal(ctx, op, id, addr)
		}
		if err != nil {
			return stNodeErr, []byte(err.Error())
		}
		return stOK, nil
	case fwdLeaseRenew, fwdLeaseTTL:
		return n.handleLeaseForward(ctx, kind, body)
	case fwdApplied:
		return stOK, binary.AppendUvarint(nil, n.AppliedIndex())
	case fwdIsMember:
		return stOK, []byte{n.memberState(string(body))}
	}
	return stNodeErr, []byte(fmt.Sprintf("replication: unknown forward kind %d", kind))
}

// forwarder keeps idle forwarding connections per leader address.
type forwarder struct {
	m    *peerMux
	mu   sync.Mutex
	idle map[string][]*fwdConn
}

type fwdConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

const maxIdleForward = 16

func (f *forwarder) get(addr string, timeout time.Duration) (*fwdConn, error) {
	f.mu.Lock()
	if l := f.idle[addr]; len(l) > 0 {
		c := l[len(l)-1]
		f.idle[addr] = l[:len(l)-1]
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	c, err := f.m.dialProto(addr, muxForward, timeout)
	if err != nil {
		return nil, err
	}
	return &fwdConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}, nil
}

func (f *forwarder) put(addr string, c *fwdConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle == nil {
		f.idle = map[string][]*fwdConn{}
	}
	if len(f.idle[addr]) >= maxIdleForward {
		c.c.Close()
		return
	}
	f.idle[addr] = append(f.idle[addr], c)
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.idle {
		for _, c := range l {
			c.c.Close()
		}
	}
	f.idle = nil
}

// call sends one request to addr and returns the status and body.
func (f *forwarder) call(ctx context.Context, addr string, kind byte, body []byte) (byte, []byte, error) {
	timeout := 5 * time.Second
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
		timeout = min(timeout, time.Until(d))
	}
	c, err := f.get(addr, timeout)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: reach leader %s: %w", ErrNoLeader, addr, err)
	}
	// The connection follows ctx: a cancelled call closes it.
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Now()) })
	hdr := make([]byte, 9)
	hdr[0] = kind
	binary.BigEndian.PutUint64(hdr[1:], uint64(deadline))
	err = writeFrame(c.w, hdr, body)
	var resp []byte
	if err == nil {
		resp, err = readFrame(c.r)
	}
	if !stop() || err != nil {
		c.c.Close()
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, fmt.Errorf("%w: forward to %s: %w", ErrLeaderChanged, addr, err)
	}
	f.put(addr, c)
	if len(resp) == 0 {
		return 0, nil, fmt.Errorf("replication: empty forward response from %s", addr)
	}
	return resp[0], resp[1:], nil
}

// newResponse returns an empty response message for a request's kind.
func newResponse(r *pb.InternalRaftRequest) proto.Message {
	switch {
	case r.Put != nil:
		return &pb.PutResponse{}
	case r.DeleteRange != nil:
		return &pb.DeleteRangeResponse{}
	case r.Txn != nil:
		return &pb.TxnResponse{}
	case r.Compaction != nil:
		return &pb.CompactionResponse{}
	case r.Range != nil:
		return &pb.RangeResponse{}
	case r.LeaseGrant != nil:
		return &pb.LeaseGrantResponse{}
	case r.LeaseRevoke != nil:
		return &pb.LeaseRevokeResponse{}
	case r.LeaseCheckpoint != nil:
		return &pb.LeaseCheckpointResponse{}
	case r.Alarm != nil:
		return &pb.AlarmResponse{}
	}
	return nil
}

func (n *Node) forwardPropose(ctx context.Context, addr string, req *pb.InternalRaftRequest) (Result, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	status, resp, err := n.fwd.call(ctx, addr, fwdPropose, body)
	if err != nil {
		return Result{}, err
	}
	switch status {
	case stOK:
		if req.ClusterMemberAttrSet != nil {
			return Result{}, nil // answered with no message
		}
		m := newResponse(req)
		if m == nil {
			return Result{}, ErrUnsupportedRequest
		}
		if err := proto.Unmarshal(resp, m); err != nil {
			return Result{}, fmt.Errorf("replication: forwarded response: %w", err)
		}
		return Result{Resp: m}, nil
	case stRequestErr:
		return Result{Err: errorFromWire(string(resp))}, nil
	default:
		return Result{}, errorFromWire(string(resp))
	}
}

func (n *Node) forwardReadIndex(ctx context.Context, addr string) (uint64, error) {
	status, resp, err := n.fwd.call(ctx, addr, fwdReadIndex, nil)
	if err != nil {
		return 0, err
	}
	if status != stOK {
		return 0, errorFromWire(string(resp))
	}
	ri, w := binary.Uvarint(resp)
	if w <= 0 {
		return 0, errors.New("replication: bad read index from leader")
	}
	return ri, nil
}
