package server

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// grpcErrors maps Strata's errors to etcd's gRPC errors, which carry the
// exact code and text clientv3 turns back into its own errors. The first
// match (errors.Is) wins.
var grpcErrors = []struct {
	err  error
	grpc error
}{
	// Request errors.
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{mvcc.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{mvcc.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{mvcc.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{mvcc.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{mvcc.ErrInvalidSortOption, rpctypes.ErrGRPCInvalidSortOption},
	{mvcc.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{mvcc.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{mvcc.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{replication.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{replication.ErrCorruptCluster, rpctypes.ErrGRPCCorrupt},
	{engine.ErrCorrupt, rpctypes.ErrGRPCCorrupt},
	{mvcc.ErrCorrupt, rpctypes.ErrGRPCCorrupt},

	// Auth errors (etcd's v3rpc table; ErrNoPasswordUser has no gRPC
	// error there and goes out as Unknown with its text, as in etcd).
	{auth.ErrRootUserNotExist, rpctypes.ErrGRPCRootUserNotExist},
	{auth.ErrRootRoleNotExist, rpctypes.ErrGRPCRootRoleNotExist},
	{auth.ErrUserAlreadyExist, rpctypes.ErrGRPCUserAlreadyExist},
	{auth.ErrUserEmpty, rpctypes.ErrGRPCUserEmpty},
	{auth.ErrUserNotFound, rpctypes.ErrGRPCUserNotFound},
	{auth.ErrRoleAlreadyExist, rpctypes.ErrGRPCRoleAlreadyExist},
	{auth.ErrRoleNotFound, rpctypes.ErrGRPCRoleNotFound},
	{auth.ErrRoleEmpty, rpctypes.ErrGRPCRoleEmpty},
	{auth.ErrAuthFailed, rpctypes.ErrGRPCAuthFailed},
	{auth.ErrPermissionNotGiven, rpctypes.ErrGRPCPermissionNotGiven},
	{auth.ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
	{auth.ErrRoleNotGranted, rpctypes.ErrGRPCRoleNotGranted},
	{auth.ErrPermissionNotGranted, rpctypes.ErrGRPCPermissionNotGranted},
	{auth.ErrAuthNotEnabled, rpctypes.ErrGRPCAuthNotEnabled},
	{auth.ErrInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken},
	{auth.ErrInvalidAuthMgmt, rpctypes.ErrGRPCInvalidAuthMgmt},
	{auth.ErrAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision},

	// Node errors. A client never sees "not leader": any member takes
	// requests, so a node that could not reach a leader answers
	// Unavailable, which clients retry elsewhere.
	{replication.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{replication.ErrNotLeader, rpctypes.ErrGRPCNoLeader},
	{replication.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{replication.ErrNotReady, rpctypes.ErrGRPCTimeout},
	{replication.ErrStopped, rpctypes.ErrGRPCStopped},
	{replication.ErrRemoved, rpctypes.ErrGRPCStopped},
	{mvcc.ErrClosed, rpctypes.ErrGRPCStopped},
	{engine.ErrClosed, rpctypes.ErrGRPCStopped},
	{replication.ErrUnsupportedRequest, status.Error(codes.Unimplemented, "etcdserver: request not supported by this server yet")},

	// Membership errors.
	{replication.ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{replication.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{replication.ErrNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{replication.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
}

// togRPCError is the one translation of errors into gRPC errors at the
// boundary. Errors that already are gRPC status errors pass unchanged, and
// so do context errors, which gRPC turns into Canceled and
// DeadlineExceeded (as etcd's togRPCError does). Unknown errors become
// codes.Unknown with their text.
func togRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	for _, e := range grpcErrors {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

// proposeError translates a node error of a proposal as etcd does: when
// the proposal's own deadline (the request timeout) fired, or the client
// gave up, the outcome is unknown; etcd answers "request timed out" and
// "request canceled".
func proposeError(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	}
	return togRPCError(err)
}

// readError translates the error of a read. A read that timed out on the
// server's own request timeout, while the client still waits, answers
// "request timed out"; the client's own cancellation or deadline passes
// through.
func readError(clientCtx context.Context, err error) error {
	if clientCtx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return rpctypes.ErrGRPCTimeout
	}
	return togRPCError(err)
}
