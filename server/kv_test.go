package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/server"
)

// wantGRPC fails unless err is the gRPC error want: same code, same text
// (what clientv3 matches on).
func wantGRPC(t *testing.T, what string, err, want error) {
	t.Helper()
	got, w := status.Convert(err), status.Convert(want)
	if err == nil || got.Code() != w.Code() || got.Message() != w.Message() {
		t.Fatalf("%s: got %v, want code %v %q", what, err, w.Code(), w.Message())
	}
}

// TestSingleMember runs the KV and maintenance suite against one member of
// each engine.
func TestSingleMember(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, 1, eng, nil)
			cli := c.client()
			t.Run("KV", func(t *testing.T) { testKV(t, c, cli) })
			t.Run("Errors", func(t *testing.T) { testErrors(t, c, cli) })
			t.Run("Maintenance", func(t *testing.T) { testMaintenance(t, c, cli) })
			t.Run("HTTP", func(t *testing.T) { testHTTP(t, c) })
			t.Run("Snapshot", func(t *testing.T) { testSnapshot(t, c) })
		})
	}
}

func testKV(t *testing.T, c *cluster, cli *clientv3.Client) {
	ctx := ctxT(t)
	m := c.members[0]
	put, err := cli.Put(ctx, "kv/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	h := put.Header
	if h.ClusterId != m.ClusterID() || h.MemberId != m.MemberID() || h.RaftTerm == 0 || h.Revision < 2 {
		t.Fatalf("put header %v; want cluster %x member %x, a term and a revision", h, m.ClusterID(), m.MemberID())
	}
	rev := h.Revision
	if _, err := cli.Put(ctx, "kv/b", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "kv/c", "3"); err != nil {
		t.Fatal(err)
	}

	get, err := cli.Get(ctx, "kv/a")
	if err != nil {
		t.Fatal(err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "1" || get.Kvs[0].CreateRevision != rev || get.Kvs[0].Version != 1 {
		t.Fatalf("get kv/a: %v", get.Kvs)
	}
	if get.Header.Revision != rev+2 {
		t.Fatalf("get header revision %d, want the current revision %d", get.Header.Revision, rev+2)
	}
	// A serializable read, and a read at an old revision, still carry the
	// current revision in their header.
	old, err := cli.Get(ctx, "kv/", clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if len(old.Kvs) != 1 || old.Header.Revision != rev+2 {
		t.Fatalf("get at rev %d: %d kvs, header revision %d", rev, len(old.Kvs), old.Header.Revision)
	}
	pre, err := cli.Get(ctx, "kv/", clientv3.WithPrefix(), clientv3.WithLimit(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(pre.Kvs) != 2 || !pre.More || pre.Count != 3 {
		t.Fatalf("prefix get, limit 2: %d kvs, more %v, count %d", len(pre.Kvs), pre.More, pre.Count)
	}

	// Txn: compare-and-swap both ways, and a read-only txn.
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("kv/a"), "=", "1")).
		Then(clientv3.OpPut("kv/a", "10")).Else(clientv3.OpGet("kv/a")).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("txn cas: %v %v", txn, err)
	}
	txn, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("kv/a"), "=", "1")).
		Then(clientv3.OpPut("kv/a", "11")).Else(clientv3.OpGet("kv/a")).Commit()
	if err != nil || txn.Succeeded || string(txn.Responses[0].GetResponseRange().Kvs[0].Value) != "10" {
		t.Fatalf("txn failed cas: %v %v", txn, err)
	}
	cur := txn.Header.Revision
	ro, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("kv/b"), "=", 1)).
		Then(clientv3.OpGet("kv/b"), clientv3.OpGet("kv/c", clientv3.WithSerializable())).Commit()
	if err != nil || !ro.Succeeded || len(ro.Responses) != 2 || ro.Header.Revision != cur {
		t.Fatalf("read-only txn: %v %v", ro, err)
	}

	del, err := cli.Delete(ctx, "kv/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 3 || len(del.PrevKvs) != 3 {
		t.Fatalf("delete prefix: %v %v", del, err)
	}
	if del.Header.Revision != cur+1 {
		t.Fatalf("delete revision %d, want %d", del.Header.Revision, cur+1)
	}
	none, err := cli.Delete(ctx, "kv/nothing")
	if err != nil || none.Deleted != 0 || none.Header.Revision != cur+1 {
		t.Fatalf("delete of nothing: %v %v", none, err)
	}

	// Compaction: reads below it fail, at it work.
	comp, err := cli.Compact(ctx, rev+1, clientv3.WithCompactPhysical())
	if err != nil {
		t.Fatal(err)
	}
	if comp.Header.Revision != cur+1 {
		t.Fatalf("compact header revision %d, want %d", comp.Header.Revision, cur+1)
	}
	if _, err := cli.Get(ctx, "kv/a", clientv3.WithRev(rev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get below the compaction: %v, want ErrCompacted", err)
	}
	if _, err := cli.Get(ctx, "kv/a", clientv3.WithRev(rev+1)); err != nil {
		t.Fatalf("get at the compaction: %v", err)
	}
}

