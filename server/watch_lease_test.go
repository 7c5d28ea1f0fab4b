package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/strata-kv/strata/server"
)

// watchLeaseTweak: progress notifications every 300ms, and a small
// --max-request-bytes so that watch responses are fragmented from
// 64 KiB + 512 KiB on.
func watchLeaseTweak(c *server.Config) {
	c.WatchProgressNotifyInterval = 300 * time.Millisecond
	c.MaxRequestBytes = 64 * 1024
}

// TestWatchLease runs the Watch and Lease suites against one member of
// each engine.
func TestWatchLease(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, 1, eng, watchLeaseTweak)
			cli := c.client()
			t.Run("Watch", func(t *testing.T) { testWatch(t, c, cli) })
			t.Run("WatchRaw", func(t *testing.T) { testWatchRaw(t, cli) })
			t.Run("Lease", func(t *testing.T) { testLease(t, cli, cli, cli) })
		})
	}
}

// nextWatch returns the next response of wch, failing after 10s.
func nextWatch(t *testing.T, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return wr
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response after 10s")
	}
	return clientv3.WatchResponse{}
}

// watchEvents collects n events from wch.
func watchEvents(t *testing.T, wch clientv3.WatchChan, n int) []*clientv3.Event {
	t.Helper()
	var evs []*clientv3.Event
	for len(evs) < n {
		wr := nextWatch(t, wch)
		if err := wr.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		evs = append(evs, wr.Events...)
	}
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	return evs
}

func evString(ev *clientv3.Event) string {
	s := fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value)
	if ev.PrevKv != nil {
		s += fmt.Sprintf(" prev=%s", ev.PrevKv.Value)
	}
	return s
}

func wantEvents(t *testing.T, evs []*clientv3.Event, want ...string) {
	t.Helper()
	var got []string
	for _, ev := range evs {
		got = append(got, evString(ev))
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "; "), strings.Join(want, "; "))
	}
}

func testWatch(t *testing.T, c *cluster, cli *clientv3.Client) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	m := c.members[0]

	wch := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	noPut := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithFilterPut())
	put, err := cli.Put(ctx, "w/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	first := put.Header.Revision
	cli.Put(ctx, "w/a", "2")
	cli.Put(ctx, "other", "x")
	cli.Delete(ctx, "w/a")
	wantEvents(t, watchEvents(t, wch, 3), "PUT w/a=1", "PUT w/a=2 prev=1", "DELETE w/a= prev=2")
	wantEvents(t, watchEvents(t, noPut, 1), "DELETE w/a=")

	// From a past revision: the history is replayed.
	hist := cli.Watch(ctx, "w/a", clientv3.WithRev(first))
	wr := nextWatch(t, hist)
	h := wr.Header
	if h.ClusterId != m.ClusterID() || h.MemberId != m.MemberID() || h.RaftTerm == 0 || h.Revision < first+3 {
		t.Fatalf("watch header %v", h)
	}
	evs := wr.Events
	if len(evs) < 3 {
		evs = append(evs, watchEvents(t, hist, 3-len(evs))...)
	}
	wantEvents(t, evs, "PUT w/a=1", "PUT w/a=2", "DELETE w/a=")

	// Periodic progress notifications (300ms here) of an idle watcher.
	pn := cli.Watch(ctx, "idle", clientv3.WithProgressNotify())
	if wr := nextWatch(t, pn); !wr.IsProgressNotify() || wr.Header.Revision < first+3 {
		t.Fatalf("progress notify: %+v", wr)
	}
	// Requested progress (kube-apiserver's consistent reads).
	pr := cli.Watch(ctx, "idle2")
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "requested progress notification", func() bool {
		select {
		case wr := <-pr:
			return wr.IsProgressNotify()
		case <-time.After(200 * time.Millisecond):
			cli.RequestProgress(ctx)
			return false
		}
	})

	// Cancelling a watch closes its channel.
	cctx, ccancel := context.WithCancel(ctx)
	cw := cli.Watch(cctx, "w/", clientv3.WithPrefix())
	ccancel()
	waitFor(t, "cancelled watch closes", func() bool {
		select {
		case _, ok := <-cw:
			return !ok
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})

	// A watch from a compacted revision fails with ErrCompacted.
	cr, err := cli.Put(ctx, "w/b", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, cr.Header.Revision); err != nil {
		t.Fatal(err)
	}
	wr = nextWatch(t, cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(first)))
	if !errors.Is(wr.Err(), rpctypes.ErrCompacted) || wr.CompactRevision != cr.Header.Revision {
		t.Fatalf("watch from a compacted revision: %v, compact revision %d, want %d", wr.Err(), wr.CompactRevision, cr.Header.Revision)
	}

	// Fragments: 12 values of 60 KiB replayed in one response (above
	// 64 KiB + 512 KiB) reach a fragment watcher whole.
	var frFirst int64
	val := strings.Repeat("v", 60*1024)
	for i := range 12 {
		p, err := cli.Put(ctx, fmt.Sprintf("frag/%02d", i), val)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			frFirst = p.Header.Revision
		}
	}
	fw := cli.Watch(ctx, "frag/", clientv3.WithPrefix(), clientv3.WithRev(frFirst), clientv3.WithFragment())
	evs = watchEvents(t, fw, 12)
	for i, ev := range evs {
		if string(ev.Kv.Key) != fmt.Sprintf("frag/%02d", i) || len(ev.Kv.Value) != len(val) {
			t.Fatalf("fragment watch event %d: %s", i, ev.Kv.Key)
		}
	}
}

