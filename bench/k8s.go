package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The k8s workload (KindK8s) sends what kube-apiserver sends etcd, request
// for request as its storage layer (k8s.io/apiserver's storage/etcd3 and
// etcd's client/v3/kubernetes) does:
//
//   - get: Range of one key, limit 1.
//   - create: Txn(If mod_revision(key) == 0, Then Put, Else Get).
//   - update (GuaranteedUpdate): Txn(If mod_revision(key) == rev, Then
//     Put, Else Get), rev being the object's revision in the apiserver's
//     watch cache; on a conflict it tries again with the revision the Else
//     branch returned (and a new value: the update is applied again), up
//     to k8sMaxConflicts times.
//   - delete: Txn(If mod_revision(key) == rev, Then DeleteRange, Else
//     Get), retried the same way.
//   - list: Range over a resource's prefix (every namespace, or one) with
//     limit 500; further pages continue from the last key + "\x00" at the
//     revision of the first page. A page whose revision has been compacted
//     meanwhile fails, and the list starts over, as a reflector relists on
//     "410 Gone".
//   - count: count-only Range over a resource's prefix (the apiserver's
//     object count metric).
//   - watch: one watcher per resource prefix, with prev_kv: the cacher's.
//     Its events keep the workload's watch cache of object revisions, from
//     which updates and deletes take the revision they expect.
//   - compaction: every Config.CompactInterval (5 s by default; the
//     apiserver's is 5 minutes), the apiserver's compactor:
//     Txn(If version(compact_rev_key) == t, Then Put(compact_rev_key, rev),
//     Else Get), and when that succeeds, Compact at the revision current
//     one interval earlier, so that one interval of history is kept. It
//     does not wait for the compaction on disk, as the apiserver does not;
//     the report lists each compaction as a pause.
//
// Objects live at /registry/<resource>/<namespace>/<name>:
//
//	resource    namespace        name                     size    share of the load
//	leases      kube-node-lease  node-00000042            320 B   10%
//	pods        ns-00 .. ns-15   pod-00000042             4 KiB   40%
//	configmaps  ns-00 .. ns-15   cm-00000042              1 KiB   20%
//	events      ns-00 .. ns-15   pod-00000042.<16 hex>    700 B   30%
//
// Objects created by a run are named <object>-r<rev>-<n>, rev being the
// store's revision when the run began, so runs never collide. Values start
// with the time of the write (for the watch latency) and the "k8s\x00"
// magic of Kubernetes' protobuf encoding; --value-size does not apply.
//
// The operation mix follows what dominates a real cluster's etcd traffic:
// node heartbeats (each node renews its lease every 10 s) and status
// updates, event churn (events are created, sometimes updated, and expire:
// deleted here, oldest first), gets, and occasional lists:
//
//	op      share  resources
//	update  45%    leases 55%, pods 30%, configmaps 10%, events 5%
//	get     20%    leases 30%, pods 40%, configmaps 30%
//	create  15%    events 80%, pods 15%, configmaps 5%
//	delete  15%    events 80%, pods 15%, configmaps 5%
//	list     4%    pods 40%, events 30%, configmaps 20%, leases 10%; half in one namespace
//	count    1%    every resource alike
//
// An operation on a resource that has no object left creates one instead.

// k8sOp is an operation of the k8s workload.
type k8sOp int

const (
	k8sGet k8sOp = iota
	k8sUpdate
	k8sCreate
	k8sDelete
	k8sList
	k8sCount
	numK8sOps
)

var k8sOpNames = [numK8sOps]string{"get", "update", "create", "delete", "list", "count"}

func (o k8sOp) String() string { return k8sOpNames[o] }

// Resources of the k8s workload.
const (
	k8sLeases = iota
	k8sPods
	k8sConfigMaps
	k8sEvents
	numK8sResources
)

// k8sResource is one kind of object of the k8s workload.
type k8sResource struct {
	name string // as in /registry/<name>/
	// namespace holds every object; empty: objects spread over
	// k8sNamespaces namespaces.
	namespace string
	object    string // names start with it
	size      int    // bytes per object
	// event names end in "." and 16 hex digits, as the apiserver's.
	event bool
}

