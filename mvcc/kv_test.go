package mvcc

import (
	"context"
	"errors"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Request builders.

func putReq(k, v string) *pb.PutRequest { return &pb.PutRequest{Key: []byte(k), Value: []byte(v)} }

func rangeReq(k, end string) *pb.RangeRequest {
	r := &pb.RangeRequest{Key: []byte(k)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return r
}

func delReq(k, end string) *pb.DeleteRangeRequest {
	r := &pb.DeleteRangeRequest{Key: []byte(k)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return r
}

func opPut(k, v string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: putReq(k, v)}}
}

func opRange(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: rangeReq(k, end)}}
}

func opDel(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: delReq(k, end)}}
}

func opTxn(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func mustPut(t *testing.T, s *Store, k, v string) int64 {
	t.Helper()
	resp, err := s.Put(putReq(k, v))
	if err != nil {
		t.Fatalf("put %q: %v", k, err)
	}
	return resp.Header.Revision
}

func mustRange(t *testing.T, s *Store, r *pb.RangeRequest) *pb.RangeResponse {
	t.Helper()
	resp, err := s.Range(context.Background(), r)
	if err != nil {
		t.Fatalf("range %v: %v", r, err)
	}
	return resp
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	var ks []string
	for _, kv := range kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

func get(t *testing.T, s *Store, k string) *mvccpb.KeyValue {
	t.Helper()
	resp := mustRange(t, s, rangeReq(k, ""))
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func TestRevisions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		if s.Rev() != 1 || s.CompactRev() != -1 || s.AppliedIndex() != 0 {
			t.Fatalf("fresh store: rev %d compact %d applied %d, want 1 -1 0", s.Rev(), s.CompactRev(), s.AppliedIndex())
		}
		if rev := mustPut(t, s, "a", "1"); rev != 2 {
			t.Fatalf("first put at %d, want 2", rev)
		}
		// Nothing changed: no new revision.
		dr, err := s.DeleteRange(delReq("zz", ""))
		if err != nil || dr.Deleted != 0 || dr.Header.Revision != 2 {
			t.Fatalf("delete of a missing key: %v %v", dr, err)
		}
		tr, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", "")}})
		if err != nil || tr.Header.Revision != 2 || !tr.Succeeded {
			t.Fatalf("read-only txn: %v %v", tr, err)
		}
		tr, err = s.Txn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("x")}}},
			Success: []*pb.RequestOp{opPut("b", "1")},
		})
		if err != nil || tr.Header.Revision != 2 || tr.Succeeded {
			t.Fatalf("failed txn without failure ops: %v %v", tr, err)
		}
		if s.Rev() != 2 {
			t.Fatalf("rev %d after no-op requests, want 2", s.Rev())
		}
		// A txn takes one revision for all its writes; its ops' headers
		// show the revision as of each op.
		tr, err = s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", ""), opPut("b", "1"), opPut("c", "1"), opRange("a", ""), opDel("zz", "")}})
		if err != nil || tr.Header.Revision != 3 {
			t.Fatalf("txn: %v %v", tr, err)
		}
		hdrs := []int64{
			tr.Responses[0].GetResponseRange().Header.Revision,
			tr.Responses[1].GetResponsePut().Header.Revision,
			tr.Responses[3].GetResponseRange().Header.Revision,
			tr.Responses[4].GetResponseDeleteRange().Header.Revision,
		}
		if !slices.Equal(hdrs, []int64{2, 3, 3, 3}) {
			t.Fatalf("txn op headers %v, want [2 3 3 3]", hdrs)
		}
		b, c := get(t, s, "b"), get(t, s, "c")
		if b.ModRevision != 3 || c.ModRevision != 3 || b.CreateRevision != 3 || b.Version != 1 {
			t.Fatalf("txn writes: %v %v", b, c)
		}
		// create/mod/version through updates, deletes and re-creation.
		mustPut(t, s, "a", "2")
		if a := get(t, s, "a"); a.CreateRevision != 2 || a.ModRevision != 4 || a.Version != 2 {
			t.Fatalf("updated a: %v", a)
		}
		dr, err = s.DeleteRange(delReq("a", ""))
		if err != nil || dr.Deleted != 1 || dr.Header.Revision != 5 {
			t.Fatalf("delete a: %v %v", dr, err)
		}
		if a := get(t, s, "a"); a != nil {
			t.Fatalf("deleted a still there: %v", a)
		}
		mustPut(t, s, "a", "3")
		if a := get(t, s, "a"); a.CreateRevision != 6 || a.ModRevision != 6 || a.Version != 1 {
			t.Fatalf("re-created a: %v", a)
		}
		// Two puts of one key in a txn (allowed when not validated) take
		// sub-revisions of one revision.
		w, _ := s.NewWriteBatch()
		if _, err := w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("d", "1"), opPut("d", "2")}}); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(0); err != nil {
			t.Fatal(err)
		}
		if d := get(t, s, "d"); d.Version != 2 || d.ModRevision != 7 || string(d.Value) != "2" {
			t.Fatalf("double put: %v", d)
		}
		// Reads at older revisions.
		r := mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), Revision: 4})
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "2" || r.Header.Revision != 7 {
			t.Fatalf("a at 4: %v", r)
		}
		r = mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), Revision: 5})
		if len(r.Kvs) != 0 || r.Count != 0 {
			t.Fatalf("a at 5: %v", r)
		}
		r = mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), Revision: -1})
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "3" {
			t.Fatalf("a at -1: %v", r)
		}
		if _, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("a"), Revision: 8}); !errors.Is(err, ErrFutureRev) {
			t.Fatalf("read at a future revision: %v", err)
		}
	})
}

