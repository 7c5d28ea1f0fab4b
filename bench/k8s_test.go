package bench

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/mvcc"
)

// TestK8sMix checks the operation mix and the resources each operation
// touches against the tables in k8s.go.
func TestK8sMix(t *testing.T) {
	total := 0.0
	for op, share := range k8sOpShare {
		total += share
		sum := 0.0
		for _, s := range k8sResShare[op] {
			sum += s
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("%s: resource shares sum to %v", k8sOp(op), sum)
		}
	}
	if math.Abs(total-1) > 1e-9 {
		t.Fatalf("operation shares sum to %v", total)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const draws = 200000
	var ops [numK8sOps]int
	var res [numK8sOps][numK8sResources]int
	for range draws {
		op, rs := k8sChoose(r)
		ops[op]++
		res[op][rs]++
	}
	for op := range numK8sOps {
		if got := float64(ops[op]) / draws; math.Abs(got-k8sOpShare[op]) > 0.005 {
			t.Errorf("%s: %.3f of operations, want %.3f", op, got, k8sOpShare[op])
		}
		for rs := range numK8sResources {
			want := k8sResShare[op][rs]
			got := float64(res[op][rs]) / float64(max(ops[op], 1))
			if math.Abs(got-want) > 0.03 || (want == 0) != (res[op][rs] == 0) {
				t.Errorf("%s on %s: %.3f, want %.3f", op, k8sResources[rs].name, got, want)
			}
		}
	}
	// Updates and gets go mostly to small objects, as in a real cluster.
	if k8sResShare[k8sUpdate][k8sLeases] < 0.5 || k8sOpShare[k8sUpdate]+k8sOpShare[k8sGet] < 0.6 {
		t.Errorf("the mix is not dominated by gets and updates of leases")
	}
}

var k8sKeyRE = regexp.MustCompile(`^/registry/(leases/kube-node-lease/node-\d{8}|pods/ns-\d\d/pod-\d{8}|` +
	`configmaps/ns-\d\d/cm-\d{8}|events/ns-\d\d/pod-\d{8}\.[0-9a-f]{16})$`)

// TestK8sKeyLayout checks the keys and values of the loaded objects.
func TestK8sKeyLayout(t *testing.T) {
	var per [numK8sResources]int
	seen := map[string]bool{}
	namespaces := map[string]bool{}
	r := rand.New(rand.NewPCG(1, 1))
	for n := range uint64(1000) {
		res, key := k8sRecord(n)
		per[res]++
		if !k8sKeyRE.Match(key) || !bytes.HasPrefix(key, []byte(k8sResources[res].prefix())) {
			t.Fatalf("record %d: key %q", n, key)
		}
		if seen[string(key)] {
			t.Fatalf("record %d: key %q twice", n, key)
		}
		seen[string(key)] = true
		namespaces[string(bytes.Split(key, []byte("/"))[3])] = true
		now := time.Now()
		v := k8sValue(res, r, now)
		if len(v) != k8sResources[res].size || string(v[8:12]) != "k8s\x00" {
			t.Fatalf("record %d: value of %d bytes starting %q", n, len(v), v[:12])
		}
		if ts, ok := stampOf(v, now); !ok || !ts.Equal(now.Round(0)) {
			t.Fatalf("record %d: stamp %v, want %v", n, ts, now)
		}
	}
	if per != [numK8sResources]int{100, 400, 200, 300} {
		t.Errorf("objects per resource %v, want 10%% leases, 40%% pods, 20%% configmaps, 30%% events", per)
	}
	if len(namespaces) != k8sNamespaces+1 {
		t.Errorf("%d namespaces, want %d and kube-node-lease", len(namespaces), k8sNamespaces)
	}
}

// newK8sStore returns an MVCC store loaded with records k8s objects.
func newK8sStore(t *testing.T, records uint64) *MVCCStore {
	t.Helper()
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := mvcc.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &MVCCStore{Store: st, Backend: db}
	w, _ := Preset("k8s")
	if _, err := LoadWorkload(context.Background(), s, w, Config{Records: records, Clients: 2}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestK8sCAS drives updates and deletes whose cached revision is stale:
// each conflicts once, then succeeds on the revision read back, as the
// apiserver's GuaranteedUpdate does.
func TestK8sCAS(t *testing.T) {
	s := newK8sStore(t, 100)
	ctx := context.Background()
	k, err := newK8sRun(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for res, want := range [numK8sResources]int{10, 40, 20, 30} {
		if got := k.objs[res].len(); got != want {
			t.Fatalf("found %d %s, want %d", got, k8sResources[res].name, want)
		}
	}
	r := rand.New(rand.NewPCG(3, 3))
	leases := k.objs[k8sLeases]
	obj := leases.pick(r)
	// Someone else updates the lease: the cached revision is stale.
	other, err := s.Put(ctx, &pb.PutRequest{Key: obj.key, Value: []byte("renewed elsewhere")})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.update(ctx, r, k8sLeases, obj); err != nil {
		t.Fatal(err)
	}
	if n := k.tally.updateConflicts.Load(); n != 1 {
		t.Fatalf("%d conflicts, want 1", n)
	}
	got, err := s.Range(ctx, &pb.RangeRequest{Key: obj.key})
	if err != nil {
		t.Fatal(err)
	}
	kv := got.Kvs[0]
	if kv.ModRevision <= other.Header.Revision || string(kv.Value[8:12]) != "k8s\x00" || leases.revOf(obj) != kv.ModRevision {
		t.Fatalf("after the update: %+v, cached revision %d", kv, leases.revOf(obj))
	}

	// Deletes take events oldest first, and retry on a stale revision.
	events := k.objs[k8sEvents]
	oldest := events.fifo[events.head]
	if _, err := s.Put(ctx, &pb.PutRequest{Key: oldest.key, Value: []byte("updated elsewhere")}); err != nil {
		t.Fatal(err)
	}
	victim := events.claim(r)
	if victim != oldest {
		t.Fatalf("delete took %q, not the oldest event %q", victim.key, oldest.key)
	}
	if err := k.delete(ctx, k8sEvents, victim); err != nil {
		t.Fatal(err)
	}
	if n := k.tally.deleteConflicts.Load(); n != 1 || events.len() != 29 {
		t.Fatalf("%d delete conflicts, %d events left", n, events.len())
	}
	if got, _ := s.Range(ctx, &pb.RangeRequest{Key: victim.key}); len(got.Kvs) != 0 {
		t.Fatalf("%q not deleted", victim.key)
	}
	// An update of an object deleted meanwhile gives up: NotFound.
	if err := k.update(ctx, r, k8sEvents, victim); err != nil || k.tally.updateGone.Load() != 1 {
		t.Fatalf("update of a deleted object: %v, %d gone", err, k.tally.updateGone.Load())
	}

	// Creates make new names, which the next run of the workload finds.
	if err := k.create(ctx, r, k8sPods); err != nil {
		t.Fatal(err)
	}
	k2, err := newK8sRun(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if k2.objs[k8sPods].len() != 41 || k2.objs[k8sEvents].len() != 29 || k2.tag == k.tag {
		t.Fatalf("second run finds %d pods and %d events, tag %s", k2.objs[k8sPods].len(), k2.objs[k8sEvents].len(), k2.tag)
	}
	created := regexp.MustCompile(`^/registry/pods/ns-\d\d/pod-` + k.tag + `-1$`)
	found := false
	for _, o := range k2.objs[k8sPods].live {
		found = found || created.Match(o.key)
	}
	if !found {
		t.Fatalf("the created pod (pod-%s-1) is not found", k.tag)
	}
}

// compactingOnce fails the first range at a fixed revision with
// ErrCompacted, as a compaction between two pages of a list would.
type compactingOnce struct {
	*MVCCStore
	done bool
}

func (c *compactingOnce) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if r.Revision != 0 && !c.done {
		c.done = true
		return nil, mvcc.ErrCompacted
	}
	return c.MVCCStore.Range(ctx, r)
}

// TestK8sList checks pagination at one revision, and the relist after a
// compaction.
func TestK8sList(t *testing.T) {
	s := newK8sStore(t, 3000) // 1200 pods: three pages
	ctx := context.Background()
	k, err := newK8sRun(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.listOnce(ctx, []byte("/registry/pods/")); err != nil {
		t.Fatal(err)
	}
	if n := k.tally.listPages.Load(); n != 3 {
		t.Fatalf("%d pages, want 3", n)
	}
	k.tally = &k8sTally{}
	k.s = &compactingOnce{MVCCStore: s}
	r := rand.New(rand.NewPCG(1, 1))
	for {
		// A list of every namespace: one page, then a compacted second,
		// then three.
		if err := k.list(ctx, r, k8sPods); err != nil {
			t.Fatal(err)
		}
		if k.tally.listPages.Load() > 2 {
			break
		}
		k.tally = &k8sTally{} // a list in one namespace: one page
	}
	if p, rl := k.tally.listPages.Load(), k.tally.relists.Load(); p != 4 || rl != 1 {
		t.Fatalf("%d pages and %d relists, want 4 and 1", p, rl)
	}
}

// TestK8sCompactor checks kube-apiserver's compaction protocol: the first
// turn only notes the revision, the next compacts at it.
func TestK8sCompactor(t *testing.T) {
	s := newK8sStore(t, 10)
	ctx := context.Background()
	c := &compactor{s: s, track: newPauseTracker()}
	version, rev := c.compact(ctx, 0, 0)
	if version != 1 || rev != s.Store.Rev() || s.Store.CompactRev() > 0 {
		t.Fatalf("first turn: version %d, rev %d (store at %d), compacted at %d", version, rev, s.Store.Rev(), s.Store.CompactRev())
	}
	noted := rev
	version, _ = c.compact(ctx, version, rev)
	if version != 2 || s.Store.CompactRev() != noted {
		t.Fatalf("second turn: version %d, compacted at %d, want %d", version, s.Store.CompactRev(), noted)
	}
	// A compactor that lost the race takes up the stored version.
	if v, _ := c.compact(ctx, 0, 0); v != 2 {
		t.Fatalf("version %d after a lost race, want 2", v)
	}
	pauses, _ := c.track.report(time.Now(), 0, time.Second)
	if len(pauses) != 1 || pauses[0].Revision != noted || pauses[0].Error != "" {
		t.Fatalf("pauses %+v", pauses)
	}
}

// TestK8sOnMVCC runs the whole workload briefly in mvcc mode: watches over
// mvcc.WatchStream, compactions, the tallies.
func TestK8sOnMVCC(t *testing.T) {
	s := newK8sStore(t, 500)
	w, _ := Preset("k8s")
	res, err := Run(context.Background(), s, w, Config{Records: 500, Clients: 4, Duration: 600 * time.Millisecond,
		CompactInterval: 200 * time.Millisecond, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 {
		t.Fatalf("%d errors: %s", res.Errors, res.FirstError)
	}
	if res.Watch == nil || res.Watch.Events < res.Watch.Expected || res.Watch.Lagging != 0 || res.Watch.Latency.Count == 0 {
		t.Fatalf("watch %+v", res.Watch)
	}
	if len(res.Pauses) == 0 || s.Store.CompactRev() <= 0 {
		t.Fatalf("no compaction: %+v", res.Pauses)
	}
	names := map[string]bool{}
	for _, o := range res.PerOp {
		names[o.Op] = true
	}
	for _, op := range []string{"get", "update", "create", "delete"} {
		if !names[op] {
			t.Errorf("no %s in %d operations", op, res.Ops)
		}
	}
}
