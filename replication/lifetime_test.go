package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
)

// loadStore writes keys puts of valueSize bytes, txnOps to a request.
func loadStore(t *testing.T, n *Node, keys, valueSize, txnOps int) {
	t.Helper()
	val := make([]byte, valueSize)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	for i := 0; i < keys; i += txnOps {
		txn := &pb.TxnRequest{}
		for j := i; j < min(keys, i+txnOps); j++ {
			txn.Success = append(txn.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
				RequestPut: &pb.PutRequest{Key: fmt.Appendf(nil, "load/%08d", j), Value: val}}})
		}
		proposeRetry(t, n, &pb.InternalRaftRequest{Txn: txn})
	}
}

// TestDefragDuringLeadershipMove runs a long defragment on one member while
// leadership moves to it and away again: writes must go on being applied on
// that member during the defrag, not wait for its end (a leader change
// promotes or demotes the store; it must not wait for the defrag's hold on
// the store, nor make every apply and read wait behind it).
func TestDefragDuringLeadershipMove(t *testing.T) {
	c := newCluster(t, bbolt.Engine(), 3, nil)
	l := c.leader()
	// Most of a second of defrag, and about a second under the race detector.
	keys := 500_000
	if raceEnabled {
		keys = 100_000
	}
	loadStore(t, l, keys, 64, 1000)
	// Delete every other thousand keys: the defrag has space to give back.
	for i := 0; i < keys; i += 2000 {
		proposeRetry(t, l, &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{
			Key: fmt.Appendf(nil, "load/%08d", i), RangeEnd: fmt.Appendf(nil, "load/%08d", i+1000)}})
	}
	c.waitConverged()

	var m, other *Node
	for _, n := range c.nodes {
		switch {
		case n == l:
		case m == nil:
			m = n
		default:
			other = n
		}
	}

	defragDone := make(chan struct{})
	var defragErr error
	var defragTook time.Duration
	go func() {
		defer close(defragDone)
		began := time.Now()
		defragErr = m.WithBackend(func(be engine.Backend) error {
			return be.(engine.Defragmenter).Defrag(context.Background())
		})
		defragTook = time.Since(began)
	}()
	defer func() { <-defragDone }()
	running := func(what string) {
		t.Helper()
		select {
		case <-defragDone:
			t.Fatalf("%s: only after the defrag ended (it took %v)", what, defragTook)
		default:
		}
	}
	// A write applied on m proves its applies go on.
	writeVia := func(what string, i int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		began := time.Now()
		for {
			res, err := m.Propose(ctx, put(fmt.Sprintf("during/%d", i), "v"))
			if err == nil && res.Err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: put: %v %v", what, err, res.Err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := m.ReadBarrier(ctx); err != nil {
			t.Fatalf("%s: read barrier on %s: %v", what, m.ID(), err)
		}
		running(what)
		t.Logf("%s: write applied on %s in %v", what, m.ID(), time.Since(began))
	}

	time.Sleep(20 * time.Millisecond) // let the defrag take its hold
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	if err := l.TransferLeadership(ctx, m.ID()); err != nil {
		t.Fatalf("move leadership to %s: %v", m.ID(), err)
	}
	running("leadership moved to the defragmenting member")
	t.Logf("leadership moved to %s in %v", m.ID(), time.Since(began))
	writeVia("leader is the defragmenting member", 0)
	waitFor(t, m.ID()+" ready", func() bool { return m.IsLeader() && m.readyTerm.Load() == m.Term() })
	if err := m.TransferLeadership(ctx, other.ID()); err != nil {
		t.Fatalf("move leadership to %s: %v", other.ID(), err)
	}
	running("leadership moved away from the defragmenting member")
	writeVia("leader moved away from the defragmenting member", 1)

	<-defragDone
	if defragErr != nil {
		t.Fatalf("defrag: %v", defragErr)
	}
	t.Logf("defrag took %v", defragTook)
	c.waitConverged()
}

// TestAwaitFutureEndsAtStop checks that awaitFuture can end the wait on
// every kind of raft future the node waits for (it sets the futures'
// ShutdownCh, which a raft upgrade could move), and that a wait on a future
// raft has not answered ends when the stop channel closes.
func TestAwaitFutureEndsAtStop(t *testing.T) {
	c := newCluster(t, bbolt.Engine(), 3, func(cfg *Config) {
		// The leader must not step down (and answer the verify below)
		// within the test for want of its followers.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = 5*time.Second, 5*time.Second
	})
	l := c.leader()
	entry, _ := encodeEntry(nil, nil)
	stop := make(chan struct{})
	futures := map[string]raft.Future{
		"apply":         l.raft.Apply(entry, 0),
		"verify leader": l.raft.VerifyLeader(),
		"configuration": l.raft.GetConfiguration(),
		"snapshot":      l.raft.Snapshot(),
		"remove server": l.raft.RemoveServer("nobody", 0, 0),
		"transfer":      l.raft.LeadershipTransferToServer("nobody", "nowhere"),
	}
	for name, f := range futures {
		if !watchStop(f, stop) {
			t.Errorf("%s future (%T): no ShutdownCh to set", name, f)
		}
		f.Error()
	}

	// A verify that no follower can answer stays pending until the leader
	// steps down, long after the stop.
	for _, n := range c.nodes {
		if n != l {
			c.stop(c.index(n))
		}
	}
	// Under load a heartbeat a follower answered before it stopped may
	// still confirm a verify: try again then.
	close(stop)
	for attempt := 1; ; attempt++ {
		f := l.raft.VerifyLeader()
		stop := make(chan struct{})
		time.AfterFunc(50*time.Millisecond, func() { close(stop) })
		err := awaitFuture(f, stop)
		if errors.Is(err, ErrStopped) {
			break
		}
		if err != nil || attempt == 10 {
			t.Fatalf("await a pending verify, then stop: got %v, want %v", err, ErrStopped)
		}
	}
}