var k8sResources = [numK8sResources]k8sResource{
	k8sLeases:     {name: "leases", namespace: "kube-node-lease", object: "node", size: 320},
	k8sPods:       {name: "pods", object: "pod", size: 4096},
	k8sConfigMaps: {name: "configmaps", object: "cm", size: 1024},
	k8sEvents:     {name: "events", object: "pod", size: 700, event: true},
}

const (
	// k8sNamespaces is how many namespaces objects spread over.
	k8sNamespaces = 16
	// k8sPageSize is the limit of a list's pages: the apiserver's chunk
	// size for reflectors' lists.
	k8sPageSize = 500
	// k8sMaxConflicts bounds the tries of one update or delete.
	k8sMaxConflicts = 16
	// k8sCompactInterval is the default Config.CompactInterval.
	k8sCompactInterval = 5 * time.Second
	// compactRevKey is where kube-apiserver's compactor keeps its state.
	compactRevKey = "compact_rev_key"
)

// k8sLoadOrder gives the resource of record n: k8sLoadOrder[n%10].
var k8sLoadOrder = [10]int{k8sLeases, k8sPods, k8sPods, k8sPods, k8sPods,
	k8sConfigMaps, k8sConfigMaps, k8sEvents, k8sEvents, k8sEvents}

// k8sOpShare is each operation's share of the mix; k8sResShare is, for
// each operation, each resource's share of it.
var (
	k8sOpShare = [numK8sOps]float64{
		k8sUpdate: 0.45, k8sGet: 0.20, k8sCreate: 0.15, k8sDelete: 0.15, k8sList: 0.04, k8sCount: 0.01,
	}
	k8sResShare = [numK8sOps][numK8sResources]float64{
		k8sUpdate: {k8sLeases: 0.55, k8sPods: 0.30, k8sConfigMaps: 0.10, k8sEvents: 0.05},
		k8sGet:    {k8sLeases: 0.30, k8sPods: 0.40, k8sConfigMaps: 0.30},
		k8sCreate: {k8sPods: 0.15, k8sConfigMaps: 0.05, k8sEvents: 0.80},
		k8sDelete: {k8sPods: 0.15, k8sConfigMaps: 0.05, k8sEvents: 0.80},
		k8sList:   {k8sLeases: 0.10, k8sPods: 0.40, k8sConfigMaps: 0.20, k8sEvents: 0.30},
		k8sCount:  {0.25, 0.25, 0.25, 0.25},
	}
)

// k8sChoose draws an operation and the resource it touches.
func k8sChoose(r *rand.Rand) (k8sOp, int) {
	op := k8sOp(pickWeighted(r, k8sOpShare[:]))
	return op, pickWeighted(r, k8sResShare[op][:])
}

// pickWeighted draws i with probability weights[i] (they sum to 1).
func pickWeighted(r *rand.Rand, weights []float64) int {
	u := r.Float64()
	last := 0
	for i, w := range weights {
		if w == 0 {
			continue
		}
		if u < w {
			return i
		}
		u -= w
		last = i
	}
	return last
}

func (rs *k8sResource) prefix() string { return "/registry/" + rs.name + "/" }

// key returns the key of object name in namespace number ns.
func (rs *k8sResource) key(ns int, name string) []byte {
	namespace := rs.namespace
	if namespace == "" {
		namespace = fmt.Sprintf("ns-%02d", ns)
	}
	return []byte(rs.prefix() + namespace + "/" + name)
}

// objectName returns the name of object id (a number, or r<rev>-<n>).
func (rs *k8sResource) objectName(id string, n uint64) string {
	if rs.event {
		return fmt.Sprintf("%s-%s.%016x", rs.object, id, FNVHash64(n))
	}
	return rs.object + "-" + id
}

// k8sRecord returns the resource and key of loaded record n.
func k8sRecord(n uint64) (int, []byte) {
	res := k8sLoadOrder[n%uint64(len(k8sLoadOrder))]
	rs := &k8sResources[res]
	return res, rs.key(int(FNVHash64(n)%k8sNamespaces), rs.objectName(fmt.Sprintf("%08d", n), n))
}

// k8sValue returns a new object of resource res written at now.
func k8sValue(res int, r *rand.Rand, now time.Time) []byte {
	v := make([]byte, k8sResources[res].size)
	stampValue(v, now)
	copy(v[8:], "k8s\x00")
	fillValue(v[12:], r)
	return v
}

