package replication

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/mvcc"
)

// authorize checks, while auth is enabled, that the user a request names
// may make it, as etcd's auth applier does when it applies a request: the
// header carries the user and the auth revision the member that took the
// request from the client saw (so a forwarded request is checked with its
// caller's identity, on every member alike), and a revision older than the
// store's fails with auth.ErrAuthOldRevision for key checks. A request
// without a header is a member's own (lease expiry, checkpoints, member
// attributes): the server gives every client request one.
func (f *fsm) authorize(w *mvcc.WriteBatch, k *kind, r *pb.InternalRaftRequest) error {
	if r.Header == nil || !f.auth.Enabled() {
		return nil
	}
	ai := &auth.AuthInfo{Username: r.Header.Username, Revision: r.Header.AuthRevision}
	as := f.auth
	switch k.perm {
	case permKeys:
		switch {
		case r.Put != nil:
			return checkPut(as, ai, w, r.Put)
		case r.DeleteRange != nil:
			d := r.DeleteRange
			if err := as.IsDeleteRangePermitted(ai, d.Key, d.RangeEnd); err != nil {
				return err
			}
			if d.PrevKv {
				return as.IsRangePermitted(ai, d.Key, d.RangeEnd)
			}
			return nil
		case r.Txn != nil:
			return CheckTxn(as, ai, w.LeaseKeys, r.Txn)
		case r.Range != nil:
			return as.IsRangePermitted(ai, r.Range.Key, r.Range.RangeEnd)
		}
	case permLease:
		if r.LeaseRevoke != nil {
			return checkLeaseKeys(as, ai, w.LeaseKeys, r.LeaseRevoke.ID)
		}
	case permAuthAdmin:
		return as.IsAdminPermitted(ai)
	case permAuthSelf:
		err := as.IsAdminPermitted(ai)
		switch {
		case err == nil:
		case r.AuthUserGet != nil && r.AuthUserGet.Name == ai.Username:
		case r.AuthRoleGet != nil && as.HasRole(ai.Username, r.AuthRoleGet.Role):
		default:
			return err
		}
	}
	return nil
}

// CheckTxn checks a txn as etcd does: read access to every compared range,
// then every operation of both branches, nested txns too. leaseKeys
// returns the keys attached to a lease (a put that attaches a lease needs
// write access to them).
func CheckTxn(as *auth.Store, ai *auth.AuthInfo, leaseKeys func(int64) []string, t *pb.TxnRequest) error {
	for _, c := range t.Compare {
		if err := as.IsRangePermitted(ai, c.Key, c.RangeEnd); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			var err error
			switch {
			case op.GetRequestRange() != nil:
				rr := op.GetRequestRange()
				err = as.IsRangePermitted(ai, rr.Key, rr.RangeEnd)
			case op.GetRequestPut() != nil:
				err = checkPutKeys(as, ai, leaseKeys, op.GetRequestPut())
			case op.GetRequestDeleteRange() != nil:
				err = checkDelete(as, ai, op.GetRequestDeleteRange())
			case op.GetRequestTxn() != nil:
				err = CheckTxn(as, ai, leaseKeys, op.GetRequestTxn())
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func checkPut(as *auth.Store, ai *auth.AuthInfo, w *mvcc.WriteBatch, p *pb.PutRequest) error {
	return checkPutKeys(as, ai, w.LeaseKeys, p)
}

// checkPutKeys: write access to the key and to the keys already attached
// to the lease it attaches, and read access for prev_kv.
func checkPutKeys(as *auth.Store, ai *auth.AuthInfo, leaseKeys func(int64) []string, p *pb.PutRequest) error {
	if err := as.IsPutPermitted(ai, p.Key); err != nil {
		return err
	}
	if p.Lease != 0 {
		if err := checkLeaseKeys(as, ai, leaseKeys, p.Lease); err != nil {
			return err
		}
	}
	if p.PrevKv {
		return as.IsRangePermitted(ai, p.Key, nil)
	}
	return nil
}

// checkDelete, for a txn's delete: read access for prev_kv first, then
// write access, in etcd's order.
func checkDelete(as *auth.Store, ai *auth.AuthInfo, d *pb.DeleteRangeRequest) error {
	if d.PrevKv {
		if err := as.IsRangePermitted(ai, d.Key, d.RangeEnd); err != nil {
			return err
		}
	}
	return as.IsDeleteRangePermitted(ai, d.Key, d.RangeEnd)
}

// checkLeaseKeys: root, or write access to every key attached to the
// lease.
func checkLeaseKeys(as *auth.Store, ai *auth.AuthInfo, leaseKeys func(int64) []string, id int64) error {
	if as.IsAdminPermitted(ai) == nil {
		return nil
	}
	for _, k := range leaseKeys(id) {
		if err := as.IsPutPermitted(ai, []byte(k)); err != nil {
			return err
		}
	}
	return nil
}
