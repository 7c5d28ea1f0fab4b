package mvcc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/coreos/go-semver/semver"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/pkg/v3/traceutil"
	etxn "go.etcd.io/etcd/server/v3/etcdserver/txn"
	"go.etcd.io/etcd/server/v3/lease"
	"go.etcd.io/etcd/server/v3/storage/backend"
	emvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// oracle is etcd v3.7.3's own MVCC store and lessor with etcd's request
// layer (server/etcdserver/txn) on top: the reference the differential
// tests compare the Store with. A watchable oracle is etcd's watchable
// store.
type oracle struct {
	cfg       emvcc.StoreConfig
	be        backend.Backend
	path      string
	kv        emvcc.KV
	wkv       emvcc.WatchableKV // the watchable store, if watchable
	le        lease.Lessor
	lg        *zap.Logger
	watchable bool
}

// oracleLeases are the leases granted in the oracle and in the Store
// before a random sequence.
var oracleLeases = map[int64]bool{1: true, 2: true, 3: true}

func newOracle(t testing.TB, dir string, batchLimit int, watchable bool) *oracle {
	cfg := backend.DefaultBackendConfig(zap.NewNop())
	f, err := os.CreateTemp(dir, "etcd-*.db")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	cfg.Path = f.Name()
	// Log etcd's warnings, and turn its Fatal (os.Exit) into a panic.
	lg := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.AddSync(os.Stderr), zap.WarnLevel), zap.WithFatalHook(zapcore.WriteThenPanic))
	o := &oracle{be: backend.New(cfg), path: cfg.Path, lg: lg, watchable: watchable}
	o.cfg = emvcc.StoreConfig{CompactionBatchLimit: batchLimit, CompactionSleepInterval: 1}
	o.open()
	for id := range oracleLeases {
		if _, err := o.le.Grant(lease.LeaseID(id), 3600); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// open starts etcd's lessor and store on the backend, as etcd's server
// does: the lessor reads the leases, the store attaches the keys.
func (o *oracle) open() {
	o.le = lease.NewLessor(o.lg, o.be, cluster36{}, lease.LessorConfig{CheckpointPersist: true})
	if o.watchable {
		o.wkv = emvcc.New(o.lg, o.be, o.le, o.cfg)
		o.kv = o.wkv
	} else {
		o.kv = emvcc.NewStore(o.lg, o.be, o.le, o.cfg)
	}
}

// cluster36 is the cluster etcd's lessor asks for its version: 3.6, from
// which checkpoints are persisted.
type cluster36 struct{}

func (cluster36) Version() *semver.Version { v := version.V3_6; return &v }

// reopen restarts etcd's store and lessor on the same backend, as a
// restart does.
func (o *oracle) reopen() {
	o.kv.Close()
	o.le.Stop()
	o.open()
}

func (o *oracle) close() {
	o.kv.Close()
	o.le.Stop()
	o.be.Close()
	os.Remove(o.path)
}

// The lease requests, as etcd's applier (etcdserver/apply/backend.go)
// applies them.

func (o *oracle) leaseGrant(r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	l, err := o.le.Grant(lease.LeaseID(r.ID), r.TTL)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: o.rev()}, ID: int64(l.ID), TTL: l.TTL()}, nil
}

func (o *oracle) leaseRevoke(r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := o.le.Revoke(lease.LeaseID(r.ID)); err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: o.rev()}}, nil
}

func (o *oracle) leaseCheckpoint(r *pb.LeaseCheckpointRequest) (*pb.LeaseCheckpointResponse, error) {
	for _, c := range r.Checkpoints {
		if err := o.le.Checkpoint(lease.LeaseID(c.ID), c.Remaining_TTL); err != nil {
			return nil, err
		}
	}
	return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: o.rev()}}, nil
}

// leaseTable describes etcd's leases as leaseTable describes the Store's:
// "id ttl/remaining: keys", the remaining TTL as persisted.
func (o *oracle) leaseTable() []string {
	tx := o.be.BatchTx()
	tx.LockOutsideApply()
	stored := schema.MustUnsafeGetAllLeases(tx)
	tx.Unlock()
	remaining := map[int64]int64{}
	for _, l := range stored {
		remaining[l.ID] = l.RemainingTTL
	}
	var out []string
	for _, l := range o.le.Leases() {
		ks := l.Keys()
		sort.Strings(ks)
		if ks == nil {
			ks = []string{}
		}
		out = append(out, fmt.Sprintf("%d %d/%d: %v", l.ID, l.TTL(), remaining[int64(l.ID)], ks))
	}
	sort.Strings(out)
	return out
}

