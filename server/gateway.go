package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	gw "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/tmc/grpc-websocket-proxy/wsproxy"
	etcdservergw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	v3electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	v3lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// gateway is etcd's gRPC gateway: the JSON API under /v3/ (/v3/kv/range,
// /v3/kv/put, /v3/watch, ...), bytes as base64, served on the client URLs.
// As etcd's, it is a client of the member's own gRPC server (so requests
// go through the same interceptors, auth and metrics), built from etcd's
// generated gateway packages; streams (watch, lease keep-alive) also
// answer websocket clients, and default to POST.
type gateway struct {
	conn    *grpc.ClientConn
	handler http.Handler
}

// newGateway dials the member's own client URL (an http one if there is
// any; else, as etcd, an https one without checking its certificate, which
// is its own) and registers etcd's gateway handlers.
func (s *Server) newGateway(clientTLS tlsPair) (*gateway, error) {
	target := s.clientURLs[0]
	for _, u := range s.clientURLs {
		if strings.HasPrefix(u, "http://") {
			target = u
			break
		}
	}
	pu, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if pu.Scheme == "https" {
		tc := &tls.Config{}
		if clientTLS.client != nil {
			tc = clientTLS.client.Clone()
		}
		tc.InsecureSkipVerify = true //nolint:gosec // the member dials itself, as etcd's gateway does
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient("passthrough:///"+pu.Host,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGatewayMessage), grpc.MaxCallSendMsgSize(maxGatewayMessage)),
	)
	if err != nil {
		return nil, fmt.Errorf("server: gRPC gateway: %w", err)
	}
	mux := gw.NewServeMux(gw.WithMarshalerOption(gw.MIMEWildcard, &gw.HTTPBodyMarshaler{
		Marshaler: &gw.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	ctx := context.Background()
	for _, register := range []func(context.Context, *gw.ServeMux, *grpc.ClientConn) error{
		etcdservergw.RegisterKVHandler,
		etcdservergw.RegisterWatchHandler,
		etcdservergw.RegisterLeaseHandler,
		etcdservergw.RegisterClusterHandler,
		etcdservergw.RegisterMaintenanceHandler,
		etcdservergw.RegisterAuthHandler,
		v3lockgw.RegisterLockHandler,
		v3electiongw.RegisterElectionHandler,
	} {
		if err := register(ctx, mux, conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("server: gRPC gateway: %w", err)
		}
	}
	h := wsproxy.WebsocketProxy(mux,
		wsproxy.WithRequestMutator(func(_ *http.Request, out *http.Request) *http.Request {
			out.Method = http.MethodPost // streams are POSTs
			return out
		}),
		wsproxy.WithMaxRespBodyBufferSize(0x7fffffff),
		wsproxy.WithLogger(wsLogger{s}),
	)
	return &gateway{conn: conn, handler: h}, nil
}

// maxGatewayMessage bounds the gateway's gRPC messages as the server's own
// limits do.
const maxGatewayMessage = 1<<31 - 1

type wsLogger struct{ s *Server }

func (l wsLogger) Warnln(args ...any)  { l.s.cfg.Logger.Warn(fmt.Sprint(args...)) }
func (l wsLogger) Debugln(args ...any) { l.s.cfg.Logger.Debug(fmt.Sprint(args...)) }

func (g *gateway) close() {
	if g != nil {
		g.conn.Close()
	}
}
