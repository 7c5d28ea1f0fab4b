package mvcc

import (
	"bytes"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// This file implements the request semantics of etcd v3.7.3
// (server/etcdserver/txn and server/storage/mvcc/kvstore_txn.go): what a
// Range, Put, DeleteRange and Txn return and which revision they produce.
// Deviations are marked "etcd:".

// txnCtx executes one request. Its reads see rev0 plus the request's own
// writes; its writes go to the WriteBatch w (nil for a read-only view).
type txnCtx struct {
	*reader
	w       *WriteBatch
	changes int64 // changes made by this request so far
	// leaseMark is the position of the batch's lease journal when the
	// request began.
	leaseMark int
}

// rangeRev is the revision reads of the request see: rev0, or the
// request's own revision once it has written.
func (t *txnCtx) rangeRev() int64 {
	if t.changes > 0 {
		return t.rev0 + 1
	}
	return t.rev0
}

// rangeKV is the Range of etcd's TxnWrite/TxnRead.
func (t *txnCtx) rangeKV(key, end []byte, ro rangeOptions) (*rangeResult, error) {
	return t.rangeKeys(key, end, t.rangeRev(), ro)
}

// put writes key at the request's revision and returns that revision.
func (t *txnCtx) put(key, value []byte, lease int64) int64 {
	rev := revision{main: t.rev0 + 1, sub: t.changes}
	created, ver := t.idx.put(key, rev)
	t.w.addPut(key, rev, created, ver, value, lease)
	t.w.setKeyLease(key, lease)
	t.changes++
	return rev.main
}

// deleteRange tombstones every live key of the range and returns their
// number and the revision of the response header.
func (t *txnCtx) deleteRange(key, end []byte) (n, rev int64) {
	keys := t.idx.liveKeys(key, end, t.rangeRev())
	for _, k := range keys {
		rev := revision{main: t.rev0 + 1, sub: t.changes}
		if !t.idx.tombstone(k, rev) {
			// Cannot happen: k is live and only this writer changes keys.
			panic("mvcc: tombstone of a key that is not live: " + string(k))
		}
		t.w.addTombstone(k, rev)
		t.w.setKeyLease(k, 0)
		t.changes++
	}
	n = int64(len(keys))
	if n != 0 || t.changes > 0 {
		return n, t.rev0 + 1
	}
	return 0, t.rev0
}

// mkGteRange maps a range_end of "\x00" to the empty end that means "every
// key >= key". An empty range_end means the single key, as on the wire.
func mkGteRange(rangeEnd []byte) []byte {
	if len(rangeEnd) == 1 && rangeEnd[0] == 0 {
		return []byte{}
	}
	if len(rangeEnd) == 0 {
		return nil
	}
	return rangeEnd
}

// executeRange serves a RangeRequest.
func (t *txnCtx) executeRange(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	ro := rangeOptions{
		limit:        rangeLimit(r),
		rev:          r.GetRevision(),
		countOnly:    r.GetCountOnly(),
		fastKeysOnly: r.GetKeysOnly() && r.GetSortTarget() != pb.RangeRequest_VALUE,
		withTotal:    true,
	}
	rr, err := t.rangeKV(r.GetKey(), mkGteRange(r.GetRangeEnd()), ro)
	if err != nil {
		return nil, err
	}
	filterRangeResults(rr, r)
	sortRangeResults(rr, r)

	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rr.rev}, Count: int64(rr.count)}
	if r.GetLimit() > 0 && len(rr.kvs) > int(r.GetLimit()) {
		rr.kvs = rr.kvs[:r.GetLimit()]
		resp.More = true
	}
	if r.GetKeysOnly() {
		for _, kv := range rr.kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = rr.kvs
	return resp, nil
}

// rangeLimit is the limit asked of the index: none when the results are
// sorted or filtered afterwards, else one more than asked to learn "more".
func rangeLimit(r *pb.RangeRequest) int64 {
	limit := r.GetLimit()
	if !isDefaultOrdering(r.GetSortTarget(), r.GetSortOrder()) || hasRevisionFilters(r) {
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++
	}
	return limit
}

func isDefaultOrdering(target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) bool {
	return order == pb.RangeRequest_NONE || (target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND)
}

func hasRevisionFilters(r *pb.RangeRequest) bool {
	return r.GetMinModRevision() != 0 || r.GetMaxModRevision() != 0 ||
		r.GetMinCreateRevision() != 0 || r.GetMaxCreateRevision() != 0
}