// storedLeases describes the lease areas of etcd and of the Store, which
// must be byte for byte the same: "id: value".
func (o *oracle) storedLeases() []string {
	tx := o.be.BatchTx()
	tx.LockOutsideApply()
	defer tx.Unlock()
	var out []string
	tx.UnsafeForEach(schema.Lease, func(k, v []byte) error {
		out = append(out, fmt.Sprintf("%x: %x", k, v))
		return nil
	})
	return out
}

func storedLeases(t testing.TB, s *Store) []string {
	t.Helper()
	snap, err := s.be.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(&engineIterOptions{LowerBound: leaseAreaLower, UpperBound: leaseAreaUpper})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, fmt.Sprintf("%x: %x", it.Key()[1:], it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (o *oracle) rev() int64 { return o.kv.Rev() }

func (o *oracle) rangeReq(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp, _, err := etxn.Range(context.Background(), o.lg, o.kv, r, true)
	return resp, err
}

func (o *oracle) put(r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, _, err := etxn.Put(context.Background(), o.lg, o.le, o.kv, r)
	return resp, err
}

func (o *oracle) deleteRange(r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, _, err := etxn.DeleteRange(context.Background(), o.lg, o.kv, r)
	return resp, err
}

func (o *oracle) txn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, _, err := etxn.Txn(context.Background(), o.lg, r, false, o.kv, o.le, false)
	return resp, err
}

// compact is etcd's applierV3backend.Compaction, waiting for the physical
// compaction (always, so that later checks are deterministic).
func (o *oracle) compact(r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	ch, err := o.kv.Compact(traceutil.TODO(), r.Revision)
	if ch != nil {
		<-ch
	}
	if err != nil {
		return nil, err
	}
	rr, _ := o.kv.Range(context.Background(), []byte("compaction"), nil, emvcc.RangeOptions{})
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: rr.Rev}}, nil
}

func (o *oracle) hash(rev int64) (KeyValueHash, int64, error) {
	h, cur, err := o.kv.HashStorage().HashByRev(rev)
	return KeyValueHash{Hash: h.Hash, CompactRevision: h.CompactRevision, Revision: h.Revision}, cur, err
}

// tmpfsDir returns a temporary directory on tmpfs when there is one, for
// tests whose durability does not matter (etcd's backend fsyncs a lot).
func tmpfsDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "strata-mvcc-oracle-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// sameErr reports whether the oracle's error and ours mean the same.
func sameErr(oerr, err error) bool {
	if oerr == nil || err == nil {
		return oerr == nil && err == nil
	}
	for oe, e := range map[error]error{
		lease.ErrLeaseNotFound:    ErrLeaseNotFound,
		lease.ErrLeaseExists:      ErrLeaseExists,
		lease.ErrLeaseTTLTooLarge: ErrLeaseTTLTooLarge,
	} {
		if errors.Is(oerr, oe) {
			return errors.Is(err, e)
		}
	}
	return oerr.Error() == err.Error()
}

func show(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	return prototext.MarshalOptions{Multiline: true}.Format(m)
}

// reqGen makes random requests over a small keyspace, so that they
// collide often.
type reqGen struct {
	rng        *rand.Rand
	rev        int64 // current revision
	compactRev int64
}

var (
	genKeys   = []string{"a", "a\x00", "aa", "ab", "abc", "b", "ba", "c", "d", "\x00", "\xff", "\xff\xff"}
	genValues = []string{"", "v0", "v1", "v2", "a-longer-value"}
)

func (g *reqGen) key() []byte { return []byte(genKeys[g.rng.IntN(len(genKeys))]) }

