package server

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/mvcc"
)

// errWatchStoreReplaced ends a Watch stream whose watchers the store
// dropped because a snapshot restore replaced it. It is Unavailable, so
// clientv3 reopens its watches (from the revision after the last event it
// got) instead of giving up.
var errWatchStoreReplaced = status.Error(codes.Unavailable, "etcdserver: watch stream closed: the store was replaced by a snapshot restore")

// watchServer is etcd's Watch service over an mvcc.WatchStream, which
// interprets the requests and produces etcd's responses in order; the
// server forwards them with the header's IDs and term filled in.
type watchServer struct {
	pb.UnimplementedWatchServer
	s *Server
}

func (w *watchServer) Watch(stream pb.Watch_WatchServer) error {
	s := w.s
	ctx := stream.Context()
	var ws *mvcc.WatchStream
	err := s.node.View(ctx, false, func(st *mvcc.Store) error {
		var err error
		ws, err = st.NewWatchStream(&mvcc.WatchStreamOptions{
			ProgressNotifyInterval: s.cfg.WatchProgressNotifyInterval,
			FragmentBytes:          int(s.cfg.MaxRequestBytes) + grpcOverheadBytes,
			EncodedHeader: func() mvcc.WireHeader {
				return mvcc.WireHeader{ClusterID: s.id.ClusterID, MemberID: s.id.MemberID, RaftTerm: s.node.Term()}
			},
		})
		return err
	})
	if err != nil {
		return streamError(ctx, err)
	}
	defer ws.Close()

	// The receive loop ends when the client closes its side (then, as in
	// etcd, the responses keep coming until the stream's context ends) or
	// when the stream ends (Recv fails once the handler returned).
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				errc <- err
				return
			}
			switch u := req.GetRequestUnion().(type) {
			case *pb.WatchRequest_CreateRequest:
				if u.CreateRequest != nil {
					if reason := s.watchDenied(ctx, u.CreateRequest); reason != "" {
						ws.Reject(reason)
						break
					}
					// A refused creation has its response queued.
					ws.Watch(u.CreateRequest)
				}
			case *pb.WatchRequest_CancelRequest:
				if u.CancelRequest != nil {
					ws.Cancel(u.CancelRequest.GetWatchId())
				}
			case *pb.WatchRequest_ProgressRequest:
				if u.ProgressRequest != nil {
					ws.RequestProgress()
				}
			}
		}
	}()

	// Responses come encoded, an event's bytes shared by all its
	// watchers, in batches sent back to back.
	ch := ws.Encoded()
	for {
		select {
		case batch, ok := <-ch:
			if !ok {
				// The store closed the stream: the member is stopping,
				// or a snapshot restore replaced the store.
				select {
				case <-s.stopc:
					return rpctypes.ErrGRPCStopped
				default:
					return errWatchStoreReplaced
				}
			}
			for _, resp := range batch {
				if err := stream.SendMsg(encodedMessage(resp)); err != nil {
					return streamError(ctx, err)
				}
			}
		case err := <-errc:
			return streamError(ctx, err)
		case <-s.stopc:
			// Close: end the stream now rather than hold up the
			// graceful stop.
			return rpctypes.ErrGRPCStopped
		case <-ctx.Done():
			return streamError(ctx, ctx.Err())
		}
	}
}

// watchDenied checks read access to a watch's range while auth is enabled
// (after the start-revision check, as etcd does) and returns the reason
// the creation is refused with: etcd's error texts; "" if allowed.
func (s *Server) watchDenied(ctx context.Context, req *pb.WatchCreateRequest) string {
	as := s.node.Auth()
	if req.StartRevision < 0 || !as.Enabled() {
		return ""
	}
	key := req.Key
	if len(key) == 0 {
		key = []byte{0}
	}
	ai, err := s.authInfo(ctx)
	if err == nil {
		if ai == nil {
			ai = &auth.AuthInfo{}
		}
		err = togRPCError(as.IsRangePermitted(ai, key, req.RangeEnd))
	}
	switch {
	case err == nil:
		return ""
	case errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken), errors.Is(err, rpctypes.ErrGRPCAuthOldRevision), errors.Is(err, rpctypes.ErrGRPCUserEmpty):
		return err.Error()
	}
	return rpctypes.ErrGRPCPermissionDenied.Error()
}

// streamError is the error a stream ends with: etcd's "no leader" when
// the require-leader check cancelled it, else err translated.
func streamError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, rpctypes.ErrGRPCNoLeader) {
		return rpctypes.ErrGRPCNoLeader
	}
	return togRPCError(err)
}