// rangeFixture writes: a=va(rev 2, lease 1) ab=vab(3) abc=vz(4) b=vb(5)
// c=vc(6), then a=va2 (7, lease 1), and deletes d after putting it (8, 9).
func rangeFixture(t *testing.T, s *Store) {
	t.Helper()
	mustGrant(t, s, 1, 60)
	if _, err := s.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("va"), Lease: 1}); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"ab", "vab"}, {"abc", "vz"}, {"b", "vb"}, {"c", "vc"}} {
		mustPut(t, s, kv[0], kv[1])
	}
	if _, err := s.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("va2"), Lease: 1}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "d", "vd")
	if _, err := s.DeleteRange(delReq("d", "")); err != nil {
		t.Fatal(err)
	}
}

func TestRangeSemantics(t *testing.T) {
	type want struct {
		keys  []string
		more  bool
		count int64
	}
	cases := []struct {
		name string
		req  *pb.RangeRequest
		want want
	}{
		{"single key", rangeReq("ab", ""), want{[]string{"ab"}, false, 1}},
		{"missing key", rangeReq("aa", ""), want{nil, false, 0}},
		{"deleted key", rangeReq("d", ""), want{nil, false, 0}},
		{"prefix", rangeReq("a", "b"), want{[]string{"a", "ab", "abc"}, false, 3}},
		{"from key", rangeReq("ab", "\x00"), want{[]string{"ab", "abc", "b", "c"}, false, 4}},
		{"all keys", rangeReq("\x00", "\x00"), want{[]string{"a", "ab", "abc", "b", "c"}, false, 5}},
		{"end before key", rangeReq("c", "a"), want{nil, false, 0}},
		{"limit", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 2}, want{[]string{"a", "ab"}, true, 5}},
		{"limit equal to count", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 5}, want{[]string{"a", "ab", "abc", "b", "c"}, false, 5}},
		{"negative limit", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), Limit: -1}, want{[]string{"a", "ab", "abc"}, false, 3}},
		{"key descend", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), SortOrder: pb.RangeRequest_DESCEND}, want{[]string{"c", "b", "abc", "ab", "a"}, false, 5}},
		{"sort before limit", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), SortOrder: pb.RangeRequest_DESCEND, Limit: 2}, want{[]string{"c", "b"}, true, 5}},
		{"value ascend", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_ASCEND}, want{[]string{"a", "ab", "b", "c", "abc"}, false, 5}},
		{"order NONE with target MOD is ascend", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), SortTarget: pb.RangeRequest_MOD}, want{[]string{"ab", "abc", "b", "c", "a"}, false, 5}},
		{"create descend", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), SortTarget: pb.RangeRequest_CREATE, SortOrder: pb.RangeRequest_DESCEND}, want{[]string{"c", "b", "abc", "ab", "a"}, false, 5}},
		{"version descend limit 1", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), SortTarget: pb.RangeRequest_VERSION, SortOrder: pb.RangeRequest_DESCEND, Limit: 1}, want{[]string{"a"}, true, 5}},
		{"min mod filter, count unfiltered", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), MinModRevision: 5}, want{[]string{"a", "b", "c"}, false, 5}},
		{"max mod filter", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), MaxModRevision: 4}, want{[]string{"ab", "abc"}, false, 5}},
		{"create filters", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), MinCreateRevision: 3, MaxCreateRevision: 5}, want{[]string{"ab", "abc", "b"}, false, 5}},
		{"filter drops limit before filtering", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), MinModRevision: 5, Limit: 1}, want{[]string{"a"}, true, 5}},
		{"count only", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), CountOnly: true, Limit: 1}, want{nil, false, 5}},
		{"at revision", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Revision: 4}, want{[]string{"a", "ab", "abc"}, false, 3}},
		{"deleted key at old revision", &pb.RangeRequest{Key: []byte("d"), Revision: 8}, want{[]string{"d"}, false, 1}},
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		rangeFixture(t, s)
		for _, tc := range cases {
			if err := ValidateRange(tc.req); err != nil {
				t.Fatalf("%s: invalid: %v", tc.name, err)
			}
			resp := mustRange(t, s, tc.req)
			if got := keysOf(resp.Kvs); !slices.Equal(got, tc.want.keys) || resp.More != tc.want.more || resp.Count != tc.want.count {
				t.Errorf("%s: keys %q more %v count %d, want %q %v %d", tc.name, got, resp.More, resp.Count, tc.want.keys, tc.want.more, tc.want.count)
			}
			if resp.Header.Revision != s.Rev() {
				t.Errorf("%s: header revision %d, want the current %d", tc.name, resp.Header.Revision, s.Rev())
			}
		}
		// keys_only drops the value; served from the index, it drops the
		// lease too (etcd 3.7 behaviour), unless sorting by value.
		resp := mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), KeysOnly: true})
		if kv := resp.Kvs[0]; kv.Value != nil || kv.Lease != 0 || kv.Version != 2 || kv.ModRevision != 7 || kv.CreateRevision != 2 {
			t.Errorf("keys_only: %v", kv)
		}
		resp = mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), KeysOnly: true, SortTarget: pb.RangeRequest_VALUE})
		if kv := resp.Kvs[0]; kv.Value != nil || kv.Lease != 1 {
			t.Errorf("keys_only by value: %v", kv)
		}
		if kv := get(t, s, "a"); kv.Lease != 1 || string(kv.Value) != "va2" {
			t.Errorf("a: %v", kv)
		}
		// Compaction: below fails, at the compact revision works.
		if _, err := s.Compact(&pb.CompactionRequest{Revision: 5, Physical: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("a"), Revision: 4}); !errors.Is(err, ErrCompacted) {
			t.Errorf("read below the compact revision: %v", err)
		}
		resp = mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Revision: 5})
		if got := keysOf(resp.Kvs); !slices.Equal(got, []string{"a", "ab", "abc", "b"}) {
			t.Errorf("read at the compact revision: %q", got)
		}
		resp = mustRange(t, s, &pb.RangeRequest{Key: []byte("a"), Revision: -1})
		if len(resp.Kvs) != 1 {
			t.Errorf("read at -1 after compaction: %v", resp)
		}
	})
}