func prefixEnd(key []byte) []byte {
	end := append([]byte(nil), key...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func (g *reqGen) rangeEnd(key []byte) []byte {
	switch n := g.rng.IntN(10); {
	case n < 4:
		return nil
	case n < 5:
		return []byte{0}
	case n < 7:
		return prefixEnd(key)
	default:
		return g.key()
	}
}

func (g *reqGen) value() []byte {
	v := genValues[g.rng.IntN(len(genValues))]
	if v == "" {
		return nil
	}
	return []byte(v)
}

// revAround returns a revision near the interesting ones.
func (g *reqGen) revAround() int64 {
	lo := min(g.compactRev-1, 0)
	if g.compactRev > 1 {
		lo = g.compactRev - 1
	}
	return lo + g.rng.Int64N(g.rev+3-lo)
}

func (g *reqGen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *reqGen) rangeReq() *pb.RangeRequest {
	r := &pb.RangeRequest{Key: g.key()}
	r.RangeEnd = g.rangeEnd(r.Key)
	r.Limit = []int64{0, 0, 0, 1, 2, 3, -1}[g.rng.IntN(7)]
	switch n := g.rng.IntN(10); {
	case n < 5:
	case n < 6:
		r.Revision = -1
	default:
		r.Revision = g.revAround()
	}
	if g.chance(0.3) {
		r.SortOrder = pb.RangeRequest_SortOrder(g.rng.IntN(3))
	}
	if g.chance(0.3) {
		r.SortTarget = pb.RangeRequest_SortTarget(g.rng.IntN(5))
	}
	r.KeysOnly = g.chance(0.15)
	r.CountOnly = g.chance(0.1)
	if g.chance(0.15) {
		r.MinModRevision = g.rng.Int64N(g.rev + 2)
	}
	if g.chance(0.15) {
		r.MaxModRevision = g.rng.Int64N(g.rev + 2)
	}
	if g.chance(0.15) {
		r.MinCreateRevision = g.rng.Int64N(g.rev + 2)
	}
	if g.chance(0.15) {
		r.MaxCreateRevision = g.rng.Int64N(g.rev + 2)
	}
	return r
}

func (g *reqGen) putReq() *pb.PutRequest {
	r := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.chance(0.3)}
	if g.chance(0.15) {
		r.Lease = g.leaseID()
	}
	if g.chance(0.1) {
		r.IgnoreValue, r.Value = true, nil
	}
	if g.chance(0.1) {
		r.IgnoreLease, r.Lease = true, 0
	}
	return r
}

// leaseID returns one of the IDs the lease requests use (1, 2 and 3 are
// granted at the start).
func (g *reqGen) leaseID() int64 { return 1 + g.rng.Int64N(6) }

func (g *reqGen) leaseGrantReq() *pb.LeaseGrantRequest {
	ttl := []int64{1, 10, 3600, -1, MaxLeaseTTL, MaxLeaseTTL + 1}[g.rng.IntN(6)]
	return &pb.LeaseGrantRequest{ID: g.leaseID(), TTL: ttl}
}

func (g *reqGen) leaseCheckpointReq() *pb.LeaseCheckpointRequest {
	r := &pb.LeaseCheckpointRequest{}
	for range 1 + g.rng.IntN(2) {
		r.Checkpoints = append(r.Checkpoints, &pb.LeaseCheckpoint{ID: g.leaseID(), Remaining_TTL: g.rng.Int64N(20)})
	}
	return r
}

func (g *reqGen) deleteReq() *pb.DeleteRangeRequest {
	r := &pb.DeleteRangeRequest{Key: g.key(), PrevKv: g.chance(0.5)}
	r.RangeEnd = g.rangeEnd(r.Key)
	return r
}

func (g *reqGen) compare() *pb.Compare {
	c := &pb.Compare{Key: g.key(), Target: pb.Compare_CompareTarget(g.rng.IntN(5)), Result: pb.Compare_CompareResult(g.rng.IntN(4))}
	if g.chance(0.3) {
		c.RangeEnd = g.rangeEnd(c.Key)
	}
	target := c.Target
	if g.chance(0.05) {
		target = pb.Compare_CompareTarget(g.rng.IntN(5)) // a union not matching the target
	}
	switch target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: g.rng.Int64N(4)}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: g.rng.Int64N(g.rev + 2)}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: g.rng.Int64N(g.rev + 2)}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: g.rng.Int64N(4)}
	}
	return c
}

