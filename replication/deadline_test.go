package replication

import (
	"context"
	"errors"
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