func TestPutAndDelete(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustGrant(t, s, 5, 60)
		mustGrant(t, s, 6, 60)
		for _, req := range []*pb.PutRequest{
			{Key: []byte("k"), IgnoreValue: true},
			{Key: []byte("k"), IgnoreLease: true},
		} {
			if _, err := s.Put(req); !errors.Is(err, ErrKeyNotFound) {
				t.Fatalf("%v on a missing key: %v", req, err)
			}
		}
		if _, err := s.Put(&pb.PutRequest{Key: []byte("k"), Lease: 7}); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("unknown lease: %v", err)
		}
		if s.Rev() != 1 {
			t.Fatalf("failed puts moved the revision to %d", s.Rev())
		}
		r, err := s.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v1"), Lease: 5, PrevKv: true})
		if err != nil || r.PrevKv != nil || r.Header.Revision != 2 {
			t.Fatalf("put: %v %v", r, err)
		}
		r, err = s.Put(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 6, PrevKv: true})
		if err != nil || string(r.PrevKv.GetValue()) != "v1" || r.PrevKv.Lease != 5 {
			t.Fatalf("put ignore_value: %v %v", r, err)
		}
		if kv := get(t, s, "k"); string(kv.Value) != "v1" || kv.Lease != 6 || kv.Version != 2 {
			t.Fatalf("after ignore_value: %v", kv)
		}
		if _, err = s.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v3"), IgnoreLease: true}); err != nil {
			t.Fatal(err)
		}
		if kv := get(t, s, "k"); string(kv.Value) != "v3" || kv.Lease != 6 || kv.Version != 3 {
			t.Fatalf("after ignore_lease: %v", kv)
		}
		mustPut(t, s, "k2", "x")
		mustPut(t, s, "l", "y")
		dr, err := s.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), PrevKv: true})
		if err != nil || dr.Deleted != 2 || !slices.Equal(keysOf(dr.PrevKvs), []string{"k", "k2"}) || dr.Header.Revision != 7 {
			t.Fatalf("delete range: %v %v", dr, err)
		}
		if kv := get(t, s, "l"); kv == nil {
			t.Fatal("delete range went past its end")
		}
	})
}