func testErrors(t *testing.T, c *cluster, cli *clientv3.Client) {
	ctx := ctxT(t)
	kv := pb.NewKVClient(cli.ActiveConnection())
	cur, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	rev := cur.Header.Revision

	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("x"), Revision: rev + 100})
	wantGRPC(t, "range at a future revision", err, rpctypes.ErrGRPCFutureRev)
	_, err = kv.Compact(ctx, &pb.CompactionRequest{Revision: rev + 100})
	wantGRPC(t, "compact at a future revision", err, rpctypes.ErrGRPCFutureRev)
	if _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	_, err = kv.Compact(ctx, &pb.CompactionRequest{Revision: rev})
	wantGRPC(t, "compact twice", err, rpctypes.ErrGRPCCompacted)
	if rev > 1 {
		_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("x"), Revision: rev - 1})
		wantGRPC(t, "range below the compaction", err, rpctypes.ErrGRPCCompacted)
	}

	_, err = kv.Put(ctx, &pb.PutRequest{})
	wantGRPC(t, "put of an empty key", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.Range(ctx, &pb.RangeRequest{})
	wantGRPC(t, "range of an empty key", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.DeleteRange(ctx, &pb.DeleteRangeRequest{})
	wantGRPC(t, "delete of an empty key", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("x"), IgnoreValue: true, Value: []byte("v")})
	wantGRPC(t, "put with ignore_value and a value", err, rpctypes.ErrGRPCValueProvided)
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("missing"), IgnoreValue: true})
	wantGRPC(t, "put with ignore_value of a missing key", err, rpctypes.ErrGRPCKeyNotFound)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("x"), SortOrder: 7})
	wantGRPC(t, "range with a bad sort order", err, rpctypes.ErrGRPCInvalidSortOption)

	ops := func(n int) []*pb.RequestOp {
		var out []*pb.RequestOp
		for i := range n {
			out = append(out, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: fmt.Appendf(nil, "ops/%d", i)}}})
		}
		return out
	}
	if _, err := kv.Txn(ctx, &pb.TxnRequest{Success: ops(128)}); err != nil {
		t.Fatalf("txn of 128 ops: %v", err)
	}
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: ops(129)})
	wantGRPC(t, "txn of 129 ops", err, rpctypes.ErrGRPCTooManyOps)
	dup := append(ops(2), ops(1)...)
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: dup})
	wantGRPC(t, "txn putting a key twice", err, rpctypes.ErrGRPCDuplicateKey)

	big := bytes.Repeat([]byte("v"), 1600*1024)
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: big})
	wantGRPC(t, "put over --max-request-bytes", err, rpctypes.ErrGRPCRequestTooLarge)
	// Just under the limit passes.
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: big[:1500*1024]}); err != nil {
		t.Fatalf("put under --max-request-bytes: %v", err)
	}

	// clientv3 maps the texts back to its own errors.
	if _, err := cli.Get(ctx, "x", clientv3.WithRev(rev+100)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("clientv3 get at a future revision: %v", err)
	}
	if _, err := cli.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("clientv3 put of an empty key: %v", err)
	}

	// Lease errors, with etcd's codes and texts.
	_, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 987654321})
	wantGRPC(t, "revoking an unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)
	if _, err := cli.Lease.Revoke(ctx, 987654321); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("clientv3 revoke of an unknown lease: %v", err)
	}
	_, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: mvcc.MaxLeaseTTL + 1})
	wantGRPC(t, "granting a too large TTL", err, rpctypes.ErrGRPCLeaseTTLTooLarge)
	lg, err := cli.Lease.Grant(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(lg.ID), TTL: 10})
	wantGRPC(t, "granting a lease twice", err, rpctypes.ErrGRPCLeaseExist)
	if _, err := cli.Lease.Revoke(ctx, lg.ID); err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewAuthClient(cli.ActiveConnection()).Authenticate(ctx, &pb.AuthenticateRequest{Name: "root", Password: "pw"})
	wantGRPC(t, "authenticate", err, rpctypes.ErrGRPCAuthNotEnabled)
	as, err := cli.Auth.AuthStatus(ctx)
	if err != nil || as.Enabled {
		t.Fatalf("auth status: %v %v", as, err)
	}
}

