package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// authDiffSide is one server of TestDiffEtcdAuth, with the tokens its
// users got from it.
type authDiffSide struct {
	name   string
	conn   *grpc.ClientConn
	auth   pb.AuthClient
	kv     pb.KVClient
	lease  pb.LeaseClient
	maint  pb.MaintenanceClient
	clus   pb.ClusterClient
	tokens map[string]string
}

// as returns ctx carrying user's token on this side ("" anonymous).
func (s *authDiffSide) as(ctx context.Context, user string) context.Context {
	if user == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, s.tokens[user])
}

// authDescribe is describe for any message: the header's cluster and
// member IDs and raft term, and tokens, cleared.
func authDescribe(m proto.Message, err error) string {
	if err != nil {
		st, _ := status.FromError(err)
		return fmt.Sprintf("error code=%s msg=%q", st.Code(), st.Message())
	}
	m = proto.Clone(m)
	var walk func(protoreflect.Message)
	walk = func(msg protoreflect.Message) {
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.Name() == "token":
				msg.Clear(fd)
			case fd.Message() != nil && fd.Message().FullName() == "etcdserverpb.ResponseHeader":
				h := v.Message().Interface().(*pb.ResponseHeader)
				h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
			case fd.IsList() && fd.Message() != nil:
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	return prototext.MarshalOptions{}.Format(m)
}

// TestDiffEtcdAuth runs one sequence of auth management, logins and key
// requests as several users against an embedded etcd v3.7.3 and a Strata
// member, and compares every answer (the header's IDs and tokens aside)
// and every error (gRPC code and text).
func TestDiffEtcdAuth(t *testing.T) {
	etcdEP := startEtcd(t, func(cfg *embed.Config) { cfg.BcryptCost = uint(bcrypt.MinCost) })
	c := newCluster(t, 1, engines()[0], authTweak)
	var sides []*authDiffSide
	for _, ep := range []struct{ name, ep string }{{"etcd", etcdEP}, {"strata", c.endpoint(0)}} {
		// A plain gRPC connection: clientv3's interceptors would retry
		// and refresh tokens by themselves.
		conn, err := grpc.NewClient(ep.ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sides = append(sides, &authDiffSide{name: ep.name, conn: conn, auth: pb.NewAuthClient(conn),
			kv: pb.NewKVClient(conn), lease: pb.NewLeaseClient(conn),
			maint: pb.NewMaintenanceClient(conn), clus: pb.NewClusterClient(conn), tokens: map[string]string{}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type step struct {
		who  string
		name string
		do   func(ctx context.Context, s *authDiffSide) (proto.Message, error)
	}
	authStep := func(who, name string, do func(ctx context.Context, a pb.AuthClient) (proto.Message, error)) step {
		return step{who, name, func(ctx context.Context, s *authDiffSide) (proto.Message, error) { return do(ctx, s.auth) }}
	}
	kvStep := func(who, name string, do func(ctx context.Context, kv pb.KVClient) (proto.Message, error)) step {
		return step{who, name, func(ctx context.Context, s *authDiffSide) (proto.Message, error) { return do(ctx, s.kv) }}
	}
	login := func(user, pw string) step {
		return step{"", "login " + user, func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			r, err := s.auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: user, Password: pw})
			if err == nil {
				s.tokens[user] = r.Token
			}
			return r, err
		}}
	}
	userAdd := func(who, name, pw string, noPassword bool) step {
		return authStep(who, "user add "+name, func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserAdd(ctx, &pb.AuthUserAddRequest{Name: name, Password: pw, Options: &authpb.UserAddOptions{NoPassword: noPassword}})
		})
	}
	roleAdd := func(who, name string) step {
		return authStep(who, "role add "+name, func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: name})
		})
	}
	grantRole := func(who, user, role string) step {
		return authStep(who, "grant "+role+" to "+user, func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: user, Role: role})
		})
	}
	grantPerm := func(who, role, key, end string, typ authpb.Permission_Type) step {
		return authStep(who, fmt.Sprintf("grant %s [%q,%q) %s", role, key, end, typ), func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: role, Perm: &authpb.Permission{Key: []byte(key), RangeEnd: []byte(end), PermType: typ}})
		})
	}
	status := func(who string) step {
		return authStep(who, "auth status", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.AuthStatus(ctx, &pb.AuthStatusRequest{})
		})
	}
	// errOnly compares only the error of RPCs whose answers differ
	// between two clusters (sizes, member names and URLs).
	errOnly := func(who, name string, do func(ctx context.Context, s *authDiffSide) error) step {
		return step{who, name, func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			if err := do(ctx, s); err != nil {
				return nil, err
			}
			return &pb.ResponseHeader{}, nil
		}}
	}
	// etcd 3.7's rules: Status, MemberList and alarm list need a user
	// while auth is on (not root); alarm changes need root.
	needUser := func(who string) []step {
		return []step{
			errOnly(who, "maintenance status", func(ctx context.Context, s *authDiffSide) error {
				_, err := s.maint.Status(ctx, &pb.StatusRequest{})
				return err
			}),
			errOnly(who, "member list", func(ctx context.Context, s *authDiffSide) error {
				_, err := s.clus.MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
				return err
			}),
			errOnly(who, "alarm list", func(ctx context.Context, s *authDiffSide) error {
				_, err := s.maint.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
				return err
			}),
			errOnly(who, "alarm deactivate", func(ctx context.Context, s *authDiffSide) error {
				_, err := s.maint.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, Alarm: pb.AlarmType_NOSPACE})
				return err
			}),
		}
	}
	enable := func(who string) step {
		return authStep(who, "auth enable", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.AuthEnable(ctx, &pb.AuthEnableRequest{})
		})
	}
	put := func(who, key string) step {
		return kvStep(who, "put "+key, func(ctx context.Context, kv pb.KVClient) (proto.Message, error) {
			return kv.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("v"), PrevKv: true})
		})
	}
	get := func(who, key, end string) step {
		return kvStep(who, fmt.Sprintf("range [%q,%q)", key, end), func(ctx context.Context, kv pb.KVClient) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte(key), RangeEnd: []byte(end)})
		})
	}
	del := func(who, key, end string) step {
		return kvStep(who, fmt.Sprintf("delete [%q,%q)", key, end), func(ctx context.Context, kv pb.KVClient) (proto.Message, error) {
			return kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end), PrevKv: true})
		})
	}
	txn := func(who, name string, r *pb.TxnRequest) step {
		return kvStep(who, "txn "+name, func(ctx context.Context, kv pb.KVClient) (proto.Message, error) { return kv.Txn(ctx, r) })
	}
	opPut := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("t")}}}
	}
	opGet := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
	}
	cmp := func(k string) *pb.Compare {
		return &pb.Compare{Key: []byte(k), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}
	}
	rw, rd, wr := authpb.Permission_READWRITE, authpb.Permission_READ, authpb.Permission_WRITE

	steps := []step{
		status(""),
		enable(""),
		userAdd("", "root", "rootpw", false),
		userAdd("", "root", "x", false),
		userAdd("", "", "x", false),
		roleAdd("", ""),
		enable(""),
		grantRole("", "nobody", "root"),
		grantRole("", "root", "nosuch"),
		grantRole("", "root", "root"),
		grantRole("", "root", "root"),
		roleAdd("", "root"),
		userAdd("", "u1", "pw1", false),
		userAdd("", "u2", "", true),
		roleAdd("", "r1"),
		roleAdd("", "r1"),
		roleAdd("", "r2"),
		grantPerm("", "r1", "/a/", "/a0", rw),
		grantPerm("", "r1", "k", "", rd),
		grantPerm("", "r1", "k", "", rw), // updates it
		grantPerm("", "r1", "b", "a", rd),
		grantPerm("", "r1", "", "", rd),
		grantPerm("", "nosuch", "k", "", rd),
		grantPerm("", "r2", "m", "\x00", wr),
		grantRole("", "u1", "r1"),
		grantRole("", "u2", "r2"),
		authStep("", "role get r1", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "r1"})
		}),
		authStep("", "role get root", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "root"})
		}),
		authStep("", "user get u1", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserGet(ctx, &pb.AuthUserGetRequest{Name: "u1"})
		}),
		authStep("", "user list", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserList(ctx, &pb.AuthUserListRequest{})
		}),
		authStep("", "role list", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleList(ctx, &pb.AuthRoleListRequest{})
		}),
		authStep("", "revoke ungranted permission", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleRevokePermission(ctx, &pb.AuthRoleRevokePermissionRequest{Role: "r1", Key: []byte("zz")})
		}),
		put("", "/a/1"),
		enable(""),
		status(""),
		enable(""),
		login("u1", "bad"),
		login("nobody", "x"),
		login("u2", ""),
		login("u1", "pw1"),
		login("root", "rootpw"),
		put("", "/a/1"),
		get("", "/a/1", ""),
		put("u1", "/a/2"),
		get("u1", "/a/", "/a0"),
		get("u1", "/a/", "\x00"),
		get("u1", "k", ""),
		put("u1", "k"),
		put("u1", "m1"),
		del("u1", "/a/", "/a0"),
		del("u1", "/", "0"),
		txn("u1", "inside", &pb.TxnRequest{Compare: []*pb.Compare{cmp("/a/2")}, Success: []*pb.RequestOp{opPut("/a/3")}, Failure: []*pb.RequestOp{opGet("k")}}),
		txn("u1", "else branch outside", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("/a/3")}, Failure: []*pb.RequestOp{opPut("m1")}}),
		txn("u1", "compare outside", &pb.TxnRequest{Compare: []*pb.Compare{cmp("m1")}, Success: []*pb.RequestOp{opGet("k")}}),
		txn("u1", "nested outside", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Failure: []*pb.RequestOp{opGet("m1")}}}}}}),
		put("u2", "m1"),
		put("u2", "zzz"),
		get("u2", "m1", ""),
		put("u2", "l"),
		authStep("u1", "user get self", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserGet(ctx, &pb.AuthUserGetRequest{Name: "u1"})
		}),
		authStep("u1", "user get other", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserGet(ctx, &pb.AuthUserGetRequest{Name: "u2"})
		}),
		authStep("u1", "role get own", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "r1"})
		}),
		authStep("u1", "role get other", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "r2"})
		}),
		authStep("u1", "user list", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserList(ctx, &pb.AuthUserListRequest{})
		}),
		status("u1"),
		kvStep("u1", "compact", func(ctx context.Context, kv pb.KVClient) (proto.Message, error) {
			return kv.Compact(ctx, &pb.CompactionRequest{Revision: 1})
		}),
		step{"", "anonymous lease grant", func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			return s.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 60})
		}},
		step{"u1", "lease grant", func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			return s.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 60})
		}},
		step{"root", "put with the lease", func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			return s.kv.Put(ctx, &pb.PutRequest{Key: []byte("m5"), Value: []byte("v"), Lease: 7})
		}},
		step{"u1", "lease revoke", func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			return s.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 7})
		}},
		step{"u2", "lease revoke", func(ctx context.Context, s *authDiffSide) (proto.Message, error) {
			return s.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 7})
		}},
		put("root", "anything"),
		get("root", "\x00", "\x00"),
		authStep("root", "change u1's password", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserChangePassword(ctx, &pb.AuthUserChangePasswordRequest{Name: "u1", Password: "pw2"})
		}),
		put("u1", "/a/4"), // its token is gone
		login("u1", "pw1"),
		login("u1", "pw2"),
		put("u1", "/a/4"),
		authStep("root", "delete root", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: "root"})
		}),
		authStep("root", "revoke root's root role", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
		}),
		authStep("root", "delete the root role", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: "root"})
		}),
		authStep("root", "delete r1", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: "r1"})
		}),
		get("u1", "/a/4", ""),
		authStep("root", "revoke r2 from u2", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "u2", Role: "r2"})
		}),
		authStep("root", "revoke r2 from u2 again", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "u2", Role: "r2"})
		}),
		authStep("root", "delete u1", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: "u1"})
		}),
		put("u1", "/a/5"),
		authStep("u2", "auth disable", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.AuthDisable(ctx, &pb.AuthDisableRequest{})
		}),
		status("root"),
		authStep("root", "auth disable", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.AuthDisable(ctx, &pb.AuthDisableRequest{})
		}),
		status(""),
		put("", "free"),
		login("root", "rootpw"),
		authStep("", "user list", func(ctx context.Context, a pb.AuthClient) (proto.Message, error) {
			return a.UserList(ctx, &pb.AuthUserListRequest{})
		}),
	}
	for i, st := range steps {
		if st.who == "u1" && st.name == "auth status" {
			var more []step
			for _, who := range []string{"u1", "", "root"} {
				more = append(more, needUser(who)...)
			}
			steps = slices.Insert(steps, i+1, more...)
			break
		}
	}
	asUser := 0 // steps with a token that succeeded
	for i, st := range steps {
		var got [2]string
		for j, s := range sides {
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			began := time.Now()
			m, err := st.do(s.as(sctx, st.who), s)
			scancel()
			if took := time.Since(began); took > 300*time.Millisecond {
				t.Logf("step %d (%s as %q) on %s took %v", i, st.name, st.who, s.name, took)
			}
			if took := time.Since(began); took > 5*time.Second {
				t.Fatalf("step %d (%s as %q) on %s took %v: %v", i, st.name, st.who, s.name, took, err)
			}
			got[j] = authDescribe(m, err)
		}
		if got[0] != got[1] {
			t.Fatalf("step %d (%s as %q):\netcd:   %s\nstrata: %s", i, st.name, st.who, got[0], got[1])
		}
		if st.who != "" && !strings.HasPrefix(got[0], "error") {
			asUser++
		}
	}
	if asUser < 15 {
		t.Fatalf("only %d requests with a token succeeded: the tokens were not used", asUser)
	}
}
