package server

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// unaryInterceptor refuses a request that asks for a leader (clientv3's
// WithRequireLeader sets the "hasleader" metadata) while none is known, as
// etcd does.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if requiresLeader(ctx) {
		if id, _ := s.node.Leader(); id == "" {
			return nil, rpctypes.ErrGRPCNoLeader
		}
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	s.logRequestStats(ctx, info, start, req, resp)
	return resp, err
}

// requiresLeader reports whether the request's metadata asks for a leader.
// It reads the one key without copying the metadata (FromIncomingContext
// copies all of it, on every request).
func requiresLeader(ctx context.Context) bool {
	ks := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey)
	return len(ks) > 0 && ks[0] == rpctypes.MetadataHasLeader
}

// maxNoLeaderCount is how many election timeouts in a row a member sees
// no leader before it ends the streams that require one (etcd's).
const maxNoLeaderCount = 3

// streamInterceptor applies etcd's require-leader rule to streams: a
// stream asking for a leader ("hasleader" metadata) is refused while none
// is known, and ended with "no leader" once the member has seen none for
// maxNoLeaderCount election timeouts in a row.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !requiresLeader(ss.Context()) {
		return handler(srv, ss)
	}
	if id, _ := s.node.Leader(); id == "" {
		return rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	go func() {
		t := time.NewTicker(s.cfg.ElectionTimeout)
		defer t.Stop()
		noLeader := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.stopc:
				return
			case <-t.C:
			}
			if id, _ := s.node.Leader(); id == "" {
				noLeader++
			} else {
				noLeader = 0
			}
			if noLeader >= maxNoLeaderCount {
				cancel(rpctypes.ErrGRPCNoLeader)
				return
			}
		}
	}()
	return handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
}

type streamWithContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamWithContext) Context() context.Context { return s.ctx }
