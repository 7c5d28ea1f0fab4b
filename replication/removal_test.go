package replication

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
)

// waitRemoved waits for n to report its removal.
func waitRemoved(t *testing.T, n *Node) {
	t.Helper()
	select {
	case <-n.Removed():
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not learn of its removal", n.ID())
	}
}

// TestRemovedMemberLearnsIt checks the three ways a removed node learns it
// is out: a follower cut off before it saw the entry removing it (it asks
// the leader), the same follower restarted on its old data, and a leader
// that removed itself.
func TestRemovedMemberLearnsIt(t *testing.T) {
	c := newCluster(t, bbolt.Engine(), 3, nil)
	l := c.leader()
	proposeAll(t, l, "k", 50, 4)
	var follower int
	for i, n := range c.nodes {
		if n != l {
			follower = i
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Through the other follower, so forwarding is on the path too.
	var via *Node
	for i, n := range c.nodes {
		if n != l && i != follower {
			via = n
		}
	}
	if err := via.RemoveMember(ctx, c.peers[follower].ID); err != nil {
		t.Fatal(err)
	}
	waitRemoved(t, c.nodes[follower])
	for _, n := range c.nodes {
		if n != c.nodes[follower] {
			select {
			case <-n.Removed():
				t.Fatalf("member %s reports removal", n.ID())
			default:
			}
		}
	}

	c.stop(follower)
	c.start(follower)
	waitRemoved(t, c.nodes[follower])
	c.stop(follower)

	// The cluster goes on with two members; the leader removes itself.
	l = c.leader()
	proposeAll(t, l, "m", 20, 2)
	if err := l.RemoveMember(ctx, l.ID()); err != nil && !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
	waitRemoved(t, l)
	var rest *Node
	for _, n := range c.nodes {
		if n != nil && n != l {
			rest = n
		}
	}
	waitFor(t, "the remaining member to lead", func() bool { return rest.IsLeader() })
	proposeAll(t, rest, "n", 20, 2)
	select {
	case <-rest.Removed():
		t.Fatalf("remaining member %s reports removal", rest.ID())
	default:
	}
}

// TestUpdateMemberAddress moves a follower to a new peer address: it
// restarts there with its data and catches up with writes made meanwhile.
//
// Not under the race detector: hashicorp/raft v1.8.0 writes a peer's
// address under its peer lock while the replication goroutine reads it
// without (hashicorp/raft#681, fixed upstream in dd851c0, unreleased), which
// -race reports in about one run in fifty. `make unit` runs it.
func TestUpdateMemberAddress(t *testing.T) {
	if raceEnabled {
		t.Skip("hashicorp/raft#681: data race on a peer's address change; run without -race (make unit)")
	}
	c := newCluster(t, bbolt.Engine(), 3, nil)
	l := c.leader()
	proposeAll(t, l, "a", 50, 4)
	var f int
	for i, n := range c.nodes {
		if n != l {
			f = i
			break
		}
	}
	c.stop(f)
	newAddr := freeAddrs(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.UpdateMember(ctx, "nope", newAddr); !errors.Is(err, ErrMemberNotFound) {
		t.Fatalf("update of an unknown member: %v, want ErrMemberNotFound", err)
	}
	if err := l.UpdateMember(ctx, c.peers[f].ID, string(l.transport.LocalAddr())); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("update to another member's address: %v, want ErrMemberExists", err)
	}
	if err := l.UpdateMember(ctx, c.peers[f].ID, newAddr); err != nil {
		t.Fatal(err)
	}
	m, ok := member(t, l, c.peers[f].ID)
	if !ok || m.Addr != newAddr || m.Learner {
		t.Fatalf("member after update: %+v (found %v), want a voter at %s", m, ok, newAddr)
	}
	proposeAll(t, l, "b", 50, 4)
	c.addrs[f] = newAddr
	c.start(f)
	c.waitConverged()
	if got := countPrefix(t, c.nodes[f], false, "b"); got != 50 {
		t.Fatalf("moved member has %d of 50 writes made while it moved", got)
	}
}
