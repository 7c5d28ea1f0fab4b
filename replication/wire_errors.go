package replication

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication/peerpb"
)

// wireErrors are the errors that keep their identity across members: the
// peer service sends an error's code with its text, and the receiver
// rebuilds an error that wraps the same sentinel. Every sentinel a caller
// of Node may test with errors.Is belongs here.
var wireErrors = []struct {
	code peerpb.ErrorCode
	err  error
}{
	{peerpb.ErrorCode_NOT_LEADER, ErrNotLeader},
	{peerpb.ErrorCode_NO_LEADER, ErrNoLeader},
	{peerpb.ErrorCode_LEADER_CHANGED, ErrLeaderChanged},
	{peerpb.ErrorCode_NOT_READY, ErrNotReady},
	{peerpb.ErrorCode_STOPPED, ErrStopped},
	{peerpb.ErrorCode_UNSUPPORTED_REQUEST, ErrUnsupportedRequest},
	{peerpb.ErrorCode_NO_SPACE, ErrNoSpace},
	{peerpb.ErrorCode_REMOVED, ErrRemoved},
	{peerpb.ErrorCode_MEMBER_EXISTS, ErrMemberExists},
	{peerpb.ErrorCode_MEMBER_NOT_FOUND, ErrMemberNotFound},
	{peerpb.ErrorCode_NOT_LEARNER, ErrNotLearner},
	{peerpb.ErrorCode_LEARNER_NOT_READY, ErrLearnerNotReady},
	{peerpb.ErrorCode_DEADLINE_EXCEEDED, context.DeadlineExceeded},
	{peerpb.ErrorCode_CANCELED, context.Canceled},
	{peerpb.ErrorCode_CORRUPT_ENTRY, ErrCorruptEntry},
	{peerpb.ErrorCode_CORRUPT_CLUSTER, ErrCorruptCluster},
	{peerpb.ErrorCode_COMPACTED, mvcc.ErrCompacted},
	{peerpb.ErrorCode_FUTURE_REV, mvcc.ErrFutureRev},
	{peerpb.ErrorCode_KEY_NOT_FOUND, mvcc.ErrKeyNotFound},
	{peerpb.ErrorCode_LEASE_NOT_FOUND, mvcc.ErrLeaseNotFound},
	{peerpb.ErrorCode_EMPTY_KEY, mvcc.ErrEmptyKey},
	{peerpb.ErrorCode_VALUE_PROVIDED, mvcc.ErrValueProvided},
	{peerpb.ErrorCode_LEASE_PROVIDED, mvcc.ErrLeaseProvided},
	{peerpb.ErrorCode_TOO_MANY_OPS, mvcc.ErrTooManyOps},
	{peerpb.ErrorCode_DUPLICATE_KEY, mvcc.ErrDuplicateKey},
	{peerpb.ErrorCode_INVALID_SORT_OPTION, mvcc.ErrInvalidSortOption},
	{peerpb.ErrorCode_LEASE_EXISTS, mvcc.ErrLeaseExists},
	{peerpb.ErrorCode_LEASE_TTL_TOO_LARGE, mvcc.ErrLeaseTTLTooLarge},
	{peerpb.ErrorCode_NOT_PRIMARY, mvcc.ErrNotPrimary},
	{peerpb.ErrorCode_STORE_CLOSED, mvcc.ErrClosed},
	{peerpb.ErrorCode_ENGINE_CLOSED, engine.ErrClosed},
	{peerpb.ErrorCode_AUTH_ROOT_USER_NOT_EXIST, auth.ErrRootUserNotExist},
	{peerpb.ErrorCode_AUTH_ROOT_ROLE_NOT_EXIST, auth.ErrRootRoleNotExist},
	{peerpb.ErrorCode_AUTH_USER_ALREADY_EXIST, auth.ErrUserAlreadyExist},
	{peerpb.ErrorCode_AUTH_USER_EMPTY, auth.ErrUserEmpty},
	{peerpb.ErrorCode_AUTH_USER_NOT_FOUND, auth.ErrUserNotFound},
	{peerpb.ErrorCode_AUTH_ROLE_ALREADY_EXIST, auth.ErrRoleAlreadyExist},
	{peerpb.ErrorCode_AUTH_ROLE_NOT_FOUND, auth.ErrRoleNotFound},
	{peerpb.ErrorCode_AUTH_ROLE_EMPTY, auth.ErrRoleEmpty},
	{peerpb.ErrorCode_AUTH_PERMISSION_NOT_GIVEN, auth.ErrPermissionNotGiven},
	{peerpb.ErrorCode_AUTH_FAILED, auth.ErrAuthFailed},
	{peerpb.ErrorCode_AUTH_NO_PASSWORD_USER, auth.ErrNoPasswordUser},
	{peerpb.ErrorCode_AUTH_PERMISSION_DENIED, auth.ErrPermissionDenied},
	{peerpb.ErrorCode_AUTH_ROLE_NOT_GRANTED, auth.ErrRoleNotGranted},
	{peerpb.ErrorCode_AUTH_PERMISSION_NOT_GRANTED, auth.ErrPermissionNotGranted},
	{peerpb.ErrorCode_AUTH_NOT_ENABLED, auth.ErrAuthNotEnabled},
	{peerpb.ErrorCode_AUTH_OLD_REVISION, auth.ErrAuthOldRevision},
	{peerpb.ErrorCode_AUTH_INVALID_TOKEN, auth.ErrInvalidAuthToken},
	{peerpb.ErrorCode_AUTH_INVALID_MGMT, auth.ErrInvalidAuthMgmt},
	{peerpb.ErrorCode_AUTH_VERIFY_ONLY, auth.ErrVerifyOnly},
}

