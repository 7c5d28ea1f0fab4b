package replication

import (
	"fmt"
	"strconv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/mvcc"
)

// Every kind of request a member proposes is described once, in kinds: how
// it applies to the store, what it answers, what it costs against the space
// quota and who may propose it. The FSM applies requests through it, the
// peer service decodes forwarded answers with it, and the server asks it for
// quota costs. Adding a request kind is one entry here (and its tests).

// kind describes one field of InternalRaftRequest.
type kind struct {
	// name names the kind in errors and logs.
	name string
	// is reports whether a request is of this kind: its field is set.
	is func(r *pb.InternalRaftRequest) bool
	// apply applies the request to the batch. done, for a physical
	// compaction, closes once it is on disk.
	apply func(f *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (resp proto.Message, done <-chan struct{}, err error)
	// newResponse returns an empty response of the kind, into which a
	// forwarded answer is decoded; nil for a kind answered without a
	// message.
	newResponse func() proto.Message
	// cost is what the request costs against the space quota (etcd's
	// quota.go): a request with a positive cost adds data, and is refused
	// while a NOSPACE alarm is active. Nil costs nothing.
	cost func(r *pb.InternalRaftRequest) int
	// leaderOnly marks kinds only the leader proposes, for itself (its
	// lessor's checkpoints): the peer service refuses one a follower
	// forwards (ErrUnsupportedRequest).
	leaderOnly bool
	// perm is the permission a client needs for the request once auth is
	// enabled (see authorize).
	perm permission
	// refusedCorrupt marks the kinds that fail with ErrCorruptCluster
	// while a CORRUPT alarm is active, as etcd's corrupt applier refuses
	// them.
	refusedCorrupt bool
}

// permission is what a request needs of the user who sends it.
type permission uint8

const (
	// permKeys: read or write access to the keys the request touches, as
	// etcd's auth store checks them, when applied.
	permKeys permission = iota
	// permLease: write access to the keys attached to the lease, when
	// applied (a revoke; a grant needs only a user, which the server
	// checks).
	permLease
	// permAdmin: the root role, which the server checks before proposing
	// (etcd checks compactions and alarms at its gRPC layer; the member's
	// own NOSPACE alarm is not a user's).
	permAdmin
	// permMember: a member's own request, not a user's.
	permMember
	// permAuthAdmin: the root role, when applied (auth management).
	permAuthAdmin
	// permAuthSelf: the root role, or the user asking about itself or a
	// role it has (UserGet, RoleGet), when applied.
	permAuthSelf
	// permAnyone: nothing (Authenticate checks a password; AuthStatus is
	// public).
	permAnyone
)

// Quota costs, etcd's (server/storage/quota.go).
const (
	// CostKVOverhead is what a put costs beyond its key and value.
	CostKVOverhead = 256
	// CostLease is what a lease grant costs.
	CostLease = 64
)

// kinds is the table of request kinds: the store's, then the auth
// store's (authKinds).
var kinds = append([]kind{
	{
		name:           "put",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.Put != nil },
		apply:          respond((*mvcc.WriteBatch).Put, func(r *pb.InternalRaftRequest) *pb.PutRequest { return r.Put }),
		newResponse:    func() proto.Message { return &pb.PutResponse{} },
		cost:           func(r *pb.InternalRaftRequest) int { return costPut(r.Put) },
	},
	{
		name:           "delete range",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.DeleteRange != nil },
		apply:          respond((*mvcc.WriteBatch).DeleteRange, func(r *pb.InternalRaftRequest) *pb.DeleteRangeRequest { return r.DeleteRange }),
		newResponse:    func() proto.Message { return &pb.DeleteRangeResponse{} },
	},
	{
		name:           "txn",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.Txn != nil },
		apply:          respond((*mvcc.WriteBatch).Txn, func(r *pb.InternalRaftRequest) *pb.TxnRequest { return r.Txn }),
		newResponse:    func() proto.Message { return &pb.TxnResponse{} },
		cost:           func(r *pb.InternalRaftRequest) int { return costTxn(r.Txn) },
	},
	{
		name:           "compaction",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.Compaction != nil },
		apply: func(_ *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			resp, done, err := w.Compact(r.Compaction)
			if !r.Compaction.Physical {
				done = nil // answered at once; only a physical one waits
			}
			if err != nil {
				return nil, done, err
			}
			return resp, done, nil
		},
		newResponse: func() proto.Message { return &pb.CompactionResponse{} },
		perm:        permAdmin,
	},
	{
		name:           "range",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.Range != nil },
		apply:          respond((*mvcc.WriteBatch).Range, func(r *pb.InternalRaftRequest) *pb.RangeRequest { return r.Range }),
		newResponse:    func() proto.Message { return &pb.RangeResponse{} },
	},
	{
		name:           "lease grant",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.LeaseGrant != nil },
		apply:          respond((*mvcc.WriteBatch).LeaseGrant, func(r *pb.InternalRaftRequest) *pb.LeaseGrantRequest { return r.LeaseGrant }),
		newResponse:    func() proto.Message { return &pb.LeaseGrantResponse{} },
		cost:           func(*pb.InternalRaftRequest) int { return CostLease },
		perm:           permLease,
	},
	{
		name:           "lease revoke",
		refusedCorrupt: true,
		is:             func(r *pb.InternalRaftRequest) bool { return r.LeaseRevoke != nil },
		apply:          respond((*mvcc.WriteBatch).LeaseRevoke, func(r *pb.InternalRaftRequest) *pb.LeaseRevokeRequest { return r.LeaseRevoke }),
		newResponse:    func() proto.Message { return &pb.LeaseRevokeResponse{} },
		perm:           permLease,
	},
	{
		name:        "lease checkpoint",
		is:          func(r *pb.InternalRaftRequest) bool { return r.LeaseCheckpoint != nil },
		apply:       respond((*mvcc.WriteBatch).LeaseCheckpoint, func(r *pb.InternalRaftRequest) *pb.LeaseCheckpointRequest { return r.LeaseCheckpoint }),
		newResponse: func() proto.Message { return &pb.LeaseCheckpointResponse{} },
		leaderOnly:  true,
		perm:        permMember,
	},
	{
		name: "alarm",
		is:   func(r *pb.InternalRaftRequest) bool { return r.Alarm != nil },
		apply: func(f *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return f.alarms.apply(w, r.Alarm), nil, nil
		},
		newResponse: func() proto.Message { return &pb.AlarmResponse{} },
		perm:        permAdmin,
	},
	{
		name: "member attributes",
		is:   func(r *pb.InternalRaftRequest) bool { return r.ClusterMemberAttrSet != nil },
		apply: func(_ *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			a := r.ClusterMemberAttrSet
			b, err := proto.Marshal(a.MemberAttributes)
			if err != nil {
				return nil, nil, err
			}
			w.SetAux([]byte(memberAttrPrefix+strconv.FormatUint(a.Member_ID, 16)), b)
			return nil, nil, nil
		},
		perm: permMember,
	},
	{
		name: "cluster version",
		is:   func(r *pb.InternalRaftRequest) bool { return r.ClusterVersionSet != nil },
		apply: func(_ *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			w.SetAux([]byte(clusterVersionKey), []byte(r.ClusterVersionSet.Ver))
			return nil, nil, nil
		},
		perm: permMember,
	},
}, authKinds...)