func cmp(key string, target pb.Compare_CompareTarget, result pb.Compare_CompareResult, v any) *pb.Compare {
	c := &pb.Compare{Key: []byte(key), Target: target, Result: result}
	switch target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: int64(v.(int))}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: int64(v.(int))}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: int64(v.(int))}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: int64(v.(int))}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: []byte(v.(string))}
	}
	return c
}

func withEnd(c *pb.Compare, end string) *pb.Compare { c.RangeEnd = []byte(end); return c }

func TestTxnCompare(t *testing.T) {
	E, NE, G, L := pb.Compare_EQUAL, pb.Compare_NOT_EQUAL, pb.Compare_GREATER, pb.Compare_LESS
	cases := []struct {
		name string
		c    *pb.Compare
		want bool
	}{
		{"version equal", cmp("a", pb.Compare_VERSION, E, 2), true},
		{"version greater", cmp("a", pb.Compare_VERSION, G, 1), true},
		{"version less fails", cmp("a", pb.Compare_VERSION, L, 2), false},
		{"create equal", cmp("a", pb.Compare_CREATE, E, 2), true},
		{"mod equal", cmp("a", pb.Compare_MOD, E, 7), true},
		{"mod not equal", cmp("a", pb.Compare_MOD, NE, 7), false},
		{"value equal", cmp("a", pb.Compare_VALUE, E, "va2"), true},
		{"value greater", cmp("a", pb.Compare_VALUE, G, "va"), true},
		{"value not equal", cmp("a", pb.Compare_VALUE, NE, "va2"), false},
		{"lease equal", cmp("a", pb.Compare_LEASE, E, 1), true},
		{"missing key: create = 0", cmp("zz", pb.Compare_CREATE, E, 0), true},
		{"missing key: mod = 0", cmp("zz", pb.Compare_MOD, E, 0), true},
		{"missing key: version < 1", cmp("zz", pb.Compare_VERSION, L, 1), true},
		{"missing key: lease = 0", cmp("zz", pb.Compare_LEASE, E, 0), true},
		{"missing key: value always fails", cmp("zz", pb.Compare_VALUE, NE, "x"), false},
		{"missing key: value always fails even empty", cmp("zz", pb.Compare_VALUE, E, ""), false},
		{"deleted key: create = 0", cmp("d", pb.Compare_CREATE, E, 0), true},
		{"range: every key", withEnd(cmp("a", pb.Compare_VERSION, E, 1), "b"), false},
		{"range: every key holds", withEnd(cmp("ab", pb.Compare_VERSION, E, 1), "b"), true},
		{"range: mod less", withEnd(cmp("a", pb.Compare_MOD, L, 8), "\x00"), true},
		{"range: empty range compares zero", withEnd(cmp("x", pb.Compare_MOD, E, 0), "z"), true},
		{"range: value on empty range fails", withEnd(cmp("x", pb.Compare_VALUE, NE, "q"), "z"), false},
		{"union of another target compares with 0", &pb.Compare{Key: []byte("a"), Target: pb.Compare_MOD, Result: G, TargetUnion: &pb.Compare_Version{Version: 100}}, true},
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		rangeFixture(t, s)
		for _, tc := range cases {
			req := &pb.TxnRequest{Compare: []*pb.Compare{tc.c}, Success: []*pb.RequestOp{opRange("a", "")}, Failure: []*pb.RequestOp{opRange("b", "")}}
			resp, err := s.Txn(req)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if resp.Succeeded != tc.want {
				t.Errorf("%s: succeeded %v, want %v", tc.name, resp.Succeeded, tc.want)
			}
			wantKey := "a"
			if !tc.want {
				wantKey = "b"
			}
			if got := keysOf(resp.Responses[0].GetResponseRange().Kvs); !slices.Equal(got, []string{wantKey}) {
				t.Errorf("%s: branch read %q", tc.name, got)
			}
		}
	})
}

