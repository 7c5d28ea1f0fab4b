package robustness

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// write is an acknowledged write: the watch stream must hold it at rev.
type write struct {
	key, value string // value "" with del
	del        bool
	rev        int64
}

// revObs is a response header revision a client saw, with the operation's
// call and return times.
type revObs struct {
	Call, Ret    int64 // ns since the recorder's start
	Rev          int64
	Member, Term uint64 // the answering member's ID and raft term
	Op           string // what the operation was, for the report
}

// list is one paginated list of a prefix at one revision, Kubernetes'
// way: the first page fixes the revision, the others are read at it.
type list struct {
	prefix string
	rev    int64
	kvs    []*mvccpb.KeyValue
}

// recorder collects what the clients did.
type recorder struct {
	start time.Time

	mu     sync.Mutex
	ops    []porcupine.Operation // the checked KV operations
	acked  []write
	revs   []revObs
	lists  []list
	counts map[string]int // operations by kind and outcome
	// renewed is, per lease, when the last grant or keepalive that
	// succeeded was called: the lease cannot expire before that plus its
	// TTL.
	renewed map[clientv3.LeaseID]int64

	ackedN atomic.Int64 // acknowledged writes so far
}

func newRecorder() *recorder {
	return &recorder{start: time.Now(), counts: map[string]int{}, renewed: map[clientv3.LeaseID]int64{}}
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) count(what string) {
	r.mu.Lock()
	r.counts[what]++
	r.mu.Unlock()
}

// op records a KV operation; out nil is an unknown outcome, returned
// never (porcupine lets it take effect any time after call).
func (r *recorder) op(client int, call int64, in kvInput, out *kvOutput) {
	ret := r.now()
	if out == nil {
		ret = math.MaxInt64
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	if out != nil {
		r.revs = append(r.revs, revObs{Call: call, Ret: ret, Rev: out.Rev, Member: out.Member, Term: out.Term,
			Op: fmt.Sprintf("client %d %+v -> %+v", client, in, *out)})
	}
}

func (r *recorder) ack(ws ...write) {
	r.mu.Lock()
	r.acked = append(r.acked, ws...)
	r.mu.Unlock()
	r.ackedN.Add(int64(len(ws)))
}

// workload is what the clients do.
type workload struct {
	name string
	// step does one random operation with client id cl.
	step func(ctx context.Context, w *worker)
}

// worker is one client goroutine's state.
type worker struct {
	id     int
	cli    *clientv3.Client
	rec    *recorder
	rnd    *rand.Rand
	seq    int
	prefix string           // the checked keys' prefix this round
	keys   int              // how many checked keys
	seen   map[string]int64 // last mod_revision seen per key (for CAS)
	lease  clientv3.LeaseID
}

func (w *worker) key() string { return fmt.Sprintf("%sk%d", w.prefix, w.rnd.IntN(w.keys)) }

func (w *worker) value() string {
	w.seq++
	return fmt.Sprintf("c%d-%d", w.id, w.seq)
}

// get reads key linearizably.
func (w *worker) get(ctx context.Context, key string) {
	call := w.rec.now()
	resp, err := w.cli.Get(ctx, key)
	if err != nil {
		w.rec.count("get failed")
		return // a failed read tells nothing
	}
	out := &kvOutput{Rev: resp.Header.Revision, Member: resp.Header.MemberId, Term: resp.Header.RaftTerm}
	if len(resp.Kvs) == 1 {
		out.Exists, out.Value, out.ModRev = true, string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
	}
	w.seen[key] = out.ModRev
	w.rec.count("get")
	w.rec.op(w.id, call, kvInput{Kind: opGet, Key: key}, out)
}

func (w *worker) put(ctx context.Context, key string) {
	val := w.value()
	call := w.rec.now()
	resp, err := w.cli.Put(ctx, key, val)
	in := kvInput{Kind: opPut, Key: key, Value: val}
	if err != nil {
		w.rec.count("put unknown")
		w.rec.op(w.id, call, in, nil)
		return
	}
	w.rec.count("put")
	w.rec.op(w.id, call, in, &kvOutput{Rev: resp.Header.Revision, Member: resp.Header.MemberId, Term: resp.Header.RaftTerm})
	w.rec.ack(write{key: key, value: val, rev: resp.Header.Revision})
	w.seen[key] = resp.Header.Revision
}

func (w *worker) del(ctx context.Context, key string) {
	call := w.rec.now()
	resp, err := w.cli.Delete(ctx, key)
	in := kvInput{Kind: opDelete, Key: key}
	if err != nil {
		w.rec.count("delete unknown")
		w.rec.op(w.id, call, in, nil)
		return
	}
	w.rec.count("delete")
	w.rec.op(w.id, call, in, &kvOutput{Deleted: resp.Deleted, Rev: resp.Header.Revision, Member: resp.Header.MemberId, Term: resp.Header.RaftTerm})
	if resp.Deleted == 1 {
		w.rec.ack(write{key: key, del: true, rev: resp.Header.Revision})
	}
	w.seen[key] = 0
}

// cas updates key if its mod_revision is the last one this worker saw (0:
// creates it), as Kubernetes' GuaranteedUpdate does with resourceVersion.
func (w *worker) cas(ctx context.Context, key string) {
	val, rev := w.value(), w.seen[key]
	call := w.rec.now()
	resp, err := w.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, val)).
		Else(clientv3.OpGet(key)).Commit()
	in := kvInput{Kind: opCAS, Key: key, Value: val, Rev: rev}
	if err != nil {
		w.rec.count("cas unknown")
		w.rec.op(w.id, call, in, nil)
		return
	}
	out := &kvOutput{Succeeded: resp.Succeeded, Rev: resp.Header.Revision, Member: resp.Header.MemberId, Term: resp.Header.RaftTerm}
	if resp.Succeeded {
		w.rec.count("cas")
		w.rec.ack(write{key: key, value: val, rev: resp.Header.Revision})
		w.seen[key] = resp.Header.Revision
	} else {
		w.rec.count("cas failed")
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			out.Exists, out.Value, out.ModRev = true, string(kvs[0].Value), kvs[0].ModRevision
		}
		w.seen[key] = out.ModRev
	}
	w.rec.op(w.id, call, in, out)
}