// k8sObject is an object the workload knows of.
type k8sObject struct {
	key []byte
	// rev is the object's mod revision as last seen; created is its create
	// revision; pos is its index in live, -1 once it is no longer there.
	// Guarded by the k8sObjects' mu.
	rev, created int64
	pos          int
}

// k8sObjects is the objects of one resource: the workload's view of what
// exists, and its watch cache of their revisions. Safe for concurrent use.
type k8sObjects struct {
	mu    sync.Mutex
	live  []*k8sObject
	byKey map[string]*k8sObject
	// fifo holds, for events, the objects in creation order: deletes
	// take the oldest, as events expire. fifo[head:] are waiting.
	fifo []*k8sObject
	head int
	// oldestFirst makes deletes take the oldest object.
	oldestFirst bool
}

func newK8sObjects(oldestFirst bool) *k8sObjects {
	return &k8sObjects{byKey: map[string]*k8sObject{}, oldestFirst: oldestFirst}
}

func (o *k8sObjects) add(obj *k8sObject) {
	o.mu.Lock()
	defer o.mu.Unlock()
	obj.pos = len(o.live)
	o.live = append(o.live, obj)
	o.byKey[string(obj.key)] = obj
	if o.oldestFirst {
		o.fifo = append(o.fifo, obj)
	}
}

func (o *k8sObjects) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.live)
}

// pick returns a random object, nil if there is none.
func (o *k8sObjects) pick(r *rand.Rand) *k8sObject {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.live) == 0 {
		return nil
	}
	return o.live[r.IntN(len(o.live))]
}

// claim takes an object to delete out of the ones others may pick (the
// oldest, or a random one), nil if there is none.
func (o *k8sObjects) claim(r *rand.Rand) *k8sObject {
	o.mu.Lock()
	defer o.mu.Unlock()
	var obj *k8sObject
	if o.oldestFirst {
		for o.head < len(o.fifo) && obj == nil {
			if c := o.fifo[o.head]; c.pos >= 0 {
				obj = c
			}
			o.fifo[o.head] = nil
			o.head++
		}
		if o.head > 1024 && o.head > len(o.fifo)/2 {
			o.fifo = slices.Clone(o.fifo[o.head:])
			o.head = 0
		}
	} else if len(o.live) > 0 {
		obj = o.live[r.IntN(len(o.live))]
	}
	if obj != nil {
		o.unlink(obj)
	}
	return obj
}

// unlink removes obj from live. Called with mu held.
func (o *k8sObjects) unlink(obj *k8sObject) {
	if obj.pos < 0 {
		return
	}
	last := o.live[len(o.live)-1]
	o.live[obj.pos], last.pos = last, obj.pos
	o.live = o.live[:len(o.live)-1]
	obj.pos = -1
}

// forget drops obj: it is deleted.
func (o *k8sObjects) forget(obj *k8sObject) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unlink(obj)
	if o.byKey[string(obj.key)] == obj {
		delete(o.byKey, string(obj.key))
	}
}

// revOf returns the revision obj was last seen at.
func (o *k8sObjects) revOf(obj *k8sObject) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return obj.rev
}

// seen records that obj was at revision rev.
func (o *k8sObjects) seen(obj *k8sObject, rev int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	obj.rev = max(obj.rev, rev)
}

// seenKey records that the object at key was at revision rev, if it is
// known.
func (o *k8sObjects) seenKey(key []byte, rev int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if obj := o.byKey[string(key)]; obj != nil {
		obj.rev = max(obj.rev, rev)
	}
}

// k8sTally is what a run of the k8s workload counts.
type k8sTally struct {
	updateConflicts, updateGone, deleteConflicts, deleteGone atomic.Int64
	createExists, listPages, relists, noObject               atomic.Int64
	// acked counts each resource's acknowledged writes, rev their highest
	// revision: what its watcher must receive.
	acked [numK8sResources]atomic.Int64
	rev   [numK8sResources]maxInt64
}