// authKinds are the auth store's requests, applied by fsm.auth.
var authKinds = []kind{
	{
		name: "auth enable",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthEnable != nil },
		apply: func(f *fsm, w *mvcc.WriteBatch, _ *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyAuthEnable(w))
		},
		newResponse: func() proto.Message { return &pb.AuthEnableResponse{} },
		perm:        permAuthAdmin,
	},
	{
		name: "auth disable",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthDisable != nil },
		apply: func(f *fsm, w *mvcc.WriteBatch, _ *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyAuthDisable(w))
		},
		newResponse: func() proto.Message { return &pb.AuthDisableResponse{} },
		perm:        permAuthAdmin,
	},
	{
		name: "auth status",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthStatus != nil },
		apply: func(f *fsm, _ *mvcc.WriteBatch, _ *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyAuthStatus())
		},
		newResponse: func() proto.Message { return &pb.AuthStatusResponse{} },
		perm:        permAnyone,
	},
	{
		name: "authenticate",
		is:   func(r *pb.InternalRaftRequest) bool { return r.Authenticate != nil },
		apply: func(f *fsm, _ *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyAuthenticate(r.Authenticate, f.index))
		},
		newResponse: func() proto.Message { return &pb.AuthenticateResponse{} },
		perm:        permAnyone,
	},
	authWrite("user add", func(r *pb.InternalRaftRequest) *pb.AuthUserAddRequest { return r.AuthUserAdd }, (*auth.Store).ApplyUserAdd),
	authWrite("user delete", func(r *pb.InternalRaftRequest) *pb.AuthUserDeleteRequest { return r.AuthUserDelete }, (*auth.Store).ApplyUserDelete),
	authWrite("user change password", func(r *pb.InternalRaftRequest) *pb.AuthUserChangePasswordRequest { return r.AuthUserChangePassword }, (*auth.Store).ApplyUserChangePassword),
	authWrite("user grant role", func(r *pb.InternalRaftRequest) *pb.AuthUserGrantRoleRequest { return r.AuthUserGrantRole }, (*auth.Store).ApplyUserGrantRole),
	authWrite("user revoke role", func(r *pb.InternalRaftRequest) *pb.AuthUserRevokeRoleRequest { return r.AuthUserRevokeRole }, (*auth.Store).ApplyUserRevokeRole),
	authWrite("role add", func(r *pb.InternalRaftRequest) *pb.AuthRoleAddRequest { return r.AuthRoleAdd }, (*auth.Store).ApplyRoleAdd),
	authWrite("role delete", func(r *pb.InternalRaftRequest) *pb.AuthRoleDeleteRequest { return r.AuthRoleDelete }, (*auth.Store).ApplyRoleDelete),
	authWrite("role grant permission", func(r *pb.InternalRaftRequest) *pb.AuthRoleGrantPermissionRequest { return r.AuthRoleGrantPermission }, (*auth.Store).ApplyRoleGrantPermission),
	authWrite("role revoke permission", func(r *pb.InternalRaftRequest) *pb.AuthRoleRevokePermissionRequest { return r.AuthRoleRevokePermission }, (*auth.Store).ApplyRoleRevokePermission),
	{
		name: "user get",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthUserGet != nil },
		apply: func(f *fsm, _ *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyUserGet(r.AuthUserGet))
		},
		newResponse: func() proto.Message { return &pb.AuthUserGetResponse{} },
		perm:        permAuthSelf,
	},
	{
		name: "user list",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthUserList != nil },
		apply: func(f *fsm, _ *mvcc.WriteBatch, _ *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyUserList())
		},
		newResponse: func() proto.Message { return &pb.AuthUserListResponse{} },
		perm:        permAuthAdmin,
	},
	{
		name: "role get",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthRoleGet != nil },
		apply: func(f *fsm, _ *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyRoleGet(r.AuthRoleGet))
		},
		newResponse: func() proto.Message { return &pb.AuthRoleGetResponse{} },
		perm:        permAuthSelf,
	},
	{
		name: "role list",
		is:   func(r *pb.InternalRaftRequest) bool { return r.AuthRoleList != nil },
		apply: func(f *fsm, _ *mvcc.WriteBatch, _ *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(f.auth.ApplyRoleList())
		},
		newResponse: func() proto.Message { return &pb.AuthRoleListResponse{} },
		perm:        permAuthAdmin,
	},
}

