package robustness

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestModel checks the checker: histories that are and are not
// linearizable, with unknown outcomes.
func TestModel(t *testing.T) {
	const never = math.MaxInt64
	get := func(call, ret int64, val string, modRev int64) porcupine.Operation {
		out := &kvOutput{Exists: val != "", Value: val, ModRev: modRev, Rev: modRev}
		return porcupine.Operation{ClientId: 9, Input: kvInput{Kind: opGet, Key: "k"}, Call: call, Return: ret, Output: out}
	}
	put := func(call, ret int64, val string, rev int64) porcupine.Operation {
		var out *kvOutput
		if ret != never {
			out = &kvOutput{Rev: rev}
		}
		return porcupine.Operation{ClientId: 1, Input: kvInput{Kind: opPut, Key: "k", Value: val}, Call: call, Return: ret, Output: out}
	}
	cas := func(call, ret int64, expect int64, val string, ok bool, rev int64) porcupine.Operation {
		var out *kvOutput
		if ret != never {
			out = &kvOutput{Succeeded: ok, Rev: rev}
		}
		return porcupine.Operation{ClientId: 2, Input: kvInput{Kind: opCAS, Key: "k", Value: val, Rev: expect}, Call: call, Return: ret, Output: out}
	}
	del := func(call, ret int64, deleted int64) porcupine.Operation {
		var out *kvOutput
		if ret != never {
			out = &kvOutput{Deleted: deleted}
		}
		return porcupine.Operation{ClientId: 3, Input: kvInput{Kind: opDelete, Key: "k"}, Call: call, Return: ret, Output: out}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"read your write", []porcupine.Operation{put(0, 1, "a", 2), get(2, 3, "a", 2)}, true},
		{"stale read", []porcupine.Operation{put(0, 1, "a", 2), put(2, 3, "b", 3), get(4, 5, "a", 2)}, false},
		{"lost acknowledged write", []porcupine.Operation{put(0, 1, "a", 2), get(2, 3, "", 0)}, false},
		{"unknown write seen", []porcupine.Operation{put(0, never, "a", 0), get(2, 3, "a", 7)}, true},
		{"unknown write not seen", []porcupine.Operation{put(0, never, "a", 0), get(2, 3, "", 0)}, true},
		{"unknown write seen then gone", []porcupine.Operation{put(0, never, "a", 0), get(2, 3, "a", 7), get(4, 5, "", 0)}, false},
		{"revision goes backwards", []porcupine.Operation{put(0, 1, "a", 5), put(2, 3, "b", 4)}, false},
		{"create by CAS", []porcupine.Operation{cas(0, 1, 0, "a", true, 2), get(2, 3, "a", 2)}, true},
		{"CAS fails on an absent key", []porcupine.Operation{cas(0, 1, 2, "a", true, 3)}, false},
		{"unknown CAS then CAS on its revision", []porcupine.Operation{put(0, 1, "a", 2), cas(2, never, 2, "b", false, 0), get(4, 5, "b", 3), cas(6, 7, 3, "c", true, 4)}, true},
		{"delete", []porcupine.Operation{put(0, 1, "a", 2), del(2, 3, 1), get(4, 5, "", 0)}, true},
		{"delete of nothing", []porcupine.Operation{put(0, 1, "a", 2), del(2, 3, 0)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(kvModel, tc.ops); got != tc.ok {
				t.Errorf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}

// TestWatchCheck checks the watch stream checker on streams that break a
// guarantee.
func TestWatchCheck(t *testing.T) {
	ev := func(typ mvccpb.Event_EventType, key, val string, rev int64, prev *mvccpb.KeyValue) *clientv3.Event {
		return &clientv3.Event{Type: typ, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), ModRevision: rev}, PrevKv: prev}
	}
	kv := func(val string, rev int64) *mvccpb.KeyValue {
		return &mvccpb.KeyValue{Value: []byte(val), ModRevision: rev}
	}
	put, del := mvccpb.PUT, mvccpb.DELETE
	for _, tc := range []struct {
		name  string
		resps [][]*clientv3.Event
		acked []write
		lists []list
		bad   bool
	}{
		{"good", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}, {ev(put, "a", "2", 3, kv("1", 2)), ev(put, "b", "2", 3, nil)}, {ev(del, "a", "", 4, kv("2", 3))}},
			[]write{{key: "a", value: "2", rev: 3}, {key: "a", del: true, rev: 4}}, []list{{prefix: "", rev: 3, kvs: []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("2"), ModRevision: 3}, {Key: []byte("b"), Value: []byte("2"), ModRevision: 3}}}}, false},
		{"gap", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}, {ev(put, "a", "2", 4, kv("1", 2))}}, nil, nil, true},
		{"duplicate", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}, {ev(put, "a", "1", 2, nil)}}, nil, nil, true},
		{"split revision", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}, {ev(put, "b", "1", 2, nil)}}, nil, nil, true},
		{"wrong prev_kv", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}, {ev(put, "a", "2", 3, kv("0", 1))}}, nil, nil, true},
		{"lost write", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}}, []write{{key: "a", value: "9", rev: 2}}, nil, true},
		{"event behind a progress notification", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}, nil, {ev(put, "a", "2", 3, kv("1", 2))}}, nil, nil, true},
		{"list differs", [][]*clientv3.Event{{ev(put, "a", "1", 2, nil)}}, nil, []list{{prefix: "", rev: 2}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &watcher{}
			for _, r := range tc.resps {
				if r == nil { // a progress notification at revision 3
					w.resps = append(w.resps, watchResp{progress: 3})
					continue
				}
				w.resps = append(w.resps, watchResp{events: r})
			}
			_, bad := w.check(tc.acked, tc.lists)
			if (len(bad) > 0) != tc.bad {
				t.Errorf("violations %q, want some: %v", bad, tc.bad)
			}
		})
	}
}

// TestRevisionOrder checks the revision-order checker: etcd's guarantee
// is on operations in real-time order only.
func TestRevisionOrder(t *testing.T) {
	obs := func(call, ret, rev int64, member uint64) revObs {
		return revObs{Call: call, Ret: ret, Rev: rev, Member: member, Op: "op"}
	}
	for _, tc := range []struct {
		name string
		revs []revObs
		bad  int
	}{
		{"in order", []revObs{obs(0, 1, 5, 1), obs(2, 3, 6, 2)}, 0},
		{"equal", []revObs{obs(0, 1, 5, 1), obs(2, 3, 5, 2)}, 0},
		{"overlapping, lower second", []revObs{obs(0, 3, 6, 1), obs(2, 4, 5, 2)}, 0},
		{"overlapping, returned at the call", []revObs{obs(0, 2, 6, 1), obs(2, 4, 5, 2)}, 0},
		{"backwards on another member", []revObs{obs(0, 1, 6, 1), obs(2, 3, 5, 2)}, 1},
		{"backwards after one in between", []revObs{obs(0, 1, 7, 1), obs(2, 3, 8, 1), obs(4, 5, 6, 3)}, 1},
		{"two later ones backwards", []revObs{obs(0, 1, 7, 1), obs(2, 3, 6, 2), obs(4, 5, 6, 3)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if bad := checkRevisionOrder(tc.revs); len(bad) != tc.bad {
				t.Errorf("got %d violations %q, want %d", len(bad), bad, tc.bad)
			}
		})
	}
}