func (g *reqGen) op(depth int) *pb.RequestOp {
	switch n := g.rng.IntN(100); {
	case n < 35:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
	case n < 65:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq()}}
	case n < 85 || depth >= 2:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq()}}
	default:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnTree(depth + 1)}}
	}
}

func (g *reqGen) txnTree(depth int) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for range g.rng.IntN(4) {
		r.Compare = append(r.Compare, g.compare())
	}
	for range g.rng.IntN(4) {
		r.Success = append(r.Success, g.op(depth))
	}
	for range g.rng.IntN(4) {
		r.Failure = append(r.Failure, g.op(depth))
	}
	return r
}

// etcdPanics reports whether etcd may break on the txn: a delete whose
// range_end is "\x00" is not seen by etcd's duplicate check, so the txn
// can delete a key and put it again. A put with an ignore flag then finds
// its key gone (etcd panics), and a compaction at the txn's revision loses
// the key (see keyIndex.doCompact). Both are tested on their own.
func etcdPanics(r *pb.TxnRequest) bool {
	var gteDels, puts []string
	var walk func(ops []*pb.RequestOp)
	walk = func(ops []*pb.RequestOp) {
		for _, op := range ops {
			switch tv := op.Request.(type) {
			case *pb.RequestOp_RequestDeleteRange:
				if string(tv.RequestDeleteRange.RangeEnd) == "\x00" {
					gteDels = append(gteDels, string(tv.RequestDeleteRange.Key))
				}
			case *pb.RequestOp_RequestPut:
				puts = append(puts, string(tv.RequestPut.Key))
			case *pb.RequestOp_RequestTxn:
				walk(tv.RequestTxn.Success)
				walk(tv.RequestTxn.Failure)
			}
		}
	}
	walk(r.Success)
	walk(r.Failure)
	for _, d := range gteDels {
		for _, p := range puts {
			if p >= d {
				return true
			}
		}
	}
	return false
}

// txnReq returns a valid txn.
func (g *reqGen) txnReq() *pb.TxnRequest {
	for {
		r := g.txnTree(0)
		if ValidateTxn(r, 0) == nil && !etcdPanics(r) {
			return r
		}
	}
}

// diffRun is one random sequence applied to the oracle and to a Store.
type diffRun struct {
	t       *testing.T
	g       *reqGen
	o       *oracle
	s       *Store
	reopen  func() *Store // closes s and opens it again
	applied uint64
	ops     int
	label   string
	// noCompact leaves compactions out of the batches (the watch test
	// makes them steps of their own).
	noCompact bool
}

func (d *diffRun) fail(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf("%s op %d: %s", d.label, d.ops, fmt.Sprintf(format, args...))
}

var diffTrace = os.Getenv("STRATA_MVCC_DIFF_TRACE") != ""

func (d *diffRun) trace(format string, args ...any) {
	if diffTrace {
		d.t.Logf(format, args...)
	}
}

func (d *diffRun) check(what string, req, oresp proto.Message, oerr error, resp proto.Message, err error) {
	d.t.Helper()
	d.ops++
	d.trace("op %d %s %v -> %v err=%v", d.ops, what, req, resp, err)
	if !sameErr(oerr, err) {
		d.fail("%s %s: etcd error %v, ours %v", what, show(req), oerr, err)
	}
	if oerr == nil && !proto.Equal(oresp, resp) {
		d.fail("%s %s:\netcd:\n%s\nours:\n%s", what, show(req), show(oresp), show(resp))
	}
}

// syncGen refreshes the generator's view of the revisions.
func (d *diffRun) syncGen() {
	d.g.rev = d.o.rev()
}

