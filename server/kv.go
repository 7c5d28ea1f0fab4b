package server

import (
	"bytes"
	"context"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// kvServer is etcd's KV service. Requests pass etcd's gRPC-layer checks
// (the mvcc Validate functions) first. Reads are served from the local
// store, after a linearizable read barrier unless serializable; writes are
// proposed to the cluster through any member.
type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (_ *pb.RangeResponse, err error) {
	if err := mvcc.ValidateRange(r); err != nil {
		return nil, togRPCError(err)
	}
	var resp *pb.RangeResponse
	trace := newTrace(ctx, "range", stringField("range_begin", r.Key), stringField("range_end", r.RangeEnd))
	tr := &trace
	ctx = tr
	defer func() {
		k.s.warnSlowRead(ctx, tr.start, r, "read-only range ", resp, err)
		if resp != nil {
			tr.field(intField("response_count", int64(len(resp.Kvs))))
			tr.field(intField("response_revision", resp.Header.GetRevision()))
		}
		tr.logIfLong(ctx, k.s.cfg.Logger, traceThreshold)
	}()
	err = k.s.checkRead(ctx, !r.GetSerializable(), func(as *auth.Store, ai *auth.AuthInfo) error {
		return as.IsRangePermitted(ai, r.Key, r.RangeEnd)
	}, func() error {
		err := k.s.view(ctx, false, func(st *mvcc.Store) error {
			var err error
			resp, err = st.Range(ctx, r)
			return err
		})
		tr.step(stepRange)
		if err != nil {
			return readError(ctx, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.s.metrics.mvccOps.ranges.Inc()
	k.s.fillHeader(resp.Header)
	return resp, nil
}

// RangeStream serves a range in chunks, as etcd 3.7's: all at one
// revision (the request's, or the current one when the stream starts),
// chunk sizes adapting towards --max-request-bytes, and the header, More
// and Count on the last chunk only.
func (k *kvServer) RangeStream(req *pb.RangeRequest, rs pb.KV_RangeStreamServer) error {
	if err := mvcc.ValidateRange(req); err != nil {
		return togRPCError(err)
	}
	if !(req.SortOrder == pb.RangeRequest_NONE || (req.SortTarget == pb.RangeRequest_KEY && req.SortOrder == pb.RangeRequest_ASCEND)) {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if req.MinModRevision != 0 || req.MaxModRevision != 0 || req.MinCreateRevision != 0 || req.MaxCreateRevision != 0 {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	ctx := rs.Context()
	if err := k.s.checkRead(ctx, !req.Serializable, func(as *auth.Store, ai *auth.AuthInfo) error {
		return as.IsRangePermitted(ai, req.Key, req.RangeEnd)
	}, func() error { return nil }); err != nil {
		return err
	}
	r := proto.CloneOf(req)
	// checkRead's read barrier serves the whole stream.
	rangeOnce := func(r *pb.RangeRequest) (*pb.RangeResponse, error) {
		var resp *pb.RangeResponse
		err := k.s.view(ctx, false, func(st *mvcc.Store) error {
			var err error
			resp, err = st.Range(ctx, r)
			return err
		})
		if err != nil {
			return nil, readError(ctx, err)
		}
		return resp, nil
	}
	send := func(out *pb.RangeResponse) error {
		if out.Header != nil {
			k.s.fillHeader(out.Header)
		}
		return rs.Send(&pb.RangeStreamResponse{RangeResponse: out})
	}
	if r.CountOnly {
		resp, err := rangeOnce(r)
		if err != nil {
			return err
		}
		return send(&pb.RangeResponse{Header: &pb.ResponseHeader{Revision: resp.Header.Revision}, Count: resp.Count})
	}
	total := r.Limit
	if total == 0 {
		total = math.MaxInt64
	}
	r.Limit = min(initialStreamChunkLimit, total)
	var count, headerRev int64
	for {
		resp, err := rangeOnce(r)
		if err != nil {
			return err
		}
		if headerRev == 0 {
			// Every chunk reads at the revision the stream started at.
			headerRev = resp.Header.Revision
			if r.Revision == 0 {
				r.Revision = headerRev
			}
		}
		count += int64(len(resp.Kvs))
		var next []byte
		if resp.More {
			next = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		done := !resp.More || count == total
		if done {
			out.Header = &pb.ResponseHeader{Revision: headerRev}
			out.More, out.Count = resp.More, count
			if resp.More {
				rest, err := rangeOnce(&pb.RangeRequest{Key: next, RangeEnd: r.RangeEnd, Revision: r.Revision, CountOnly: true})
				if err != nil {
					return err
				}
				out.Count += rest.Count
			}
		}
		if err := send(out); err != nil {
			return err
		}
		if done {
			return nil
		}
		r.Key = next
		r.Limit = min(nextChunkLimit(r.Limit, proto.Size(resp), int(k.s.cfg.MaxRequestBytes)), total-count)
	}
}

// initialStreamChunkLimit is the first chunk's key limit, etcd's.
const initialStreamChunkLimit = 10

// nextChunkLimit doubles or halves the chunk limit when the last chunk was
// under half or over twice the target size, as etcd does; never below 1.
func nextChunkLimit(last int64, size, target int) int64 {
	switch {
	case size < target/2:
		last *= 2
	case size > target*2:
		last /= 2
	}
	return max(last, 1)
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	req := &pb.InternalRaftRequest{Put: r}
	if err := k.s.quota.check(ctx, replication.QuotaCost(req)); err != nil {
		return nil, err
	}
	if err := mvcc.ValidatePut(r); err != nil {
		return nil, togRPCError(err)
	}
	tr := newTrace(ctx, "put", stringField("key", r.Key), intField("req_size", int64(proto.Size(r))))
	out, err := proposeAs[*pb.PutResponse](ctx, k.s, req)
	if err != nil {
		return nil, err
	}
	tr.step(stepRaft)
	tr.field(intField("response_revision", out.Header.GetRevision()))
	tr.logIfLong(ctx, k.s.cfg.Logger, traceThreshold)
	k.s.metrics.mvccOps.puts.Inc()
	k.s.fillHeader(out.Header)
	return out, nil
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := mvcc.ValidateDeleteRange(r); err != nil {
		return nil, togRPCError(err)
	}
	tr := newTrace(ctx, "delete_range", stringField("key", r.Key), stringField("range_end", r.RangeEnd))
	out, err := proposeAs[*pb.DeleteRangeResponse](ctx, k.s, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	tr.step(stepRaft)
	tr.logIfLong(ctx, k.s.cfg.Logger, traceThreshold)
	k.s.metrics.mvccOps.deletes.Inc()
	k.s.fillHeader(out.Header)
	return out, nil
}

// Txn serves a read-only txn like a read (a linearizable barrier unless
// every range in it is serializable, then the local store), as etcd does;
// other txns are proposed.
func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	req := &pb.InternalRaftRequest{Txn: r}
	if err := k.s.quota.check(ctx, replication.QuotaCost(req)); err != nil {
		return nil, err
	}
	if err := mvcc.ValidateTxn(r, int(k.s.cfg.MaxTxnOps)); err != nil {
		return nil, togRPCError(err)
	}
	if mvcc.IsTxnReadOnly(r) {
		var resp *pb.TxnResponse
		var err error
		trace := newTrace(ctx, "transaction", boolField("read_only", true))
		tr := &trace
		ctx := context.Context(tr)
		defer func() {
			k.s.warnSlowRead(ctx, tr.start, pb.NewLoggableTxnRequest(r), "read-only txn ", resp, err)
			tr.logIfLong(ctx, k.s.cfg.Logger, traceThreshold)
		}()
		err = k.s.checkRead(ctx, !isTxnSerializable(r), func(as *auth.Store, ai *auth.AuthInfo) error {
			// A read-only txn puts nothing, so attaches no lease.
			return replication.CheckTxn(as, ai, func(int64) []string { return nil }, r)
		}, func() error {
			err := k.s.view(ctx, false, func(st *mvcc.Store) error {
				var err error
				resp, err = st.ReadTxn(ctx, r)
				return err
			})
			tr.step(stepTxnRead)
			if err != nil {
				return readError(ctx, err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		k.s.metrics.mvccOps.countTxn(r, resp)
		k.s.fillHeader(resp.Header)
		return resp, nil
	}
	tr := newTrace(ctx, "transaction", boolField("read_only", false))
	out, err := proposeAs[*pb.TxnResponse](ctx, k.s, req)
	if err != nil {
		return nil, err
	}
	tr.step(stepRaft)
	tr.field(intField("response_revision", out.Header.GetRevision()))
	tr.logIfLong(ctx, k.s.cfg.Logger, traceThreshold)
	k.s.metrics.mvccOps.countTxn(r, out)
	k.s.fillHeader(out.Header)
	return out, nil
}

// Compact proposes a compaction; a physical one answers once it is on
// disk.
func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := k.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	tr := newTrace(ctx, "compact")
	resp, err := k.s.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	tr.step(stepRaft)
	defer tr.logIfLong(ctx, k.s.cfg.Logger, traceThreshold)
	out, ok := resp.(*pb.CompactionResponse)
	if !ok || out == nil {
		out = &pb.CompactionResponse{}
	}
	if out.Header == nil {
		out.Header = &pb.ResponseHeader{}
	}
	k.s.fillHeader(out.Header)
	tr.field(intField("response_revision", out.Header.Revision))
	return out, nil
}

// isTxnSerializable is etcd's: every op of both branches is a
// serializable range.
func isTxnSerializable(r *pb.TxnRequest) bool {
	for _, u := range r.GetSuccess() {
		if rr := u.GetRequestRange(); rr == nil || !rr.GetSerializable() {
			return false
		}
	}
	for _, u := range r.GetFailure() {
		if rr := u.GetRequestRange(); rr == nil || !rr.GetSerializable() {
			return false
		}
	}
	return true
}

// propose replicates req and returns its response, or the gRPC error to
// answer. It bounds the wait with etcd's request timeout and refuses
// requests larger than --max-request-bytes as etcd does.
func (s *Server) propose(ctx context.Context, req *pb.InternalRaftRequest) (proto.Message, error) {
	if err := s.withAuthHeader(ctx, req); err != nil {
		return nil, err
	}
	if proto.Size(req)+requestHeaderBytes > int(s.cfg.MaxRequestBytes) {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	s.metrics.proposalsPending.Inc()
	// etcd's request timeout, without a context of its own for it (see
	// ProposeWithin).
	res, err := s.node.ProposeWithin(ctx, req, s.cfg.reqTimeout())
	s.metrics.proposalsPending.Dec()
	if err != nil {
		s.metrics.proposalsFailed.Inc()
		return nil, proposeError(err)
	}
	if res.Err != nil {
		return nil, togRPCError(res.Err)
	}
	return res.Resp, nil
}

// requestHeaderBytes is what the RequestHeader etcd adds to every proposal
// before it checks --max-request-bytes takes at most (field 100, holding a
// request ID of up to 10 varint bytes), so that the limit falls where
// etcd's does.
const requestHeaderBytes = 14

// proposeAs proposes req and returns its response as the message type the
// RPC answers with.
func proposeAs[T proto.Message](ctx context.Context, s *Server, req *pb.InternalRaftRequest) (T, error) {
	var zero T
	resp, err := s.propose(ctx, req)
	if err != nil {
		return zero, err
	}
	out, ok := resp.(T)
	if !ok {
		return zero, unexpectedResponse(resp)
	}
	return out, nil
}

func unexpectedResponse(m proto.Message) error {
	return status.Errorf(codes.Internal, "etcdserver: unexpected response type %T", m)
}