func filterRangeResults(rr *rangeResult, r *pb.RangeRequest) {
	if v := r.GetMaxModRevision(); v != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision > v })
	}
	if v := r.GetMinModRevision(); v != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision < v })
	}
	if v := r.GetMaxCreateRevision(); v != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision > v })
	}
	if v := r.GetMinCreateRevision(); v != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision < v })
	}
}

func pruneKVs(rr *rangeResult, prune func(*mvccpb.KeyValue) bool) {
	j := 0
	for _, kv := range rr.kvs {
		if !prune(kv) {
			rr.kvs[j] = kv
			j++
		}
	}
	clear(rr.kvs[j:])
	rr.kvs = rr.kvs[:j]
}

// sortRangeResults sorts like etcd: sort order NONE with a target other
// than KEY means ASCEND, and the sort is sort.Sort (not stable), so that ties
// come out in the same order as etcd's.
func sortRangeResults(rr *rangeResult, r *pb.RangeRequest) {
	order := r.GetSortOrder()
	target := r.GetSortTarget()
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if isDefaultOrdering(target, order) {
		return
	}
	var sorter sort.Interface
	switch target {
	case pb.RangeRequest_KEY:
		sorter = kvSortByKey{rr.kvs}
	case pb.RangeRequest_VERSION:
		sorter = kvSortByVersion{rr.kvs}
	case pb.RangeRequest_CREATE:
		sorter = kvSortByCreate{rr.kvs}
	case pb.RangeRequest_MOD:
		sorter = kvSortByMod{rr.kvs}
	case pb.RangeRequest_VALUE:
		sorter = kvSortByValue{rr.kvs}
	default:
		return // rejected by ValidateRange (etcd panics)
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(sorter)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(sorter))
	}
}

type kvSort []*mvccpb.KeyValue

func (s kvSort) Len() int      { return len(s) }
func (s kvSort) Swap(i, j int) { s[i], s[j] = s[j], s[i] }

type kvSortByKey struct{ kvSort }

func (s kvSortByKey) Less(i, j int) bool { return bytes.Compare(s.kvSort[i].Key, s.kvSort[j].Key) < 0 }

type kvSortByVersion struct{ kvSort }

func (s kvSortByVersion) Less(i, j int) bool { return s.kvSort[i].Version-s.kvSort[j].Version < 0 }

type kvSortByCreate struct{ kvSort }

func (s kvSortByCreate) Less(i, j int) bool {
	return s.kvSort[i].CreateRevision-s.kvSort[j].CreateRevision < 0
}

type kvSortByMod struct{ kvSort }

func (s kvSortByMod) Less(i, j int) bool { return s.kvSort[i].ModRevision-s.kvSort[j].ModRevision < 0 }

type kvSortByValue struct{ kvSort }

func (s kvSortByValue) Less(i, j int) bool {
	return bytes.Compare(s.kvSort[i].Value, s.kvSort[j].Value) < 0
}

// checkLease fails a put naming an unknown lease.
func (t *txnCtx) checkLease(p *pb.PutRequest) error {
	if id := p.GetLease(); id != 0 && t.w != nil && !t.w.leaseExists(id) {
		return ErrLeaseNotFound
	}
	return nil
}

// getPrevKV reads the key of a put if one of its flags needs it.
func (t *txnCtx) getPrevKV(p *pb.PutRequest) (*rangeResult, error) {
	if p.GetIgnoreValue() || p.GetIgnoreLease() || p.GetPrevKv() {
		return t.rangeKV(p.GetKey(), nil, rangeOptions{})
	}
	return nil, nil
}

// checkAndGetPrevKV is getPrevKV plus the ignore_value/ignore_lease check.
func (t *txnCtx) checkAndGetPrevKV(p *pb.PutRequest) (*rangeResult, error) {
	prev, err := t.getPrevKV(p)
	if err != nil {
		return nil, err
	}
	if (p.GetIgnoreValue() || p.GetIgnoreLease()) && (prev == nil || len(prev.kvs) == 0) {
		return nil, ErrKeyNotFound
	}
	return prev, nil
}