func (t *k8sTally) counts() map[string]int64 {
	m := map[string]int64{}
	for name, v := range map[string]*atomic.Int64{
		"update conflicts": &t.updateConflicts, "update gone": &t.updateGone,
		"delete conflicts": &t.deleteConflicts, "delete gone": &t.deleteGone,
		"create exists": &t.createExists, "list pages": &t.listPages,
		"relists": &t.relists, "no object": &t.noObject,
	} {
		if n := v.Load(); n != 0 {
			m[name] = n
		}
	}
	return m
}

// k8sRun is one run of the k8s workload.
type k8sRun struct {
	s    EtcdStore
	objs [numK8sResources]*k8sObjects
	// tag names the objects the run creates; next numbers them.
	tag   string
	next  atomic.Uint64
	tally *k8sTally
}

// newK8sRun finds the objects s holds, as the apiserver's caches start
// with a list: keys only, in pages of 10000, at one revision.
func newK8sRun(ctx context.Context, s EtcdStore) (*k8sRun, error) {
	k := &k8sRun{s: s, tally: &k8sTally{}}
	var rev int64
	for res := range k8sResources {
		rs := &k8sResources[res]
		objs := newK8sObjects(rs.event)
		var found []*k8sObject
		prefix := []byte(rs.prefix())
		key, end := prefix, prefixEnd(prefix)
		for {
			resp, err := s.Range(ctx, &pb.RangeRequest{Key: key, RangeEnd: end, Limit: 10000, KeysOnly: true, Revision: rev})
			if err != nil {
				return nil, fmt.Errorf("bench: k8s: list %s: %w", rs.name, err)
			}
			if rev == 0 {
				rev = resp.GetHeader().GetRevision()
			}
			for _, kv := range resp.Kvs {
				found = append(found, &k8sObject{key: kv.Key, rev: kv.ModRevision, created: kv.CreateRevision})
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			key = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		slices.SortFunc(found, func(a, b *k8sObject) int { return cmp.Compare(a.created, b.created) })
		for _, obj := range found {
			objs.add(obj)
		}
		k.objs[res] = objs
	}
	k.tag = "r" + strconv.FormatInt(rev, 10)
	return k, nil
}

func (k *k8sRun) phase() phase {
	return phase{
		ops: k8sOpNames[:],
		client: func(_ int, r *rand.Rand) opFunc {
			return func(ctx context.Context) (int, error) {
				op, res := k8sChoose(r)
				op, err := k.do(ctx, r, op, res)
				return int(op), err
			}
		},
	}
}

// do makes operation op on resource res and returns the operation it made.
func (k *k8sRun) do(ctx context.Context, r *rand.Rand, op k8sOp, res int) (k8sOp, error) {
	switch op {
	case k8sCreate:
		return op, k.create(ctx, r, res)
	case k8sList:
		return op, k.list(ctx, r, res)
	case k8sCount:
		return op, k.count(ctx, res)
	}
	var obj *k8sObject
	if op == k8sDelete {
		obj = k.objs[res].claim(r)
	} else {
		obj = k.objs[res].pick(r)
	}
	if obj == nil {
		k.tally.noObject.Add(1)
		return k8sCreate, k.create(ctx, r, res)
	}
	switch op {
	case k8sGet:
		return op, k.get(ctx, res, obj)
	case k8sUpdate:
		return op, k.update(ctx, r, res, obj)
	default:
		return op, k.delete(ctx, res, obj)
	}
}

// wrote accounts for an acknowledged write of resource res at rev.
func (k *k8sRun) wrote(res int, rev int64) {
	k.tally.acked[res].Add(1)
	k.tally.rev[res].raise(rev)
}

func modIs(key []byte, rev int64) []*pb.Compare {
	return []*pb.Compare{{Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, Key: key,
		TargetUnion: &pb.Compare_ModRevision{ModRevision: rev}}}
}

func opPut(key, value []byte) []*pb.RequestOp {
	return []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: value}}}}
}

func opGet(key []byte) []*pb.RequestOp {
	return []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key}}}}
}

// elseKV returns the object the Else branch of a failed transaction read,
// nil if it does not exist.
func elseKV(resp *pb.TxnResponse) *mvccpb.KeyValue {
	if len(resp.Responses) == 0 {
		return nil
	}
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
		return kvs[0]
	}
	return nil
}