// testWatchRaw checks the stream's responses at the gRPC level: created,
// events, cancel, refusals and fragments.
func testWatchRaw(t *testing.T, cli *clientv3.Client) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *pb.WatchResponse {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	create := func(cr *pb.WatchCreateRequest) {
		t.Helper()
		if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}); err != nil {
			t.Fatal(err)
		}
	}
	create(&pb.WatchCreateRequest{Key: []byte("raw/"), RangeEnd: []byte("raw0")})
	r := recv()
	if !r.Created || r.Canceled || r.Header.MemberId == 0 || r.Header.RaftTerm == 0 {
		t.Fatalf("created: %v", r)
	}
	id := r.WatchId
	// A refused creation: created and canceled, ID -1, the reason.
	create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	if r := recv(); !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != "mvcc: watcher range is empty" {
		t.Fatalf("empty range: %v", r)
	}
	create(&pb.WatchCreateRequest{Key: []byte("x"), WatchId: 100})
	if r := recv(); !r.Created || r.Canceled || r.WatchId != 100 {
		t.Fatalf("created with an ID: %v", r)
	}
	create(&pb.WatchCreateRequest{Key: []byte("x"), WatchId: 100})
	if r := recv(); !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != "mvcc: duplicate watch ID provided on the WatchStream" {
		t.Fatalf("duplicate ID: %v", r)
	}
	if _, err := cli.Put(ctx, "raw/1", "v"); err != nil {
		t.Fatal(err)
	}
	if r := recv(); r.WatchId != id || len(r.Events) != 1 || r.Events[0].Type != mvccpb.PUT || string(r.Events[0].Kv.Key) != "raw/1" {
		t.Fatalf("event: %v", r)
	}
	// Fragments at the gRPC level.
	var first int64
	for i := range 12 {
		p, err := cli.Put(ctx, fmt.Sprintf("rawfrag/%02d", i), strings.Repeat("f", 60*1024))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p.Header.Revision
		}
	}
	create(&pb.WatchCreateRequest{Key: []byte("rawfrag/"), RangeEnd: []byte("rawfrag0"), StartRevision: first, Fragment: true})
	r = recv()
	if !r.Created {
		t.Fatalf("created: %v", r)
	}
	fid := r.WatchId
	n, fragments := 0, 0
	for n < 12 {
		r := recv()
		if r.WatchId != fid {
			t.Fatalf("fragment response of watch %d", r.WatchId)
		}
		n += len(r.Events)
		if r.Fragment {
			fragments++
		}
	}
	if fragments == 0 {
		t.Fatal("the replay came in unfragmented responses")
	}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}); err != nil {
		t.Fatal(err)
	}
	if r := recv(); !r.Canceled || r.WatchId != id {
		t.Fatalf("cancel: %v", r)
	}
	// The stream ends cleanly when the client closes it.
	stream.CloseSend()
	cancel()
	if _, err := stream.Recv(); err == nil {
		t.Fatal("stream still open after cancel")
	}
}