// executePut applies a put given the key's previous state.
func (t *txnCtx) executePut(p *pb.PutRequest, prev *rangeResult) (*pb.PutResponse, error) {
	val, lease := p.GetValue(), p.GetLease()
	if p.GetIgnoreValue() || p.GetIgnoreLease() {
		if prev == nil || len(prev.kvs) == 0 {
			// etcd: panics (index out of range). Reached only when an
			// earlier op of the same txn deleted the key, through a
			// delete range that ValidateTxn lets pass (range_end "\x00").
			return nil, ErrKeyNotFound
		}
		if p.GetIgnoreValue() {
			val = prev.kvs[0].Value
		}
		if p.GetIgnoreLease() {
			lease = prev.kvs[0].Lease
		}
	}
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	if p.GetPrevKv() && prev != nil && len(prev.kvs) != 0 {
		resp.PrevKv = prev.kvs[0]
	}
	resp.Header.Revision = t.put(p.GetKey(), val, lease)
	return resp, nil
}

// executeDeleteRange serves a DeleteRangeRequest.
func (t *txnCtx) executeDeleteRange(dr *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	end := mkGteRange(dr.GetRangeEnd())
	if dr.GetPrevKv() {
		rr, err := t.rangeKV(dr.GetKey(), end, rangeOptions{})
		if err != nil {
			return nil, err
		}
		resp.PrevKvs = rr.kvs
	}
	resp.Deleted, resp.Header.Revision = t.deleteRange(dr.GetKey(), end)
	return resp, nil
}

// IsTxnReadOnly reports whether every operation in both branches of r is
// a range (nested txns count as writes, as in etcd).
func IsTxnReadOnly(r *pb.TxnRequest) bool {
	for _, u := range r.GetSuccess() {
		if u.GetRequestRange() == nil {
			return false
		}
	}
	for _, u := range r.GetFailure() {
		if u.GetRequestRange() == nil {
			return false
		}
	}
	return true
}

// txn serves a TxnRequest: the compares of the txn and of every nested txn
// on the taken path are evaluated first, against the state before the
// txn; then the requests of the path are checked (revisions, leases,
// ignore flags) against that same state, and only then executed in order.
func (t *txnCtx) txn(rt *pb.TxnRequest) (*pb.TxnResponse, error) {
	path, err := t.compareToPath(rt)
	if err != nil {
		return nil, err
	}
	if _, err := t.checkTxn(rt, path); err != nil {
		return nil, err
	}
	resp, _ := newTxnResp(rt, path)
	if _, err := t.executeTxn(rt, path, resp); err != nil {
		return nil, err
	}
	resp.Header.Revision = t.rangeRev()
	return resp, nil
}

func branch(rt *pb.TxnRequest, succeeded bool) []*pb.RequestOp {
	if succeeded {
		return rt.GetSuccess()
	}
	return rt.GetFailure()
}

// newTxnResp allocates the response tree of the path.
func newTxnResp(rt *pb.TxnRequest, path []bool) (resp *pb.TxnResponse, txnCount int) {
	reqs := branch(rt, path[0])
	resps := make([]*pb.ResponseOp, len(reqs))
	resp = &pb.TxnResponse{Responses: resps, Succeeded: path[0], Header: &pb.ResponseHeader{}}
	for i, req := range reqs {
		switch tv := req.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{}}
		case *pb.RequestOp_RequestPut:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{}}
		case *pb.RequestOp_RequestDeleteRange:
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{}}
		case *pb.RequestOp_RequestTxn:
			sub, n := newTxnResp(tv.RequestTxn, path[1:])
			resps[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: sub}}
			path = path[1+n:]
			txnCount += n + 1
		default:
			// etcd: leaves a nil entry; ValidateTxn rejects empty ops.
			resps[i] = &pb.ResponseOp{}
		}
	}
	return resp, txnCount
}