func (k *k8sRun) create(ctx context.Context, r *rand.Rand, res int) error {
	rs := &k8sResources[res]
	n := k.next.Add(1)
	key := rs.key(r.IntN(k8sNamespaces), rs.objectName(k.tag+"-"+strconv.FormatUint(n, 10), n))
	resp, err := k.s.Txn(ctx, &pb.TxnRequest{Compare: modIs(key, 0),
		Success: opPut(key, k8sValue(res, r, time.Now())), Failure: opGet(key)})
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		k.tally.createExists.Add(1)
		return nil
	}
	rev := resp.GetHeader().GetRevision()
	k.objs[res].add(&k8sObject{key: key, rev: rev, created: rev})
	k.wrote(res, rev)
	return nil
}

func (k *k8sRun) get(ctx context.Context, res int, obj *k8sObject) error {
	resp, err := k.s.Range(ctx, &pb.RangeRequest{Key: obj.key, Limit: 1})
	if err != nil {
		return fmt.Errorf("get %s: %w", obj.key, err)
	}
	if len(resp.Kvs) == 1 {
		k.objs[res].seen(obj, resp.Kvs[0].ModRevision)
	}
	return nil
}

// update is the apiserver's GuaranteedUpdate: a CAS on the revision in the
// watch cache, tried again on the revision read back after a conflict.
func (k *k8sRun) update(ctx context.Context, r *rand.Rand, res int, obj *k8sObject) error {
	objs := k.objs[res]
	rev := objs.revOf(obj)
	for conflicts := 0; ; conflicts++ {
		resp, err := k.s.Txn(ctx, &pb.TxnRequest{Compare: modIs(obj.key, rev),
			Success: opPut(obj.key, k8sValue(res, r, time.Now())), Failure: opGet(obj.key)})
		if err != nil {
			return fmt.Errorf("update %s: %w", obj.key, err)
		}
		if resp.Succeeded {
			objs.seen(obj, resp.GetHeader().GetRevision())
			k.wrote(res, resp.GetHeader().GetRevision())
			return nil
		}
		cur := elseKV(resp)
		if cur == nil {
			k.tally.updateGone.Add(1) // deleted meanwhile: NotFound
			objs.forget(obj)
			return nil
		}
		k.tally.updateConflicts.Add(1)
		if conflicts == k8sMaxConflicts {
			return fmt.Errorf("update %s: %d conflicts in a row", obj.key, conflicts+1)
		}
		rev = cur.ModRevision
		objs.seen(obj, rev)
	}
}

// delete is the apiserver's conditional delete, tried again on the
// revision read back after a conflict.
func (k *k8sRun) delete(ctx context.Context, res int, obj *k8sObject) error {
	objs := k.objs[res]
	rev := objs.revOf(obj)
	for conflicts := 0; ; conflicts++ {
		resp, err := k.s.Txn(ctx, &pb.TxnRequest{Compare: modIs(obj.key, rev),
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{
				RequestDeleteRange: &pb.DeleteRangeRequest{Key: obj.key}}}},
			Failure: opGet(obj.key)})
		if err != nil {
			return fmt.Errorf("delete %s: %w", obj.key, err)
		}
		if resp.Succeeded {
			objs.forget(obj)
			k.wrote(res, resp.GetHeader().GetRevision())
			return nil
		}
		cur := elseKV(resp)
		if cur == nil {
			k.tally.deleteGone.Add(1)
			objs.forget(obj)
			return nil
		}
		k.tally.deleteConflicts.Add(1)
		if conflicts == k8sMaxConflicts {
			return fmt.Errorf("delete %s: %d conflicts in a row", obj.key, conflicts+1)
		}
		rev = cur.ModRevision
	}
}

// list reads a resource (every namespace, or one) in pages at one
// revision, starting over if that revision is compacted under it.
func (k *k8sRun) list(ctx context.Context, r *rand.Rand, res int) error {
	rs := &k8sResources[res]
	prefix := []byte(rs.prefix())
	if rs.namespace == "" && r.IntN(2) == 0 {
		prefix = fmt.Appendf(prefix, "ns-%02d/", r.IntN(k8sNamespaces))
	}
	for relists := 0; ; relists++ {
		err := k.listOnce(ctx, prefix)
		if err == nil || !isCompacted(err) || relists == 3 {
			return err
		}
		k.tally.relists.Add(1)
	}
}

