package server

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// The Lock and Election services are built, as etcd's v3lock and
// v3election are, from clientv3's concurrency recipes (sessions on
// leases, keys ordered by create revision, watches for the predecessor),
// run by a client of the member's own KV, Lease and Watch services: an
// in-process clientv3 client of the member's first client URL, made on
// first use.

// withCallerToken passes the caller's token on to the member's own
// services, so that the recipes' requests are checked as the caller's
// (with auth enabled). As in etcd, a session's lease keep-alives, which
// clientv3 sends on its own stream, carry none.
func withCallerToken(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	for _, k := range []string{rpctypes.TokenFieldNameGRPC, rpctypes.TokenFieldNameSwagger} {
		if v := md[k]; len(v) > 0 {
			return metadata.AppendToOutgoingContext(ctx, k, v[0])
		}
	}
	return ctx
}

// selfClient is the member's client of itself.
type selfClient struct {
	s    *Server
	mu   sync.Mutex
	cli  *clientv3.Client
	done bool
}

func (c *selfClient) get() (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil, errors.New("etcdserver: server stopped")
	}
	if c.cli != nil {
		return c.cli, nil
	}
	u, err := url.Parse(c.s.clientURLs[0])
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{net.JoinHostPort(host, port)},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	c.cli = cli
	return cli, nil
}

func (c *selfClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.cli != nil {
		c.cli.Close()
		c.cli = nil
	}
}

// session is etcd's: on the given lease (0: a new one kept alive for the
// call), orphaned so that the lease outlives the call.
func (c *selfClient) session(ctx context.Context, lease int64) (*concurrency.Session, error) {
	cli, err := c.get()
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(cli, concurrency.WithLease(clientv3.LeaseID(lease)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.Orphan()
	return s, nil
}

// lockServer is etcd's Lock service.
type lockServer struct {
	v3lockpb.UnimplementedLockServer
	c *selfClient
}

func (l *lockServer) Lock(ctx context.Context, req *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	ctx = withCallerToken(ctx)
	s, err := l.c.session(ctx, req.GetLease())
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(s, string(req.GetName()))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

func (l *lockServer) Unlock(ctx context.Context, req *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	ctx = withCallerToken(ctx)
	cli, err := l.c.get()
	if err != nil {
		return nil, err
	}
	resp, err := cli.Delete(ctx, string(req.GetKey()))
	if err != nil {
		return nil, err
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}

// errMissingLeaderKey is etcd's v3election.ErrMissingLeaderKey.
var errMissingLeaderKey = errors.New(`"leader" field must be provided`)

// electionServer is etcd's Election service.
type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	c *selfClient
}

func (e *electionServer) Campaign(ctx context.Context, req *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	ctx = withCallerToken(ctx)
	s, err := e.c.session(ctx, req.GetLease())
	if err != nil {
		return nil, err
	}
	el := concurrency.NewElection(s, string(req.GetName()))
	if err := el.Campaign(ctx, string(req.GetValue())); err != nil {
		return nil, err
	}
	return &v3electionpb.CampaignResponse{
		Header: el.Header(),
		Leader: &v3electionpb.LeaderKey{Name: req.GetName(), Key: []byte(el.Key()), Rev: el.Rev(), Lease: int64(s.Lease())},
	}, nil
}

func (e *electionServer) Proclaim(ctx context.Context, req *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	ctx = withCallerToken(ctx)
	lk := req.GetLeader()
	if lk == nil {
		return nil, errMissingLeaderKey
	}
	s, err := e.c.session(ctx, lk.GetLease())
	if err != nil {
		return nil, err
	}
	el := concurrency.ResumeElection(s, string(lk.GetName()), string(lk.GetKey()), lk.GetRev())
	if err := el.Proclaim(ctx, string(req.GetValue())); err != nil {
		return nil, err
	}
	return &v3electionpb.ProclaimResponse{Header: el.Header()}, nil
}

func (e *electionServer) Observe(req *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := withCallerToken(stream.Context())
	s, err := e.c.session(ctx, -1)
	if err != nil {
		return err
	}
	ch := concurrency.NewElection(s, string(req.GetName())).Observe(ctx)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case resp, ok := <-ch:
			if !ok {
				return nil
			}
			if err := stream.Send(&v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func (e *electionServer) Leader(ctx context.Context, req *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	ctx = withCallerToken(ctx)
	s, err := e.c.session(ctx, -1)
	if err != nil {
		return nil, err
	}
	l, err := concurrency.NewElection(s, string(req.GetName())).Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &v3electionpb.LeaderResponse{Header: l.Header, Kv: l.Kvs[0]}, nil
}

func (e *electionServer) Resign(ctx context.Context, req *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	ctx = withCallerToken(ctx)
	lk := req.GetLeader()
	if lk == nil {
		return nil, errMissingLeaderKey
	}
	s, err := e.c.session(ctx, lk.GetLease())
	if err != nil {
		return nil, err
	}
	el := concurrency.ResumeElection(s, string(lk.GetName()), string(lk.GetKey()), lk.GetRev())
	if err := el.Resign(ctx); err != nil {
		return nil, err
	}
	return &v3electionpb.ResignResponse{Header: el.Header()}, nil
}
