package mvcc

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// DefaultMaxTxnOps is etcd's default --max-txn-ops.
const DefaultMaxTxnOps = 128

// The Validate functions are the request checks etcd's gRPC layer makes
// before a request is proposed (server/etcdserver/api/v3rpc/key.go), with
// the same errors in the same order. The store's request methods assume
// requests passed them.

// ValidateRange checks a RangeRequest: a key is required and the sort
// options must be known values.
func ValidateRange(r *pb.RangeRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return ErrInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return ErrInvalidSortOption
	}
	return nil
}

// ValidatePut checks a PutRequest: a key is required, and ignore_value and
// ignore_lease exclude a value and a lease.
func ValidatePut(r *pb.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrEmptyKey
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return ErrValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return ErrLeaseProvided
	}
	return nil
}

// ValidateDeleteRange checks a DeleteRangeRequest: a key is required.
func ValidateDeleteRange(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrEmptyKey
	}
	return nil
}

// ValidateTxn checks a TxnRequest with etcd's rules: no part of the txn
// holds more than maxOps operations, counted as max(len(compare),
// len(success), len(failure)) with nested txns getting what is left
// (maxOps <= 0 means DefaultMaxTxnOps); every compare and request has a
// key; no empty op; and neither branch writes a key twice (a put on a key
// another put or a delete of the branch, nested txns included, touches).
func ValidateTxn(r *pb.TxnRequest, maxOps int) error {
	if maxOps <= 0 {
		maxOps = DefaultMaxTxnOps
	}
	if err := checkTxnRequest(r, maxOps); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.GetSuccess()); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.GetFailure()); err != nil {
		return err
	}
	return nil
}

func checkTxnRequest(r *pb.TxnRequest, maxOps int) error {
	opc := max(len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure()))
	if opc > maxOps {
		return ErrTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return ErrEmptyKey
		}
	}
	for _, u := range r.GetSuccess() {
		if err := checkRequestOp(u, maxOps-opc); err != nil {
			return err
		}
	}
	for _, u := range r.GetFailure() {
		if err := checkRequestOp(u, maxOps-opc); err != nil {
			return err
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxOps int) error {
	switch uv := u.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return ValidateRange(uv.RequestRange)
	case *pb.RequestOp_RequestPut:
		return ValidatePut(uv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return ValidateDeleteRange(uv.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(uv.RequestTxn, maxOps)
	}
	return ErrKeyNotFound // etcd's answer to an empty op
}

// interval is a key range [begin, end) of a delete; an inverted or empty
// one (such as a range_end of "\x00", which etcd's interval tree stores
// as given) contains nothing, as in etcd.
type interval struct{ begin, end string }

func (iv interval) contains(k string) bool { return iv.begin <= k && k < iv.end }

type intervals []interval

func (ivs intervals) contain(k string) bool {
	for _, iv := range ivs {
		if iv.contains(k) {
			return true
		}
	}
	return false
}

// checkIntervals is etcd's check that puts and deletes of one branch do
// not overlap; it returns the branch's puts and deletes for the check of
// the enclosing level. A put in the then-branch of a nested txn may repeat
// a put of its else-branch, since only one of them runs.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, intervals, error) {
	var dels intervals
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestDeleteRange)
		if !ok || tv.RequestDeleteRange == nil {
			continue
		}
		d := tv.RequestDeleteRange
		if len(d.GetRangeEnd()) != 0 {
			dels = append(dels, interval{string(d.GetKey()), string(d.GetRangeEnd())})
		} else {
			dels = append(dels, interval{string(d.GetKey()), string(d.GetKey()) + "\x00"})
		}
	}

	puts := make(map[string]struct{})
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		putsThen, delsThen, err := checkIntervals(tv.RequestTxn.GetSuccess())
		if err != nil {
			return nil, dels, err
		}
		putsElse, delsElse, err := checkIntervals(tv.RequestTxn.GetFailure())
		if err != nil {
			return nil, dels, err
		}
		for k := range putsThen {
			if _, ok := puts[k]; ok {
				return nil, dels, ErrDuplicateKey
			}
			if dels.contain(k) {
				return nil, dels, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, ok := puts[k]; ok {
				if _, isSafe := putsThen[k]; !isSafe {
					return nil, dels, ErrDuplicateKey
				}
			}
			if dels.contain(k) {
				return nil, dels, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}

	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		k := string(tv.RequestPut.GetKey())
		if _, ok := puts[k]; ok {
			return nil, dels, ErrDuplicateKey
		}
		if dels.contain(k) {
			return nil, dels, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
