package server

import (
	"context"
	"errors"
	"io"
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// leaseServer is etcd's Lease service. Grants and revokes are proposed;
// keep-alives and time-to-live questions go to the leader, whose store
// keeps the leases' clocks (followers forward them).
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

// LeaseGrant proposes the grant; an ID of 0 lets the store pick one. A TTL
// below the minimum is raised to it, as etcd's lessor does (etcdctl lease
// grant 1 answers TTL(2s) with the default timers). The TTL is raised
// before proposing, so every member applies the same one.
func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := l.s.requireUser(ctx); err != nil {
		return nil, err
	}
	if err := l.s.quota.check(ctx, replication.QuotaCost(&pb.InternalRaftRequest{LeaseGrant: r})); err != nil {
		return nil, err
	}
	if min := l.s.cfg.minLeaseTTL(); r.TTL < min {
		r = &pb.LeaseGrantRequest{TTL: min, ID: r.ID}
	}
	out, err := proposeAs[*pb.LeaseGrantResponse](ctx, l.s, &pb.InternalRaftRequest{LeaseGrant: r})
	if err != nil {
		return nil, err
	}
	if out.Header == nil {
		out.Header = &pb.ResponseHeader{}
	}
	l.s.fillHeader(out.Header)
	return out, nil
}

// LeaseRevoke proposes the revoke, which deletes the lease's keys.
func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := l.s.requireUser(ctx); err != nil {
		return nil, err
	}
	out, err := proposeAs[*pb.LeaseRevokeResponse](ctx, l.s, &pb.InternalRaftRequest{LeaseRevoke: r})
	if err != nil {
		return nil, err
	}
	if out.Header == nil {
		out.Header = &pb.ResponseHeader{}
	}
	l.s.fillHeader(out.Header)
	return out, nil
}

// LeaseTimeToLive answers as etcd does: an unknown lease gets a response
// with TTL -1, not an error.
func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := l.s.requireUser(ctx); err != nil {
		return nil, err
	}
	if r.GetKeys() {
		// etcd checks read access to the lease's keys only when they are
		// asked for.
		if err := l.s.checkLeaseKeys(ctx, r.GetID(), (*auth.Store).IsRangePermitted); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, l.s.cfg.reqTimeout())
	defer cancel()
	resp, err := l.s.node.LeaseTimeToLive(cctx, r.GetID(), r.GetKeys())
	if errors.Is(err, mvcc.ErrLeaseNotFound) {
		resp, err = &pb.LeaseTimeToLiveResponse{ID: r.GetID(), TTL: -1}, nil
	}
	if err != nil {
		return nil, readError(ctx, err)
	}
	if resp.Header == nil {
		resp.Header = &pb.ResponseHeader{}
	}
	l.s.fillHeader(resp.Header)
	return resp, nil
}

// LeaseLeases lists the leases of the store, after a linearizable read
// barrier.
func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{}, Leases: []*pb.LeaseStatus{}}
	err := l.s.view(ctx, true, func(st *mvcc.Store) error {
		for _, id := range st.Leases() {
			resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: id})
		}
		return nil
	})
	if err != nil {
		return nil, readError(ctx, err)
	}
	l.s.fillHeader(resp.Header)
	return resp, nil
}

// LeaseKeepAlive renews a lease per request and answers its TTL; an
// unknown or expired lease answers TTL 0, as etcd's. The stream ends when
// the client closes its side or goes away.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	errc := make(chan error, 1)
	go func() { errc <- l.keepAlive(stream) }()
	select {
	case err := <-errc:
		return err
	case <-l.s.stopc:
		return rpctypes.ErrGRPCStopped
	case <-ctx.Done():
		return streamError(ctx, ctx.Err())
	}
}

func (l *leaseServer) keepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return streamError(ctx, err)
		}
		if err := l.s.checkLeaseKeys(ctx, req.GetID(), func(as *auth.Store, ai *auth.AuthInfo, key, _ []byte) error {
			return as.IsPutPermitted(ai, key)
		}); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, l.s.cfg.reqTimeout())
		ttl, err := l.s.node.LeaseRenew(cctx, req.GetID())
		cancel()
		if errors.Is(err, mvcc.ErrLeaseNotFound) {
			ttl, err = 0, nil
		}
		if err != nil {
			return streamError(ctx, readError(ctx, err))
		}
		resp := &pb.LeaseKeepAliveResponse{Header: &pb.ResponseHeader{}, ID: req.GetID(), TTL: ttl}
		l.s.fillHeader(resp.Header)
		if err := stream.Send(resp); err != nil {
			return streamError(ctx, err)
		}
	}
}

// checkLeaseKeys is etcd's check of a lease renewal (write access) or of a
// time-to-live question with keys (read access): while auth is enabled,
// the caller names a user, and is root or has the access to every key
// attached to the lease; the auth store must not change meanwhile.
func (s *Server) checkLeaseKeys(ctx context.Context, id int64, check func(as *auth.Store, ai *auth.AuthInfo, key, rangeEnd []byte) error) error {
	as := s.node.Auth()
	if !as.Enabled() {
		return nil
	}
	rev := as.Revision()
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		return rpctypes.ErrGRPCUserEmpty
	}
	if as.IsAdminPermitted(ai) == nil {
		return nil
	}
	var keys []string
	if err := s.node.View(ctx, false, func(st *mvcc.Store) error {
		keys = st.LeaseKeys(id)
		return nil
	}); err != nil {
		return togRPCError(err)
	}
	for _, k := range keys {
		if err := check(as, ai, []byte(k), nil); err != nil {
			return togRPCError(err)
		}
	}
	if rev != as.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// minLeaseTTL is etcd's minimum lease TTL in seconds: one and a half
// election timeouts, counted in heartbeat ticks, rounded up.
func (c *config) minLeaseTTL() int64 {
	hb := c.HeartbeatInterval
	if hb <= 0 {
		return 1
	}
	ticks := int64(c.ElectionTimeout / hb)
	minTTL := time.Duration(3*ticks/2) * hb
	return int64(math.Ceil(minTTL.Seconds()))
}