func testMaintenance(t *testing.T, c *cluster, cli *clientv3.Client) {
	ctx := ctxT(t)
	m := c.members[0]
	ep := c.endpoint(0)
	st, err := cli.Status(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != server.ServerVersion || st.Leader != m.MemberID() || st.RaftIndex == 0 || st.RaftTerm == 0 ||
		st.RaftAppliedIndex == 0 || st.DbSize <= 0 || st.DbSizeInUse <= 0 || st.DbSizeQuota != server.DefaultQuotaBackendBytes ||
		st.IsLearner || len(st.Errors) != 0 || st.Header.MemberId != m.MemberID() {
		t.Fatalf("status: %v", st)
	}
	h1, err := cli.HashKV(ctx, ep, 0)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := cli.HashKV(ctx, ep, h1.HashRevision)
	if err != nil || h2.Hash != h1.Hash || h1.HashRevision != h1.Header.Revision {
		t.Fatalf("hashkv: %v then %v %v", h1, h2, err)
	}
	al, err := cli.AlarmList(ctx)
	if err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarm list: %v %v", al, err)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 {
		t.Fatalf("member list: %v %v", ml, err)
	}
	if mb := ml.Members[0]; mb.ID != m.MemberID() || mb.Name != "m0" || len(mb.ClientURLs) != 1 || mb.ClientURLs[0] != m.ClientURLs()[0] {
		t.Fatalf("member: %v", mb)
	}
	hc, err := healthpb.NewHealthClient(cli.ActiveConnection()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health: %v %v", hc, err)
	}
	if _, err := cli.MoveLeader(ctx, m.MemberID()); err != nil {
		t.Fatalf("move leader to itself: %v", err)
	}
	if _, err = cli.Defragment(ctx, ep); err != nil {
		t.Fatalf("defragment: %v", err)
	}
	if g, err := cli.Get(ctx, "kv/a", clientv3.WithSerializable()); err != nil {
		t.Fatalf("get after defragment: %v %v", g, err)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func testHTTP(t *testing.T, c *cluster) {
	base := c.members[0].ClientURLs()[0]
	if code, body := httpGet(t, base+"/health"); code != 200 || body != `{"health":"true","reason":""}` {
		t.Fatalf("/health: %d %s", code, body)
	}
	for _, p := range []string{"/livez", "/readyz", "/readyz/linearizable_read", "/health?serializable=true"} {
		if code, body := httpGet(t, base+p); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	code, body := httpGet(t, base+"/version")
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil || v["etcdserver"] != server.ServerVersion || v["etcdcluster"] == "" {
		t.Fatalf("/version: %d %s", code, body)
	}
	_, body = httpGet(t, base+"/metrics")
	for _, name := range []string{
		"etcd_server_has_leader 1", "etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total",
		"etcd_server_proposals_applied_total", "etcd_server_proposals_pending", "etcd_server_proposals_failed_total",
		"etcd_mvcc_db_total_size_in_bytes", "etcd_mvcc_db_total_size_in_use_in_bytes", "grpc_server_handled_total",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// testSnapshot saves a snapshot as `etcdctl snapshot save` does and checks
// its framing.
func testSnapshot(t *testing.T, c *cluster) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "snap.db")
	_, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), clientv3.Config{Endpoints: []string{c.endpoint(0)}}, path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%512 != sha256.Size {
		t.Fatalf("snapshot of %d bytes: not a multiple of 512 plus the digest", len(b))
	}
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	if !bytes.Equal(sum[:], b[len(b)-sha256.Size:]) {
		t.Fatal("snapshot digest mismatch")
	}
	r, err := server.ReadSnapshot(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	eng := c.cfgs[0].Engine
	dir := filepath.Join(t.TempDir(), "restored")
	if err := eng.Restore(dir, r); err != nil {
		t.Fatalf("restore the snapshot's backup with %s: %v", eng.Name, err)
	}
	be, err := eng.Open(dir, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	st, err := mvcc.Open(be, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want, err := c.client().Get(ctx, "x", clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if st.Rev() != want.Header.Revision {
		t.Fatalf("restored store at revision %d, want %d", st.Rev(), want.Header.Revision)
	}
}

// TestQuota fills a member past a tiny quota: writes fail with "database
// space exceeded" and raise NOSPACE; reads and deletes still work.
func TestQuota(t *testing.T) {
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) { cfg.QuotaBackendBytes = 1 })
	cli := c.client()
	ctx := ctxT(t)
	kv := pb.NewKVClient(cli.ActiveConnection())
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("b")})
	wantGRPC(t, "put over the quota", err, rpctypes.ErrGRPCNoSpace)
	al, err := cli.AlarmList(ctx)
	if err != nil || len(al.Alarms) != 1 || al.Alarms[0].Alarm != pb.AlarmType_NOSPACE || al.Alarms[0].MemberID != c.members[0].MemberID() {
		t.Fatalf("alarm list: %v %v", al, err)
	}
	st, err := cli.Status(ctx, c.endpoint(0))
	if err != nil || len(st.Errors) != 1 {
		t.Fatalf("status errors: %v %v", st, err)
	}
	if code, _ := httpGet(t, c.members[0].ClientURLs()[0]+"/health"); code != http.StatusServiceUnavailable {
		t.Fatalf("/health with NOSPACE: %d", code)
	}
	if code, _ := httpGet(t, c.members[0].ClientURLs()[0]+"/health?exclude=NOSPACE"); code != http.StatusOK {
		t.Fatalf("/health?exclude=NOSPACE: %d", code)
	}
	if _, err := cli.Get(ctx, "a"); err != nil {
		t.Fatalf("get with NOSPACE: %v", err)
	}
	if _, err := cli.Delete(ctx, "a"); err != nil {
		t.Fatalf("delete with NOSPACE: %v", err)
	}
	for _, a := range al.Alarms {
		if _, err := cli.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			t.Fatal(err)
		}
	}
	if al, err := cli.AlarmList(ctx); err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarm list after disarm: %v %v", al, err)
	}
}

