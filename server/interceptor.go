package server

import (
	"context"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// unaryInterceptor refuses a request that asks for a leader (clientv3's
// WithRequireLeader sets the "hasleader" metadata) while none is known, as
// etcd does.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ks := md[rpctypes.MetadataRequireLeaderKey]; len(ks) > 0 && ks[0] == rpctypes.MetadataHasLeader {
			if id, _ := s.node.Leader(); id == "" {
				return nil, rpctypes.ErrGRPCNoLeader
			}
		}
	}
	return handler(ctx, req)
}