func (k *k8sRun) listOnce(ctx context.Context, prefix []byte) error {
	key, end := prefix, prefixEnd(prefix)
	var rev int64
	for {
		resp, err := k.s.Range(ctx, &pb.RangeRequest{Key: key, RangeEnd: end, Limit: k8sPageSize, Revision: rev})
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		k.tally.listPages.Add(1)
		if rev == 0 {
			rev = resp.GetHeader().GetRevision()
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
	}
}

func (k *k8sRun) count(ctx context.Context, res int) error {
	prefix := []byte(k8sResources[res].prefix())
	if _, err := k.s.Range(ctx, &pb.RangeRequest{Key: prefix, RangeEnd: prefixEnd(prefix), CountOnly: true}); err != nil {
		return fmt.Errorf("count %s: %w", prefix, err)
	}
	return nil
}

// compactor is kube-apiserver's compactor (storage/etcd3/compact.go): every
// interval, it claims the compaction by a CAS on compact_rev_key's version
// (so that one of several apiservers compacts) and compacts at the
// revision it saw the interval before.
type compactor struct {
	s        EtcdStore
	interval time.Duration
	dir      string
	track    *pauseTracker
}

func (c *compactor) loop(ctx context.Context, stop <-chan struct{}, _ *phaseStatus) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	var version, rev int64
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case <-stop:
				return // the run is over
			default:
			}
			version, rev = c.compact(ctx, version, rev)
		}
	}
}

// compact is one turn of the compactor: version is compact_rev_key's
// expected version, rev the revision to compact at (none when 0). It
// returns the next turn's.
func (c *compactor) compact(ctx context.Context, version, rev int64) (int64, int64) {
	key := []byte(compactRevKey)
	resp, err := c.s.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{{Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, Key: key,
			TargetUnion: &pb.Compare_Version{Version: version}}},
		Success: opPut(key, strconv.AppendInt(nil, rev, 10)),
		Failure: opGet(key),
	})
	if err != nil {
		c.track.measure(ctx, c.s, c.dir, Pause{Kind: "compact"}, func() error { return err })
		return version, rev
	}
	cur := resp.GetHeader().GetRevision()
	if !resp.Succeeded {
		// Another compactor went first: take up its version.
		if kv := elseKV(resp); kv != nil {
			return kv.Version, cur
		}
		return 0, cur
	}
	if rev > 0 {
		c.track.measure(ctx, c.s, c.dir, Pause{Kind: "compact", Revision: rev}, func() error {
			return c.s.Compact(ctx, rev, false)
		})
	}
	return version + 1, cur
}

// runK8s runs the k8s workload.
func runK8s(ctx context.Context, s EtcdStore, cfg Config) (*Result, error) {
	k, err := newK8sRun(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := warmup(ctx, k.phase(), cfg); err != nil {
		return nil, err
	}
	k.tally = &k8sTally{}
	specs := make([]watchSpec, numK8sResources)
	for res := range specs {
		prefix := []byte(k8sResources[res].prefix())
		objs := k.objs[res]
		specs[res] = watchSpec{key: prefix, end: prefixEnd(prefix), prevKV: true, onEvent: func(ev *mvccpb.Event) {
			if ev.Type == mvccpb.PUT {
				objs.seenKey(ev.Kv.Key, ev.Kv.ModRevision)
			}
		}}
	}
	// One stream, as the apiserver's one client multiplexes its cachers'
	// watches.
	set, err := startWatchers(ctx, s, 1, specs)
	if err != nil {
		return nil, err
	}
	defer set.stop()
	ph := k.phase()
	ph.track = newPauseTracker()
	interval := cfg.CompactInterval
	if interval == 0 {
		interval = k8sCompactInterval
	}
	if interval > 0 {
		c := &compactor{s: s, interval: interval, dir: cfg.DataDir, track: ph.track}
		ph.side = c.loop
	}
	res, err := runPhase(ctx, ph, cfg)
	if err != nil {
		return nil, err
	}
	lagging := set.drain(ctx, func(i int) int64 { return k.tally.rev[i].Load() }, drainTimeout)
	var expected int64
	for i := range k.tally.acked {
		expected += k.tally.acked[i].Load()
	}
	res.Watch = set.result(res.Elapsed, expected, lagging)
	res.Counts = k.tally.counts()
	return res, nil
}