// batch applies a random batch of requests through one WriteBatch.
func (d *diffRun) batch() {
	w, err := d.s.NewWriteBatch()
	if err != nil {
		d.fail("NewWriteBatch: %v", err)
	}
	var waits []<-chan struct{}
	n := 1 + d.g.rng.IntN(8)
	for range n {
		d.syncGen()
		k := d.g.rng.IntN(100)
		if d.noCompact {
			k = d.g.rng.IntN(93)
		}
		switch {
		case k < 27:
			req := d.g.putReq()
			if ValidatePut(req) != nil {
				continue
			}
			or, oerr := d.o.put(req)
			r, err := w.Put(req)
			d.check("put", req, or, oerr, r, err)
		case k < 40:
			req := d.g.deleteReq()
			or, oerr := d.o.deleteRange(req)
			r, err := w.DeleteRange(req)
			d.check("delete", req, or, oerr, r, err)
		case k < 75:
			req := d.g.txnReq()
			or, oerr := d.o.txn(req)
			r, err := w.Txn(req)
			d.check("txn", req, or, oerr, r, err)
		case k < 82:
			req := d.g.rangeReq()
			if ValidateRange(req) != nil {
				continue
			}
			or, oerr := d.o.rangeReq(req)
			r, err := w.Range(req)
			d.check("batch range", req, or, oerr, r, err)
		case k < 86:
			req := d.g.leaseGrantReq()
			or, oerr := d.o.leaseGrant(req)
			r, err := w.LeaseGrant(req)
			d.check("lease grant", req, or, oerr, r, err)
		case k < 90:
			req := &pb.LeaseRevokeRequest{ID: d.g.leaseID()}
			or, oerr := d.o.leaseRevoke(req)
			r, err := w.LeaseRevoke(req)
			d.check("lease revoke", req, or, oerr, r, err)
		case k < 93:
			req := d.g.leaseCheckpointReq()
			or, oerr := d.o.leaseCheckpoint(req)
			r, err := w.LeaseCheckpoint(req)
			d.check("lease checkpoint", req, or, oerr, r, err)
		default:
			req := &pb.CompactionRequest{Revision: d.g.revAround(), Physical: d.g.chance(0.5)}
			or, oerr := d.o.compact(req)
			r, done, err := w.Compact(req)
			d.check("compact", req, or, oerr, r, err)
			if err == nil {
				d.g.compactRev = req.Revision
			}
			if req.Physical && done != nil {
				waits = append(waits, done)
			}
		}
		if w.Rev() != d.o.rev() {
			d.fail("batch revision %d, etcd %d", w.Rev(), d.o.rev())
		}
	}
	d.applied += uint64(1 + d.g.rng.IntN(3))
	d.trace("commit %d", d.applied)
	if err := w.Commit(d.applied); err != nil {
		d.fail("commit: %v", err)
	}
	for _, c := range waits {
		<-c
	}
}

// step does a random batch or a random check.
func (d *diffRun) step() {
	d.syncGen()
	switch k := d.g.rng.IntN(100); {
	case k < 75:
		d.batch()
	case k < 90:
		req := d.g.rangeReq()
		if ValidateRange(req) != nil {
			return
		}
		or, oerr := d.o.rangeReq(req)
		r, err := d.s.Range(context.Background(), req)
		d.check("range", req, or, oerr, r, err)
	case k < 93:
		req := d.g.txnReq()
		if !IsTxnReadOnly(req) {
			return
		}
		or, oerr := d.o.txn(req)
		v, err := d.s.View()
		if err != nil {
			d.fail("view: %v", err)
		}
		r, err := v.Txn(context.Background(), req)
		v.Close()
		d.check("view txn", req, or, oerr, r, err)
	case k < 97:
		rev := int64(0)
		if d.g.chance(0.5) {
			rev = d.g.revAround()
		}
		d.checkHash(rev)
	default:
		if d.reopen == nil {
			d.batch()
			return
		}
		d.trace("restart")
		d.s = d.reopen()
		d.o.reopen()
		d.checkState()
		d.checkLeases()
	}
}

// checkLeases compares the lease tables, in memory and as stored.
func (d *diffRun) checkLeases() {
	d.t.Helper()
	if got, want := leaseTable(d.s), d.o.leaseTable(); !slices.Equal(got, want) {
		d.fail("leases %q, etcd %q", got, want)
	}
	if got, want := storedLeases(d.t, d.s), d.o.storedLeases(); !slices.Equal(got, want) {
		d.fail("stored leases %q, etcd %q", got, want)
	}
}

func (d *diffRun) checkHash(rev int64) {
	d.t.Helper()
	d.s.waitCompactions() // the oracle always waits: compaction hashes must be there
	oh, ocur, oerr := d.o.hash(rev)
	h, cur, err := d.s.HashByRev(rev)
	if !sameErr(oerr, err) {
		d.fail("HashByRev(%d): etcd error %v, ours %v", rev, oerr, err)
	}
	if oerr == nil && (oh != h || ocur != cur) {
		d.fail("HashByRev(%d) = %+v %d, etcd %+v %d", rev, h, cur, oh, ocur)
	}
}