func TestTxnSemantics(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustPut(t, s, "a", "1") // 2
		// Ops see the writes before them; compares of nested txns are
		// evaluated before any op runs.
		req := &pb.TxnRequest{
			Success: []*pb.RequestOp{
				opPut("b", "1"),
				opRange("b", ""),
				opTxn(&pb.TxnRequest{
					Compare: []*pb.Compare{cmp("b", pb.Compare_VERSION, pb.Compare_EQUAL, 0)}, // b missing before the txn
					Success: []*pb.RequestOp{opPut("c", "nested-then")},
					Failure: []*pb.RequestOp{opPut("c", "nested-else")},
				}),
				opDel("a", ""),
				opRange("a", ""),
			},
		}
		if err := ValidateTxn(req, 0); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Txn(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Revision != 3 || !resp.Succeeded {
			t.Fatalf("txn: %v", resp)
		}
		if got := keysOf(resp.Responses[1].GetResponseRange().Kvs); !slices.Equal(got, []string{"b"}) {
			t.Errorf("range after put in txn: %q", got)
		}
		nested := resp.Responses[2].GetResponseTxn()
		if !nested.Succeeded || nested.Header.Revision != 0 { // etcd fills only the outer header
			t.Errorf("nested txn: %v", nested)
		}
		if kv := get(t, s, "c"); string(kv.GetValue()) != "nested-then" {
			t.Errorf("c = %v", kv)
		}
		if dr := resp.Responses[3].GetResponseDeleteRange(); dr.Deleted != 1 {
			t.Errorf("delete in txn: %v", dr)
		}
		if got := resp.Responses[4].GetResponseRange().Kvs; len(got) != 0 {
			t.Errorf("range after delete in txn: %v", got)
		}
		// Failing checks fail the whole txn, with no effect.
		for _, tc := range []struct {
			name string
			op   *pb.RequestOp
			want error
		}{
			{"future range", &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 10}}}, ErrFutureRev},
			{"ignore_value on a missing key", &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("zz"), IgnoreValue: true}}}, ErrKeyNotFound},
		} {
			rev := s.Rev()
			_, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("x", "1"), tc.op}})
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
			if s.Rev() != rev || get(t, s, "x") != nil {
				t.Errorf("%s: the failed txn had an effect", tc.name)
			}
		}
		// Only the taken branch is checked.
		resp, err = s.Txn(&pb.TxnRequest{
			Compare: []*pb.Compare{cmp("zz", pb.Compare_VERSION, pb.Compare_EQUAL, 0)},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 100}}}},
		})
		if err != nil || !resp.Succeeded {
			t.Errorf("untaken branch checked: %v %v", resp, err)
		}
		// A negative revision inside a txn fails after a compaction (etcd's
		// checkRange), while a plain Range reads the current revision.
		if _, err := s.Compact(&pb.CompactionRequest{Revision: 2}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: -1}}}}})
		if !errors.Is(err, ErrCompacted) {
			t.Errorf("txn range at -1 after compaction: %v", err)
		}
		// The delete-and-put-again txn etcd's duplicate check lets through
		// (range_end "\x00"), then a compaction at its revision: etcd loses
		// the key; the key must survive here.
		mustPut(t, s, "q", "old")
		req = &pb.TxnRequest{Success: []*pb.RequestOp{opDel("p", "\x00"), opPut("q", "new")}}
		if err := ValidateTxn(req, 0); err != nil {
			t.Fatalf("etcd accepts this txn: %v", err)
		}
		resp, err = s.Txn(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Compact(&pb.CompactionRequest{Revision: resp.Header.Revision, Physical: true}); err != nil {
			t.Fatal(err)
		}
		if kv := get(t, s, "q"); string(kv.GetValue()) != "new" || kv.Version != 1 {
			t.Fatalf("q after delete+put and compaction: %v", kv)
		}
		// ... and a put with ignore_value after such a delete fails the txn
		// (etcd panics).
		mustPut(t, s, "r", "old")
		rev := s.Rev()
		_, err = s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("r", "\x00"), {Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("r"), IgnoreValue: true}}}}})
		if !errors.Is(err, ErrKeyNotFound) || s.Rev() != rev || string(get(t, s, "r").GetValue()) != "old" {
			t.Fatalf("ignore_value after delete in txn: %v, rev %d", err, s.Rev())
		}
	})
}