// TestQuotaThreeMembers: NOSPACE raised by one member (the only one with a
// tiny quota) is replicated: every member lists it and refuses puts, and
// disarming it through another member lets writes in everywhere.
func TestQuotaThreeMembers(t *testing.T) {
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) {
		if cfg.Name == "m0" {
			cfg.QuotaBackendBytes = 1
		}
	})
	ctx := ctxT(t)
	_, err := pb.NewKVClient(c.client(0).ActiveConnection()).Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("b")})
	wantGRPC(t, "put over the quota", err, rpctypes.ErrGRPCNoSpace)
	for i := range 3 {
		cli := c.client(i)
		waitFor(t, fmt.Sprintf("member %d to list NOSPACE", i), func() bool {
			al, err := cli.AlarmList(ctx)
			return err == nil && len(al.Alarms) == 1 && al.Alarms[0].Alarm == pb.AlarmType_NOSPACE && al.Alarms[0].MemberID == c.members[0].MemberID()
		})
		_, err := pb.NewKVClient(cli.ActiveConnection()).Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("b")})
		wantGRPC(t, fmt.Sprintf("put through member %d", i), err, rpctypes.ErrGRPCNoSpace)
		if _, err := cli.Grant(ctx, 60); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Fatalf("lease grant through member %d: %v, want %v", i, err, rpctypes.ErrNoSpace)
		}
	}
	cli := c.client(2)
	al, _ := cli.AlarmList(ctx)
	if _, err := cli.AlarmDisarm(ctx, (*clientv3.AlarmMember)(al.Alarms[0])); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 3; i++ {
		cli := c.client(i)
		waitFor(t, fmt.Sprintf("member %d to clear NOSPACE", i), func() bool {
			al, err := cli.AlarmList(ctx)
			return err == nil && len(al.Alarms) == 0
		})
		if _, err := cli.Put(ctx, "a", "b"); err != nil {
			t.Fatalf("put through member %d after disarm: %v", i, err)
		}
	}
}
