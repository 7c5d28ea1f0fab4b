package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestDeadlineWait checks a proposal waiting with a deadline gives up with
// context.DeadlineExceeded at the first tick of the clock after it, one
// without a deadline never does, and a stopped clock arms no more ticks.
func TestDeadlineWait(t *testing.T) {
	var clock deadlineClock
	n := &Node{stopc: make(chan struct{})}
	p := newProposal(&pb.InternalRaftRequest{})
	const timeout = 150 * time.Millisecond
	began := time.Now()
	_, err := n.answer(context.Background(), p, deadlineWait{deadline: began.Add(timeout), clock: &clock})
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("answer: %v, want the deadline exceeded", err)
	}
	if took < timeout || took > timeout+deadlineTick+time.Second {
		t.Errorf("gave up after %v, want %v to %v and some", took, timeout, timeout+deadlineTick)
	}
	if ch := (deadlineWait{}).tick(); ch != nil {
		t.Errorf("a wait without a deadline ticks")
	}
	// An answer ends a wait with a deadline, which its tick does not.
	p.done <- proposalResult{res: Result{Index: 7}}
	r, err := n.answer(context.Background(), p, deadlineWait{deadline: time.Now().Add(time.Hour), clock: &clock})
	if err != nil || r.res.Index != 7 {
		t.Fatalf("answer: %v, %v", r, err)
	}
	armed := clock.tick()
	clock.stop()
	select {
	case <-armed:
	default:
		t.Errorf("stop left a waiter's tick open")
	}
	if ch := clock.tick(); ch != nil {
		t.Errorf("a stopped clock armed a tick")
	}
}

// TestProposeWithinAcrossLeaderMoves proposes with a timeout through every
// member while leadership moves between them: a proposal retried on
// another member (the first one answered it is not the leader) keeps its
// caller's context, so no proposal ends cancelled, which its caller never
// asked for (a later attempt once ran with the earlier attempt's cancelled
// context, and a write that was applied was answered as cancelled).
func TestProposeWithinAcrossLeaderMoves(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	stop := make(chan struct{})
	errc := make(chan error, 3)
	var proposed atomic.Int64
	for i, n := range c.nodes {
		go func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					errc <- nil
					return
				default:
				}
				res, err := n.ProposeWithin(context.Background(), put(fmt.Sprint("k", i), fmt.Sprint(j)), 5*time.Second)
				if err == nil {
					err = res.Err
				}
				if errors.Is(err, context.Canceled) {
					errc <- fmt.Errorf("proposal %d through %s: %w", j, n.ID(), err)
					return
				}
				proposed.Add(1)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for move := range 6 {
		l := c.leader()
		next := c.nodes[(slices.Index(c.nodes, l)+1+move%2)%len(c.nodes)]
		if err := l.TransferLeadership(ctx, next.ID()); err != nil {
			t.Logf("move %d to %s: %v", move, next.ID(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	for range c.nodes {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d proposals", proposed.Load())
}

// TestForwardedProposeWithin checks a follower's ProposeWithin gives up at
// its timeout (within a tick of the node's deadline clock) while the leader
// cannot commit, both followers' fsyncs being held, and that the write then
// commits once they are released: the leader gave up on it only at the
// deadline the follower forwarded, and it may have entered the log.
func TestForwardedProposeWithin(t *testing.T) {
	c, gates := gatedCluster(t)
	l := c.leader()
	f := c.nodes[c.follower(l)]
	for _, n := range c.nodes {
		if n != l {
			gates[n].hold()
		}
	}
	const timeout = 300 * time.Millisecond
	began := time.Now()
	_, err := f.ProposeWithin(context.Background(), put("k", "v"), timeout)
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("forwarded ProposeWithin: %v, want the deadline exceeded", err)
	}
	if took < timeout || took > timeout+deadlineTick+time.Second {
		t.Errorf("gave up after %v, want %v to %v and some", took, timeout, timeout+deadlineTick)
	}
	for _, n := range c.nodes {
		gates[n].release()
	}
	res, err := f.ProposeWithin(context.Background(), put("k2", "v"), 10*time.Second)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
}
