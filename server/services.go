package server

import (
	"context"
	"crypto/x509"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/auth"
)

// authServer is etcd's Auth service. Every request is proposed and applied
// in log order, as etcd does (reads too); management requests are checked
// for the root role when applied, against the user the request header
// names (see replication's authorize).
type authServer struct {
	pb.UnimplementedAuthServer
	s *Server
}

// authRequest proposes an auth request and returns its answer with the
// response header filled in.
func authRequest[T interface {
	proto.Message
	GetHeader() *pb.ResponseHeader
}](ctx context.Context, s *Server, req *pb.InternalRaftRequest, setHeader func(T, *pb.ResponseHeader)) (T, error) {
	out, err := proposeAs[T](ctx, s, req)
	if err != nil {
		var zero T
		return zero, err
	}
	setHeader(out, s.header())
	return out, nil
}

func (a *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthEnable: r}, func(m *pb.AuthEnableResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthDisable: r}, func(m *pb.AuthDisableResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthStatus: r}, func(m *pb.AuthStatusResponse, h *pb.ResponseHeader) { m.Header = h })
}

// Authenticate checks the password on this member, after a linearizable
// barrier, and proposes the authentication (without the password), which
// issues the token; if the auth store changed in between, it tries again,
// as etcd does.
func (a *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := a.s.node.ReadBarrier(ctx); err != nil {
		return nil, readError(ctx, err)
	}
	as := a.s.node.Auth()
	for {
		rev, err := as.CheckPassword(r.Name, r.Password)
		if err != nil {
			return nil, togRPCError(err)
		}
		prefix, err := as.GenTokenPrefix()
		if err != nil {
			return nil, togRPCError(err)
		}
		resp, err := proposeAs[*pb.AuthenticateResponse](ctx, a.s, &pb.InternalRaftRequest{
			Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix},
		})
		if err != nil {
			return nil, err
		}
		if rev == as.Revision() {
			resp.Header = a.s.header()
			return resp, nil
		}
	}
}

func (a *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	r = proto.CloneOf(r)
	if r.Options == nil || !r.Options.NoPassword {
		h, err := auth.HashPassword(r.Password, a.s.cfg.BcryptCost)
		if err != nil {
			return nil, togRPCError(err)
		}
		r.HashedPassword, r.Password = h, ""
	}
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserAdd: r}, func(m *pb.AuthUserAddResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserDelete: r}, func(m *pb.AuthUserDeleteResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	r = proto.CloneOf(r)
	if r.Password != "" {
		h, err := auth.HashPassword(r.Password, a.s.cfg.BcryptCost)
		if err != nil {
			return nil, togRPCError(err)
		}
		r.HashedPassword, r.Password = h, ""
	}
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserChangePassword: r}, func(m *pb.AuthUserChangePasswordResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserGrantRole: r}, func(m *pb.AuthUserGrantRoleResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserGet: r}, func(m *pb.AuthUserGetResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserList: r}, func(m *pb.AuthUserListResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthUserRevokeRole: r}, func(m *pb.AuthUserRevokeRoleResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthRoleAdd: r}, func(m *pb.AuthRoleAddResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthRoleGet: r}, func(m *pb.AuthRoleGetResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthRoleList: r}, func(m *pb.AuthRoleListResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthRoleDelete: r}, func(m *pb.AuthRoleDeleteResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthRoleGrantPermission: r}, func(m *pb.AuthRoleGrantPermissionResponse, h *pb.ResponseHeader) { m.Header = h })
}

func (a *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return authRequest(ctx, a.s, &pb.InternalRaftRequest{AuthRoleRevokePermission: r}, func(m *pb.AuthRoleRevokePermissionResponse, h *pb.ResponseHeader) { m.Header = h })
}