// testLease runs the lease suite; grants and revokes go through gc, keep
// alives and time-to-live questions through kc, watches through wc.
func testLease(t *testing.T, gc, kc, wc *clientv3.Client) {
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	g, err := gc.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID == 0 || g.TTL != 30 {
		t.Fatalf("grant: %+v", g)
	}
	// An ID of the client's choice.
	mine := clientv3.LeaseID(0x1234 + time.Now().UnixNano()%1000)
	g2, err := pb.NewLeaseClient(gc.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(mine), TTL: 30})
	if err != nil || g2.ID != int64(mine) {
		t.Fatalf("grant with an ID: %v %v", g2, err)
	}
	if _, err := gc.Put(ctx, "lease/a", "1", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Put(ctx, "lease/b", "2", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Put(ctx, "lease/c", "3", clientv3.WithLease(clientv3.LeaseID(424242))); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("put with an unknown lease: %v", err)
	}

	ttl, err := kc.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.ID != g.ID || ttl.GrantedTTL != 30 || ttl.TTL <= 0 || ttl.TTL > 30 || len(ttl.Keys) != 2 ||
		string(ttl.Keys[0]) != "lease/a" || string(ttl.Keys[1]) != "lease/b" {
		t.Fatalf("time to live: %+v %v", ttl, err)
	}
	if ttl, err := kc.TimeToLive(ctx, 777777); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of an unknown lease: %+v %v", ttl, err)
	}

	ka, err := kc.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.ID != g.ID || ka.TTL != 30 {
		t.Fatalf("keep alive once: %+v %v", ka, err)
	}
	if _, err := kc.KeepAliveOnce(ctx, 777777); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keep alive of an unknown lease: %v", err)
	}
	// At the gRPC level an unknown lease is a TTL of 0, not an error.
	ks, err := pb.NewLeaseClient(kc.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{777777, int64(g.ID)} {
		if err := ks.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		r, err := ks.Recv()
		if err != nil || r.ID != id || (id == 777777) != (r.TTL == 0) || r.Header.MemberId == 0 {
			t.Fatalf("keep alive %d: %v %v", id, r, err)
		}
	}
	ks.CloseSend()

	kach, err := kc.KeepAlive(ctx, clientv3.LeaseID(mine))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-kach:
		if r == nil || r.ID != mine || r.TTL != 30 {
			t.Fatalf("keep alive: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no keep alive response")
	}

	ls, err := kc.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, l := range ls.Leases {
		if l.ID == g.ID || l.ID == mine {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("leases %v lack %x or %x", ls.Leases, g.ID, mine)
	}

	// Revoking deletes the keys, with DELETE events.
	wch := wc.Watch(ctx, "lease/", clientv3.WithPrefix())
	if err := wc.RequestProgress(ctx); err != nil { // the watch is set up
		t.Fatal(err)
	}
	for wr := nextWatch(t, wch); !wr.IsProgressNotify(); wr = nextWatch(t, wch) {
		if len(wr.Events) > 0 {
			t.Fatalf("unexpected events %v", wr.Events)
		}
	}
	if _, err := gc.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, watchEvents(t, wch, 2), "DELETE lease/a=", "DELETE lease/b=")
	if r, err := gc.Get(ctx, "lease/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("keys of a revoked lease: %v %v", r, err)
	}
	if _, err := gc.Revoke(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if ttl, err := kc.TimeToLive(ctx, g.ID); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of a revoked lease: %+v %v", ttl, err)
	}

	// Expiry: a 1s lease not kept alive goes, with its key.
	short, err := gc.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Put(ctx, "lease/short", "x", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, watchEvents(t, wch, 2), "PUT lease/short=x", "DELETE lease/short=")
	if ttl, err := kc.TimeToLive(ctx, short.ID); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of an expired lease: %+v %v", ttl, err)
	}
	if _, err := gc.Revoke(ctx, clientv3.LeaseID(mine)); err != nil {
		t.Fatal(err)
	}
}