func (t *txnCtx) executeTxn(rt *pb.TxnRequest, path []bool, tresp *pb.TxnResponse) (txns int, err error) {
	for i, req := range branch(rt, path[0]) {
		respi := tresp.Responses[i].Response
		switch tv := req.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			resp, err := t.executeRange(tv.RequestRange)
			if err != nil {
				return 0, err
			}
			respi.(*pb.ResponseOp_ResponseRange).ResponseRange = resp
		case *pb.RequestOp_RequestPut:
			prev, err := t.getPrevKV(tv.RequestPut)
			if err != nil {
				return 0, err
			}
			resp, err := t.executePut(tv.RequestPut, prev)
			if err != nil {
				return 0, err
			}
			respi.(*pb.ResponseOp_ResponsePut).ResponsePut = resp
		case *pb.RequestOp_RequestDeleteRange:
			resp, err := t.executeDeleteRange(tv.RequestDeleteRange)
			if err != nil {
				return 0, err
			}
			respi.(*pb.ResponseOp_ResponseDeleteRange).ResponseDeleteRange = resp
		case *pb.RequestOp_RequestTxn:
			sub := respi.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			n, err := t.executeTxn(tv.RequestTxn, path[1:], sub)
			if err != nil {
				return 0, err
			}
			txns += n + 1
			path = path[n+1:]
		}
	}
	return txns, nil
}

func (t *txnCtx) checkTxn(rt *pb.TxnRequest, path []bool) (int, error) {
	txnCount := 0
	for _, req := range branch(rt, path[0]) {
		var err error
		switch tv := req.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			err = t.checkRange(tv.RequestRange)
		case *pb.RequestOp_RequestPut:
			if err = t.checkLease(tv.RequestPut); err == nil {
				_, err = t.checkAndGetPrevKV(tv.RequestPut)
			}
		case *pb.RequestOp_RequestTxn:
			var n int
			n, err = t.checkTxn(tv.RequestTxn, path[1:])
			txnCount += n + 1
			path = path[n+1:]
		}
		if err != nil {
			return 0, err
		}
	}
	return txnCount, nil
}

// checkRange is etcd's check of a range inside a txn. Note that, unlike a
// plain Range, a negative revision below the compact revision fails.
func (t *txnCtx) checkRange(r *pb.RangeRequest) error {
	switch rev := r.GetRevision(); {
	case rev == 0:
		return nil
	case rev > t.rev0:
		return ErrFutureRev
	case rev < t.compactRev:
		return ErrCompacted
	}
	return nil
}

// compareToPath evaluates the compares of rt and of the nested txns on the
// taken path, depth first.
func (t *txnCtx) compareToPath(rt *pb.TxnRequest) ([]bool, error) {
	ok, err := t.applyCompares(rt.GetCompare())
	if err != nil {
		return nil, err
	}
	path := []bool{ok}
	for _, op := range branch(rt, ok) {
		tv, isTxn := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !isTxn {
			continue // a nil RequestTxn is an empty txn, here as everywhere
		}
		sub, err := t.compareToPath(tv.RequestTxn)
		if err != nil {
			return nil, err
		}
		path = append(path, sub...)
	}
	return path, nil
}

func (t *txnCtx) applyCompares(cmps []*pb.Compare) (bool, error) {
	for _, c := range cmps {
		ok, err := t.applyCompare(c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// applyCompare evaluates one compare. Every key of its range must satisfy
// it; a missing key compares as a zero KeyValue, except that a VALUE compare
// on a missing key always fails.
func (t *txnCtx) applyCompare(c *pb.Compare) (bool, error) {
	key, end := c.GetKey(), mkGteRange(c.GetRangeEnd())
	rev := t.rangeRev()
	if rev < t.compactRev {
		return false, nil // etcd: the range fails, so the compare does
	}
	var kvs []*mvccpb.KeyValue
	if c.GetTarget() == pb.Compare_VALUE || c.GetTarget() == pb.Compare_LEASE {
		rr, err := t.rangeKV(key, end, rangeOptions{})
		if err != nil {
			return false, err
		}
		kvs = rr.kvs
	} else {
		// The revisions and versions are in the index: no value read.
		ents, _ := t.idx.rangeEntries(key, end, rev, 0, false)
		kvs = make([]*mvccpb.KeyValue, len(ents))
		for i := range ents {
			e := &ents[i]
			kvs[i] = &mvccpb.KeyValue{Key: e.key, CreateRevision: e.created.main, ModRevision: e.modified.main, Version: e.ver}
		}
	}
	if len(kvs) == 0 {
		if c.GetTarget() == pb.Compare_VALUE {
			return false, nil
		}
		return compareKV(c, &mvccpb.KeyValue{}), nil
	}
	for _, kv := range kvs {
		if !compareKV(c, kv) {
			return false, nil
		}
	}
	return true, nil
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		result = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_CREATE:
		result = compareInt64(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		result = compareInt64(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		result = compareInt64(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		result = compareInt64(kv.Lease, c.GetLease())
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}
