package mvcc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/pkg/v3/traceutil"
	etxn "go.etcd.io/etcd/server/v3/etcdserver/txn"
	"go.etcd.io/etcd/server/v3/lease"
	"go.etcd.io/etcd/server/v3/storage/backend"
	emvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// oracle is etcd v3.7.3's own MVCC store with etcd's request layer
// (server/etcdserver/txn) on top: the reference the differential tests
// compare the Store with.
type oracle struct {
	cfg  emvcc.StoreConfig
	be   backend.Backend
	path string
	kv   emvcc.KV
	le   *lease.FakeLessor
	lg   *zap.Logger
}

// oracleLeases are the leases granted in the oracle and known to the
// Store's LeaseExists.
var oracleLeases = map[int64]bool{1: true, 2: true, 3: true}

func newOracle(t testing.TB, dir string, batchLimit int) *oracle {
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
	o := &oracle{be: backend.New(cfg), path: cfg.Path, lg: lg, le: &lease.FakeLessor{LeaseSet: map[lease.LeaseID]struct{}{}}}
	for id := range oracleLeases {
		o.le.LeaseSet[lease.LeaseID(id)] = struct{}{}
	}
	o.cfg = emvcc.StoreConfig{CompactionBatchLimit: batchLimit, CompactionSleepInterval: 1}
	o.kv = emvcc.NewStore(o.lg, o.be, o.le, o.cfg)
	return o
}

// reopen restarts etcd's store on the same backend, as a restart does.
func (o *oracle) reopen() {
	o.kv.Close()
	o.kv = emvcc.NewStore(o.lg, o.be, o.le, o.cfg)
}

func (o *oracle) close() {
	o.kv.Close()
	o.be.Close()
	os.Remove(o.path)
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
	if errors.Is(oerr, lease.ErrLeaseNotFound) {
		return errors.Is(err, ErrLeaseNotFound)
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
		r.Lease = []int64{1, 2, 3, 7}[g.rng.IntN(4)]
	}
	if g.chance(0.1) {
		r.IgnoreValue, r.Value = true, nil
	}
	if g.chance(0.1) {
		r.IgnoreLease, r.Lease = true, 0
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
		switch k := d.g.rng.IntN(100); {
		case k < 30:
			req := d.g.putReq()
			if ValidatePut(req) != nil {
				continue
			}
			or, oerr := d.o.put(req)
			r, err := w.Put(req)
			d.check("put", req, or, oerr, r, err)
		case k < 45:
			req := d.g.deleteReq()
			or, oerr := d.o.deleteRange(req)
			r, err := w.DeleteRange(req)
			d.check("delete", req, or, oerr, r, err)
		case k < 85:
			req := d.g.txnReq()
			or, oerr := d.o.txn(req)
			r, err := w.Txn(req)
			d.check("txn", req, or, oerr, r, err)
		case k < 93:
			req := d.g.rangeReq()
			if ValidateRange(req) != nil {
				continue
			}
			or, oerr := d.o.rangeReq(req)
			r, err := w.Range(req)
			d.check("batch range", req, or, oerr, r, err)
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
		d.trace("restart")
		d.s = d.reopen()
		d.o.reopen()
		d.checkState()
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
	d.checkHash(0)
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
			opts := &Options{CompactionBatchLimit: batchLimit, CompactionSleepInterval: -1,
				LeaseExists: func(id int64) bool { return oracleLeases[id] }}
			s, err := Open(be, opts)
			if err != nil {
				t.Fatal(err)
			}
			o := newOracle(t, odir, batchLimit)
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