func TestValidate(t *testing.T) {
	many := func(n int, op func(i int) *pb.RequestOp) []*pb.RequestOp {
		ops := make([]*pb.RequestOp, n)
		for i := range ops {
			ops[i] = op(i)
		}
		return ops
	}
	distinct := func(i int) *pb.RequestOp { return opPut(string(rune('a'+i%26))+string(rune('a'+i/26)), "v") }
	cases := []struct {
		name string
		txn  *pb.TxnRequest
		want error
	}{
		{"128 ops", &pb.TxnRequest{Success: many(128, distinct)}, nil},
		{"129 ops", &pb.TxnRequest{Success: many(129, distinct)}, ErrTooManyOps},
		{"max not sum", &pb.TxnRequest{Success: many(100, distinct), Failure: many(100, distinct)}, nil},
		{"nested budget", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: many(127, distinct)})}}, nil},
		{"nested over budget", &pb.TxnRequest{Success: append(many(2, distinct), opTxn(&pb.TxnRequest{Success: many(127, distinct)}))}, ErrTooManyOps},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{{}}}, ErrEmptyKey},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, ErrKeyNotFound},
		{"bad put", &pb.TxnRequest{Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}}}}}, ErrValueProvided},
		{"bad range", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), SortOrder: 9}}}}}, ErrInvalidSortOption},
		{"two puts", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1"), opPut("a", "2")}}, ErrDuplicateKey},
		{"puts in different branches", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1")}, Failure: []*pb.RequestOp{opPut("a", "2")}}, nil},
		{"put and delete", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", ""), opPut("a", "2")}}, ErrDuplicateKey},
		{"put in deleted range", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opPut("b", "2")}}, ErrDuplicateKey},
		{"put at range end", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opPut("c", "2")}}, nil},
		{"two deletes", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opDel("b", "d")}}, nil},
		{"range and put", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", ""), opPut("a", "2")}}, nil},
		{"delete with \\x00 end is not seen (etcd)", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "\x00"), opPut("b", "2")}}, nil},
		{"nested put vs outer put", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1"), opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "2")}})}}, ErrDuplicateKey},
		{"nested then and else may repeat", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1")}, Failure: []*pb.RequestOp{opPut("a", "2")}})}}, nil},
		{"two nested txns", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1")}}), opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opPut("a", "2")}})}}, ErrDuplicateKey},
		{"nested delete vs outer put", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "b")}}), opPut("a", "2")}}, ErrDuplicateKey},
		{"nested put vs outer delete", &pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "b"), opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opPut("a", "2")}})}}, ErrDuplicateKey},
	}
	for _, tc := range cases {
		if err := ValidateTxn(tc.txn, 0); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := ValidatePut(&pb.PutRequest{}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("empty put: %v", err)
	}
	if err := ValidatePut(&pb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true}); !errors.Is(err, ErrLeaseProvided) {
		t.Errorf("put lease+ignore_lease: %v", err)
	}
	if err := ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortTarget: 5}); !errors.Is(err, ErrInvalidSortOption) {
		t.Errorf("bad sort target: %v", err)
	}
	if err := ValidateDeleteRange(&pb.DeleteRangeRequest{}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("empty delete: %v", err)
	}
	// The texts clients match.
	for err, text := range map[error]string{
		ErrCompacted:     "mvcc: required revision has been compacted",
		ErrFutureRev:     "mvcc: required revision is a future revision",
		ErrTooManyOps:    "etcdserver: too many operations in txn request",
		ErrDuplicateKey:  "etcdserver: duplicate key given in txn request",
		ErrEmptyKey:      "etcdserver: key is not provided",
		ErrKeyNotFound:   "etcdserver: key not found",
		ErrValueProvided: "etcdserver: value is provided",
		ErrLeaseProvided: "etcdserver: lease is provided",
	} {
		if err.Error() != text {
			t.Errorf("error text %q, want %q", err, text)
		}
	}

}