// authWrite is the kind of an auth management request that changes the
// auth store: root only.
func authWrite[Req, Resp proto.Message](name string, field func(*pb.InternalRaftRequest) Req, apply func(*auth.Store, auth.AuxWriter, Req) (Resp, error)) kind {
	var zero Resp
	respType := zero.ProtoReflect().Type()
	return kind{
		name: name,
		is:   func(r *pb.InternalRaftRequest) bool { return field(r).ProtoReflect().IsValid() },
		apply: func(f *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
			return answer(apply(f.auth, w, field(r)))
		},
		newResponse: func() proto.Message { return respType.New().Interface() },
		perm:        permAuthAdmin,
	}
}

// answer adapts a response and error to kind.apply's results.
func answer[Resp proto.Message](resp Resp, err error) (proto.Message, <-chan struct{}, error) {
	if err != nil {
		return nil, nil, err
	}
	return resp, nil, nil
}

// respond adapts a WriteBatch method of one request type to kind.apply.
func respond[Req any, Resp proto.Message](apply func(*mvcc.WriteBatch, Req) (Resp, error), field func(*pb.InternalRaftRequest) Req) func(*fsm, *mvcc.WriteBatch, *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
	return func(_ *fsm, w *mvcc.WriteBatch, r *pb.InternalRaftRequest) (proto.Message, <-chan struct{}, error) {
		resp, err := apply(w, field(r))
		if err != nil {
			return nil, nil, err
		}
		return resp, nil, nil
	}
}

// kindOf returns the kind of r. A request with no known field set (a kind
// this member does not know, from a newer member) or with several fails
// with ErrUnsupportedRequest.
func kindOf(r *pb.InternalRaftRequest) (*kind, error) {
	var found *kind
	for i := range kinds {
		if kinds[i].is(r) {
			if found != nil {
				return nil, fmt.Errorf("%w: both %s and %s", ErrUnsupportedRequest, found.name, kinds[i].name)
			}
			found = &kinds[i]
		}
	}
	if found == nil {
		return nil, ErrUnsupportedRequest
	}
	return found, nil
}

// QuotaCost returns what req costs against the space quota, as etcd counts
// it (0 for a request that adds no data, or one of an unknown kind).
func QuotaCost(req *pb.InternalRaftRequest) int {
	k, err := kindOf(req)
	if err != nil || k.cost == nil {
		return 0
	}
	return k.cost(req)
}

func costPut(r *pb.PutRequest) int { return CostKVOverhead + len(r.GetKey()) + len(r.GetValue()) }

// costTxn is the cost of the costlier branch.
func costTxn(r *pb.TxnRequest) int {
	cost := func(ops []*pb.RequestOp) int {
		n := 0
		for _, u := range ops {
			if p := u.GetRequestPut(); p != nil {
				n += costPut(p)
			} else if t := u.GetRequestTxn(); t != nil {
				n += costTxn(t)
			}
		}
		return n
	}
	return max(cost(r.GetSuccess()), cost(r.GetFailure()))
}
