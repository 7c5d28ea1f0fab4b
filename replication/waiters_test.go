package replication

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

func TestWaiters(t *testing.T) {
	var w waiters
	if w.any() {
		t.Fatal("any with none registered")
	}
	a, b := w.register(1), w.register(2)
	if !w.any() {
		t.Fatal("none with two registered")
	}
	w.trigger(1, Result{Index: 7})
	w.trigger(1, Result{Index: 8}) // applied twice: never blocks, keeps the first
	w.trigger(3, Result{Index: 9}) // nobody's
	if r := <-a; r.Index != 7 {
		t.Fatalf("got index %d, want 7", r.Index)
	}
	select {
	case r := <-b:
		t.Fatalf("2 answered with %+v", r)
	default:
	}
	w.cancel(1)
	w.cancel(1) // twice: counted once
	w.cancel(2)
	if w.any() || w.count.Load() != 0 {
		t.Fatalf("count %d after cancelling all", w.count.Load())
	}
	w.trigger(2, Result{}) // cancelled: dropped
	select {
	case r := <-b:
		t.Fatalf("cancelled 2 answered with %+v", r)
	default:
	}

	ids := newRequestIDs()
	ids.next.Store(^uint64(0) - 1)
	for range 3 {
		if id := ids.draw(); id == 0 {
			t.Fatal("drew ID 0")
		}
	}
}

// slowAnswers is a fault-injecting Dialer: once on, every read on a peer
// service connection (protocol byte muxPeer) it dialed waits delay first,
// so the answers the leader sends a follower on its Forward stream arrive
// late. Raft's connections are untouched.
type slowAnswers struct {
	on    atomic.Bool
	delay time.Duration
}

func (s *slowAnswers) dial(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, s: s}, nil
}

type slowConn struct {
	net.Conn
	s     *slowAnswers
	once  sync.Once
	first atomic.Int32 // the first byte written: the protocol
}

func (c *slowConn) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.once.Do(func() { c.first.Store(int32(p[0])) })
	}
	return c.Conn.Write(p)
}

func (c *slowConn) Read(p []byte) (int, error) {
	if c.first.Load() == int32(muxPeer) && c.s.on.Load() {
		time.Sleep(c.s.delay)
	}
	return c.Conn.Read(p)
}

// TestForwardedAnsweredByOwnApply checks that a follower answers a
// proposal it forwarded from its own apply, as etcd's members do: with the
// leader's answers on the Forward stream held back for seconds, the put
// still returns as soon as the follower has applied it, with the
// follower's own result.
func TestForwardedAnsweredByOwnApply(t *testing.T) {
	slow := &slowAnswers{delay: 3 * time.Second}
	c := newCluster(t, engines()[0], 3, func(cfg *Config) { cfg.Dial = slow.dial })
	l := c.leader()
	f := c.nodes[c.follower(l)]
	ctx := context.Background()
	// The Forward stream is open before the answers slow down.
	if res, err := f.Propose(ctx, put("warm", "up")); err != nil || res.Err != nil {
		t.Fatalf("warm-up put: %v %v", err, res.Err)
	}
	slow.on.Store(true)
	t.Cleanup(func() { slow.on.Store(false) })
	for i := range 3 {
		began := time.Now()
		res, err := f.Propose(ctx, put("k", "v"))
		took := time.Since(began)
		if err != nil || res.Err != nil {
			t.Fatalf("put %d: %v %v", i, err, res.Err)
		}
		if took >= slow.delay {
			t.Fatalf("put %d took %v: it waited for the leader's answer", i, took)
		}
		if res.Index == 0 || f.AppliedIndex() < res.Index {
			t.Fatalf("put %d: index %d, follower applied %d", i, res.Index, f.AppliedIndex())
		}
		resp, ok := res.Resp.(*pb.PutResponse)
		if !ok {
			t.Fatalf("put %d: response %T", i, res.Resp)
		}
		var rev int64
		if err := f.View(ctx, false, func(s *mvcc.Store) error { rev = s.Rev(); return nil }); err != nil {
			t.Fatal(err)
		}
		if got := resp.GetHeader().GetRevision(); got == 0 || got > rev {
			t.Fatalf("put %d: response revision %d, follower's store at %d", i, got, rev)
		}
	}
}

// TestForwardedPhysicalCompaction checks a physical compaction forwarded
// by a follower answers once it is on disk on that follower, as etcd's
// member serving it answers: the follower's store already holds the
// compaction's hash (recorded as the compaction finishes).
func TestForwardedPhysicalCompaction(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	f := c.nodes[c.follower(l)]
	ctx := context.Background()
	var rev int64
	for i := range 200 {
		res, err := f.Propose(ctx, put(fmt.Sprintf("k%03d", i%20), "v"))
		if err != nil || res.Err != nil {
			t.Fatalf("put: %v %v", err, res.Err)
		}
		rev = res.Resp.(*pb.PutResponse).GetHeader().GetRevision()
	}
	res, err := f.Propose(ctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev, Physical: true}})
	if err != nil || res.Err != nil {
		t.Fatalf("compact: %v %v", err, res.Err)
	}
	var hashes []mvcc.KeyValueHash
	if err := f.View(ctx, false, func(s *mvcc.Store) error { hashes = s.Hashes(); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(hashes) == 0 || hashes[len(hashes)-1].Revision != rev {
		t.Fatalf("the follower's compaction hashes %v after its physical compaction at %d answered", hashes, rev)
	}
}
