package server

import (
	"context"
	"log/slog"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// DefaultWarningUnaryRequestDuration is etcd's
// --warning-unary-request-duration.
const DefaultWarningUnaryRequestDuration = 300 * time.Millisecond

// logRequestStats is etcd's "request stats" line for a unary request: at
// warn when it took longer than WarningUnaryRequestDuration, at debug for
// every request when debug is on; with the request (values redacted, as
// etcd's) and the sizes and counts etcd prints.
func (s *Server) logRequestStats(ctx context.Context, info *grpc.UnaryServerInfo, start time.Time, req, resp any) {
	took := time.Since(start)
	lvl := slog.LevelDebug
	if took > s.cfg.WarningUnaryRequestDuration {
		lvl = slog.LevelWarn
	}
	if !s.cfg.Logger.Enabled(ctx, lvl) {
		return
	}
	remote := "No remote client info."
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	var (
		reqCount, respCount int64 = -1, -1
		reqSize, respSize         = -1, -1
		content             string
	)
	switch r := req.(type) {
	case *pb.RangeRequest:
		reqCount, reqSize, content = 0, proto.Size(r), r.String()
		if out, ok := resp.(*pb.RangeResponse); ok && out != nil {
			respCount, respSize = out.GetCount(), proto.Size(out)
		}
	case *pb.PutRequest:
		reqCount, reqSize, content = 1, proto.Size(r), pb.NewLoggablePutRequest(r).String()
		if out, ok := resp.(*pb.PutResponse); ok && out != nil {
			respCount, respSize = 0, proto.Size(out)
		}
	case *pb.DeleteRangeRequest:
		reqCount, reqSize, content = 0, proto.Size(r), r.String()
		if out, ok := resp.(*pb.DeleteRangeResponse); ok && out != nil {
			respCount, respSize = out.GetDeleted(), proto.Size(out)
		}
	case *pb.TxnRequest:
		if out, ok := resp.(*pb.TxnResponse); ok && out != nil {
			ops := r.GetFailure()
			if out.GetSucceeded() {
				ops = r.GetSuccess()
			}
			reqCount, reqSize = int64(len(ops)), 0
			for _, op := range ops {
				reqSize += proto.Size(op)
			}
			content = pb.NewLoggableTxnRequest(r).String()
			respCount, respSize = 0, proto.Size(out)
		}
	}
	s.cfg.Logger.Log(ctx, lvl, "request stats",
		"start time", start, "time spent", took, "remote", remote, "response type", info.FullMethod,
		"request count", reqCount, "request size", reqSize, "response count", respCount, "response size", respSize,
		"request content", content)
}