// toWire describes err for a peer: the code of the first sentinel it
// wraps (UNKNOWN for none) and its text.
func toWire(err error) *peerpb.Error {
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return &peerpb.Error{Code: w.code, Message: err.Error()}
		}
	}
	return &peerpb.Error{Code: peerpb.ErrorCode_UNKNOWN, Message: err.Error()}
}

// fromWire rebuilds an error a peer described: it has the peer's text and
// wraps the sentinel of its code. A code this member does not know (from
// a newer member) gives a plain error with the text.
func fromWire(e *peerpb.Error) error {
	for _, w := range wireErrors {
		if w.code == e.GetCode() {
			return &peerError{msg: e.GetMessage(), sentinel: w.err}
		}
	}
	return &peerError{msg: e.GetMessage()}
}

// peerError is an error that happened on another member.
type peerError struct {
	msg      string
	sentinel error
}

func (e *peerError) Error() string { return e.msg }
func (e *peerError) Unwrap() error { return e.sentinel }

// statusOf returns the gRPC status the peer service answers err with: a
// code for the transport, and the Error detail that carries its identity.
func statusOf(err error) error {
	w := toWire(err)
	code := codes.Unknown
	switch w.Code {
	case peerpb.ErrorCode_NOT_LEADER, peerpb.ErrorCode_NO_LEADER, peerpb.ErrorCode_LEADER_CHANGED,
		peerpb.ErrorCode_NOT_READY, peerpb.ErrorCode_STOPPED:
		code = codes.Unavailable
	case peerpb.ErrorCode_DEADLINE_EXCEEDED:
		code = codes.DeadlineExceeded
	case peerpb.ErrorCode_CANCELED:
		code = codes.Canceled
	case peerpb.ErrorCode_UNSUPPORTED_REQUEST:
		code = codes.Unimplemented
	case peerpb.ErrorCode_UNKNOWN:
	default:
		code = codes.FailedPrecondition
	}
	st, derr := status.New(code, w.Message).WithDetails(w)
	if derr != nil {
		return status.Error(code, w.Message)
	}
	return st.Err()
}

// errorOf turns what a peer-service call returned into the error the
// caller sees: the peer's own error when the status carries one. Without
// one, the call did not reach the peer's service: unknown to an older
// member (ErrUnsupportedRequest), or the connection failed, which
// transport (ErrNoLeader or ErrLeaderChanged, by whether the request may
// have been served) wraps.
func errorOf(err error, transport error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return errors.Join(transport, err)
	}
	for _, d := range st.Details() {
		if e, ok := d.(*peerpb.Error); ok {
			return fromWire(e)
		}
	}
	switch st.Code() {
	case codes.Unimplemented:
		return &peerError{msg: st.Message(), sentinel: ErrUnsupportedRequest}
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	return &peerError{msg: transport.Error() + ": " + st.Message(), sentinel: transport}
}