// txnPair puts two keys in one Txn: a watcher must get both events in one
// response (atomic per revision).
func (w *worker) txnPair(ctx context.Context) {
	val := w.value()
	a, b := w.prefix+"pair/a", w.prefix+"pair/b"
	resp, err := w.cli.Txn(ctx).Then(clientv3.OpPut(a, val), clientv3.OpPut(b, val)).Commit()
	if err != nil {
		w.rec.count("txn unknown")
		return
	}
	w.rec.count("txn")
	w.rec.ack(write{key: a, value: val, rev: resp.Header.Revision}, write{key: b, value: val, rev: resp.Header.Revision})
}

// leaseTTL is the TTL of the workload's leases.
const leaseTTL = 3 * time.Second

// leasePut grants a short lease (or keeps the worker's alive) and puts a
// key under it; the lease's expiry deletes the key later.
func (w *worker) leasePut(ctx context.Context) {
	call := w.rec.now()
	if w.lease == 0 || w.rnd.IntN(4) == 0 {
		g, err := w.cli.Grant(ctx, int64(leaseTTL/time.Second))
		if err != nil {
			w.rec.count("lease grant failed")
			return
		}
		w.lease = g.ID
	} else if _, err := w.cli.KeepAliveOnce(ctx, w.lease); err != nil {
		w.rec.count("lease keepalive failed")
		w.lease = 0
		return
	}
	w.rec.mu.Lock()
	w.rec.renewed[w.lease] = max(w.rec.renewed[w.lease], call)
	w.rec.mu.Unlock()
	key, val := fmt.Sprintf("%slease/%d-%d", w.prefix, w.id, w.rnd.IntN(3)), w.value()
	resp, err := w.cli.Put(ctx, key, val, clientv3.WithLease(w.lease))
	if err != nil {
		w.rec.count("lease put failed")
		w.lease = 0
		return
	}
	w.rec.count("lease put")
	w.rec.ack(write{key: key, value: val, rev: resp.Header.Revision})
}

// list reads the checked keys in pages of 3 at one revision, as a
// Kubernetes reflector lists.
func (w *worker) list(ctx context.Context) {
	end := clientv3.GetPrefixRangeEnd(w.prefix + "k")
	resp, err := w.cli.Get(ctx, w.prefix+"k", clientv3.WithRange(end), clientv3.WithLimit(3))
	if err != nil {
		w.rec.count("list failed")
		return
	}
	l := list{prefix: w.prefix + "k", rev: resp.Header.Revision, kvs: resp.Kvs}
	for resp.More {
		from := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		resp, err = w.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(3), clientv3.WithRev(l.rev))
		if err != nil {
			w.rec.count("list failed")
			return // compacted or unavailable: the reflector lists again
		}
		l.kvs = append(l.kvs, resp.Kvs...)
	}
	w.rec.count("list")
	w.rec.mu.Lock()
	w.rec.lists = append(w.rec.lists, l)
	w.rec.mu.Unlock()
}

// etcdWorkload is etcd's robustness "etcd" traffic: gets, puts, deletes,
// multi-key txns and leases.
var etcdWorkload = workload{name: "etcd", step: func(ctx context.Context, w *worker) {
	switch n := w.rnd.IntN(100); {
	case n < 40:
		w.get(ctx, w.key())
	case n < 65:
		w.put(ctx, w.key())
	case n < 75:
		w.del(ctx, w.key())
	case n < 85:
		w.cas(ctx, w.key())
	case n < 92:
		w.txnPair(ctx)
	default:
		w.leasePut(ctx)
	}
}}

// kubernetesWorkload is the apiserver's traffic: creates and updates by
// mod_revision, deletes, gets and paginated lists at a revision (its
// watches and compactions are the scenario's).
var kubernetesWorkload = workload{name: "kubernetes", step: func(ctx context.Context, w *worker) {
	switch n := w.rnd.IntN(100); {
	case n < 30:
		w.get(ctx, w.key())
	case n < 75:
		w.cas(ctx, w.key())
	case n < 82:
		w.del(ctx, w.key())
	default:
		w.list(ctx)
	}
}}