func (d *diffRun) checkState() {
	d.t.Helper()
	if d.s.Rev() != d.o.rev() {
		d.fail("Rev %d, etcd %d", d.s.Rev(), d.o.rev())
	}
	if d.s.CompactRev() != d.g.compactRev && !(d.g.compactRev == 0 && d.s.CompactRev() == -1) {
		d.fail("CompactRev %d, want %d", d.s.CompactRev(), d.g.compactRev)
	}
	if d.s.AppliedIndex() != d.applied {
		d.fail("AppliedIndex %d, want %d", d.s.AppliedIndex(), d.applied)
	}
}

// checkAll compares every key at every readable revision, and the hash.
func (d *diffRun) checkAll() {
	d.t.Helper()
	d.checkState()
	first := max(d.s.CompactRev(), 1)
	for rev := first; rev <= d.s.Rev(); rev++ {
		req := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		or, oerr := d.o.rangeReq(req)
		r, err := d.s.Range(context.Background(), req)
		d.check("final range", req, or, oerr, r, err)
	}
	d.checkHash(0) // waits for the compactions
	d.checkLeases()
	// The live bytes, kept up by the batches and compactions since the
	// last reopen, are the engine's.
	if live, scan := d.s.LiveBytes(), scanLiveBytes(d.t, d.s.be); live != scan {
		d.fail("LiveBytes %d, the engine holds %d", live, scan)
	}
}

// diffSeqs returns the number of random sequences per engine.
func diffSeqs(t *testing.T) int {
	if v := os.Getenv("STRATA_MVCC_DIFF_SEQS"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatalf("STRATA_MVCC_DIFF_SEQS: %v", err)
		}
		return n
	}
	switch {
	case testing.Short():
		return 50
	case raceEnabled:
		return 100
	}
	return 1000
}

// TestDifferential applies thousands of random request sequences (fixed
// seeds; 1000 per engine by default, 50 with -short, 100 under -race) to etcd's own MVCC store and request layer and to the Store, in
// random write batches with restarts, and compares every response, error,
// revision and hash. STRATA_MVCC_DIFF_SEQS sets the number of sequences
// per engine, STRATA_MVCC_DIFF_SEED the first seed.
func TestDifferential(t *testing.T) {
	seqs := diffSeqs(t)
	var seed0 uint64
	if v := os.Getenv("STRATA_MVCC_DIFF_SEED"); v != "" {
		fmt.Sscan(v, &seed0)
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		dir := tmpfsDir(t) // the engines' fsyncs cost time and prove nothing here
		odir := tmpfsDir(t)
		be := openBackendNoCleanup(t, e, filepath.Join(dir, "db"))
		defer func() { be.Close() }()
		totalOps := 0
		for i := range seqs {
			seed := seed0 + uint64(i)
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			wipe(t, be)
			batchLimit := 1 + rng.IntN(5)
			opts := &Options{CompactionBatchLimit: batchLimit, CompactionSleepInterval: -1}
			s, err := Open(be, opts)
			if err != nil {
				t.Fatal(err)
			}
			for id := range oracleLeases {
				mustGrant(t, s, id, 3600)
			}
			o := newOracle(t, odir, batchLimit, false)
			d := &diffRun{t: t, g: &reqGen{rng: rng, rev: 1}, o: o, s: s, label: fmt.Sprintf("seed %d", seed)}
			d.reopen = func() *Store {
				d.s.Close()
				if d.g.chance(0.2) { // reopen the engine itself too
					be.Close()
					be = openBackendNoCleanup(t, e, filepath.Join(dir, "db"))
				}
				s, err := Open(be, opts)
				if err != nil {
					d.fail("reopen: %v", err)
				}
				return s
			}
			steps := 10 + rng.IntN(40)
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s op %d: panic: %v", d.label, d.ops, r)
					}
				}()
				for range steps {
					d.step()
				}
			}()
			d.checkAll()
			totalOps += d.ops
			d.s.Close()
			o.close()
		}
		t.Logf("%d sequences, %d compared operations", seqs, totalOps)
	})
}