// TestWatchLeaseThreeMembers watches on followers while writing through
// the leader, and uses leases through followers, on bbolt.
func TestWatchLeaseThreeMembers(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, engines()[0], watchLeaseTweak)
	ctx := ctxT(t)
	lead := c.leader()
	f1, f2 := (lead+1)%3, (lead+2)%3
	lc, c1, c2 := c.client(lead), c.client(f1), c.client(f2)

	wch := c1.Watch(ctx, "fw/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if wr := nextWatch(t, c1.Watch(ctx, "x", clientv3.WithProgressNotify())); !wr.IsProgressNotify() {
		t.Fatalf("progress notify on a follower: %+v", wr)
	}
	var want []string
	for i := range 50 {
		k := fmt.Sprintf("fw/%d", i%5)
		if _, err := lc.Put(ctx, k, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		ev := fmt.Sprintf("PUT %s=%d", k, i)
		if i >= 5 {
			ev += fmt.Sprintf(" prev=%d", i-5)
		}
		want = append(want, ev)
	}
	wantEvents(t, watchEvents(t, wch, 50), want...)
	if wr := nextWatch(t, c2.Watch(ctx, "fw/", clientv3.WithPrefix(), clientv3.WithRev(1))); len(wr.Events) == 0 || wr.Header.MemberId != c.members[f2].MemberID() {
		t.Fatalf("replay on follower %d: %+v", f2, wr)
	}

	t.Run("Lease", func(t *testing.T) { testLease(t, c1, c2, c.client(lead)) })
}

// TestWatchStreamsEnd checks that Watch and LeaseKeepAlive streams leave
// no goroutine behind once clients close or abandon them. It is not
// parallel, so that no other test's goroutines come and go meanwhile.
func TestWatchStreamsEnd(t *testing.T) {
	c := newCluster(t, 1, engines()[0], watchLeaseTweak)
	cli := c.client()
	ctx := ctxT(t)
	conn := cli.ActiveConnection()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	// Warm up the connection.
	s, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	time.Sleep(100 * time.Millisecond)
	ignore := goleak.IgnoreCurrent()

	for i := range 20 {
		sctx, cancel := context.WithCancel(ctx)
		if i%2 == 0 {
			sctx = clientv3.WithRequireLeader(sctx)
		}
		ws, err := pb.NewWatchClient(conn).Watch(sctx)
		if err != nil {
			t.Fatal(err)
		}
		ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1, ProgressNotify: true}}})
		if r, err := ws.Recv(); err != nil || !r.Created {
			t.Fatalf("created: %v %v", r, err)
		}
		ls, err := pb.NewLeaseClient(conn).LeaseKeepAlive(sctx)
		if err != nil {
			t.Fatal(err)
		}
		ls.Send(&pb.LeaseKeepAliveRequest{ID: int64(g.ID)})
		if r, err := ls.Recv(); err != nil || r.TTL != 60 {
			t.Fatalf("keep alive: %v %v", r, err)
		}
		if i%3 == 0 {
			// Half-closed: the server keeps the stream until the
			// client goes.
			ws.CloseSend()
			ls.CloseSend()
		}
		cancel()
	}
	w := clientv3.NewWatcher(cli)
	wch := w.Watch(ctx, "k", clientv3.WithRev(1))
	nextWatch(t, wch)
	w.Close()
	goleak.VerifyNone(t, ignore)
}

// TestWatchRequireLeader: a watch asking for a leader ends with "no
// leader" once its member has lost the leader, and a new one is refused.
func TestWatchRequireLeader(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, engines()[0], nil)
	lead := c.leader()
	f := (lead + 1) % 3
	cli := c.client(f)
	ctx := clientv3.WithRequireLeader(ctxT(t))
	wch := cli.Watch(ctx, "k")
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	watchEvents(t, wch, 1)
	for i := range c.members {
		if i != f {
			c.members[i].Close()
			c.members[i] = nil
		}
	}
	wr := nextWatch(t, wch)
	if !errors.Is(wr.Err(), rpctypes.ErrNoLeader) {
		t.Fatalf("watch after losing the leader: %v", wr.Err())
	}
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err == nil {
		_, err = stream.Recv()
	}
	wantGRPC(t, "watch without a leader", err, rpctypes.ErrGRPCNoLeader)
}

// TestCloseEndsStreams: Close ends open Watch and LeaseKeepAlive streams
// with "server stopped" at once, rather than waiting for them.
func TestCloseEndsStreams(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, engines()[0], nil)
	cli := c.client()
	ctx := ctxT(t)
	ws, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k")}}})
	if r, err := ws.Recv(); err != nil || !r.Created {
		t.Fatalf("created: %v %v", r, err)
	}
	ls, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ls.Send(&pb.LeaseKeepAliveRequest{ID: 1})
	if _, err := ls.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.members[0].Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with open streams", d)
	}
	_, err = ws.Recv()
	wantGRPC(t, "watch stream at Close", err, rpctypes.ErrGRPCStopped)
	_, err = ls.Recv()
	wantGRPC(t, "keep-alive stream at Close", err, rpctypes.ErrGRPCStopped)
}