// authInfo returns who sends the request ctx carries, as etcd decides it:
// nil while auth is disabled or for an anonymous caller; the user of the
// "token" (or "authorization", less a "Bearer " prefix) metadata, failing
// with "invalid auth token" for one this member does not know; else, with
// --client-cert-auth, the common name of the connection's verified client
// certificate.
func (s *Server) authInfo(ctx context.Context) (*auth.AuthInfo, error) {
	as := s.node.Auth()
	if !as.Enabled() {
		return nil, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ts, ok := md[rpctypes.TokenFieldNameGRPC]
		if !ok {
			ts, ok = md[rpctypes.TokenFieldNameSwagger]
		}
		if ok && len(ts) > 0 {
			ai, err := as.AuthInfoFromToken(ctx, strings.TrimPrefix(ts[0], "Bearer "))
			if err != nil {
				return nil, togRPCError(err)
			}
			return ai, nil
		}
	}
	if !s.cfg.ClientTLSInfo.ClientCertAuth {
		return nil, nil
	}
	return authInfoFromTLS(ctx, as.Revision()), nil
}

// authInfoFromTLS returns the user a verified client certificate names
// (its subject's common name), as etcd does with --client-cert-auth;
// nil without one. Requests through etcd's gRPC gateway (the
// "grpcgateway-accept" metadata) never use it.
func authInfoFromTLS(ctx context.Context, rev uint64) *auth.AuthInfo {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	var cert *x509.Certificate
	for _, chain := range ti.State.VerifiedChains {
		if len(chain) > 0 {
			cert = chain[0]
			break
		}
	}
	if cert == nil {
		return nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md["grpcgateway-accept"]) > 0 {
		return nil
	}
	return &auth.AuthInfo{Username: cert.Subject.CommonName, Revision: rev}
}

// withAuthHeader gives req the header etcd's raft requests carry: who sent
// it and at which auth revision, checked when it is applied. Every client
// request gets one (empty for an anonymous caller) while auth is enabled.
func (s *Server) withAuthHeader(ctx context.Context, req *pb.InternalRaftRequest) error {
	if req.Authenticate != nil || !s.node.Auth().Enabled() {
		return nil
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	h := &pb.RequestHeader{}
	if ai != nil {
		h.Username, h.AuthRevision = ai.Username, ai.Revision
	}
	req.Header = h
	return nil
}

// checkAdmin is etcd's check for root-only RPCs (compaction, defragment,
// snapshot, hashes, alarm changes, move-leader, member changes).
func (s *Server) checkAdmin(ctx context.Context) error {
	as := s.node.Auth()
	if !as.Enabled() {
		return nil
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	return togRPCError(as.IsAdminPermitted(ai))
}

// requireUser is etcd's requireAuthInfo: while auth is enabled, the caller
// must name a user (lease grants and revokes, status, alarm list).
func (s *Server) requireUser(ctx context.Context) error {
	if !s.node.Auth().Enabled() {
		return nil
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		return rpctypes.ErrGRPCUserEmpty
	}
	return nil
}

// checkRead runs a local read as etcd does: a linearizable read barrier
// first when linearizable (so the auth store is as current as the data),
// then, as etcd's doSerialize, the permission check for the caller, the
// read, and a check that the auth store did not change meanwhile
// ("revision of auth store is old"). read itself need not wait for the
// barrier again.
func (s *Server) checkRead(ctx context.Context, linearizable bool, chk func(as *auth.Store, ai *auth.AuthInfo) error, read func() error) error {
	if linearizable {
		err := s.node.ReadBarrier(ctx)
		traceFrom(ctx).step(stepLinearized)
		if err != nil {
			return readError(ctx, err)
		}
	}
	as := s.node.Auth()
	if !as.Enabled() {
		return read()
	}
	ai, err := s.authInfo(ctx)
	if err != nil {
		return err
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	if err := chk(as, ai); err != nil {
		return togRPCError(err)
	}
	if err := read(); err != nil {
		return err
	}
	if ai.Revision != 0 && ai.Revision != as.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// validBcryptCost is the cost etcd uses for c: c, or the default when
// bcrypt refuses it.
func validBcryptCost(c int) bool { return c >= bcrypt.MinCost && c <= bcrypt.MaxCost }
