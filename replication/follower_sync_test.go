package replication

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/replication/wal"
)

// syncGate is fault injection for a node's log (wal.Options.SyncFault):
// while held, the node's fsyncs wait for its release.
type syncGate struct {
	mu   sync.Mutex
	held chan struct{}
}

func (g *syncGate) wait() error {
	g.mu.Lock()
	h := g.held
	g.mu.Unlock()
	if h != nil {
		<-h
	}
	return nil
}

func (g *syncGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

func (g *syncGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

// gatedCluster starts a 3-member cluster whose members' log fsyncs can be
// held (syncGate), with one write applied everywhere.
func gatedCluster(t *testing.T) (*cluster, map[*Node]*syncGate) {
	t.Helper()
	byID := map[string]*syncGate{}
	c := newCluster(t, bbolt.Engine(), 3, func(cfg *Config) {
		g := byID[cfg.ID]
		if g == nil {
			g = new(syncGate)
			byID[cfg.ID] = g
		}
		cfg.OpenLog = func(dir string) (LogStore, error) {
			return wal.Open(dir, &wal.Options{SyncFault: g.wait})
		}
	})
	gates := map[*Node]*syncGate{}
	for i, n := range c.nodes {
		gates[n] = byID[c.peers[i].ID]
	}
	// Registered after the cluster's stop, so it runs first: no node
	// waits for a held fsync while it closes.
	t.Cleanup(func() {
		for _, g := range gates {
			g.release()
		}
	})
	l := c.leader()
	ctx := ctxT(t)
	if _, err := l.Propose(ctx, put("warm", "v")); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if err := n.fsm.applied.wait(ctx, l.AppliedIndex()); err != nil {
			t.Fatal(err)
		}
	}
	return c, gates
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestFollowerAppliesDuringItsSync checks raft patch 6 (third_party/raft
// STRATA.md): a follower whose fsync of new entries is slow applies them
// as soon as the leader commits them with the other follower, instead of
// after its own fsync (its watchers and the writes it forwarded wait for
// its apply).
func TestFollowerAppliesDuringItsSync(t *testing.T) {
	c, gates := gatedCluster(t)
	l := c.leader()
	slow := c.nodes[c.follower(l)]
	gates[slow].hold()
	ctx := ctxT(t)

	res, err := l.Propose(ctx, put("k", "v"))
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := slow.fsm.applied.wait(wctx, l.AppliedIndex()); err != nil {
		t.Fatalf("follower with a held fsync: applied %d, leader %d: %v", slow.AppliedIndex(), l.AppliedIndex(), err)
	}
	gates[slow].release()
}

// TestFollowerAnswersOnceDurable checks the other half of patch 6: a
// follower answers an AppendEntries only once its entries are durable, so
// with the other follower held too a write does not commit until one of
// them syncs.
func TestFollowerAnswersOnceDurable(t *testing.T) {
	c, gates := gatedCluster(t)
	l := c.leader()
	for _, n := range c.nodes {
		if n != l {
			gates[n].hold()
		}
	}
	ctx := ctxT(t)
	done := make(chan error, 1)
	go func() {
		res, err := l.Propose(ctx, put("k", "v"))
		if err == nil {
			err = res.Err
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write committed while both followers' fsyncs were held (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	gates[c.nodes[c.follower(l)]].release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("write not committed after a follower's fsync was released")
	}
}

// TestFollowerAppliesWithEntriesQueued checks raft patch 7: while a
// follower's fsync of one AppendEntries is slow, the leader holds its new
// entries back and sends the commit index on its own, so the follower
// applies what the leader commits with the other follower. Upstream's
// pipeline sent the next entries at once, and the follower's main loop
// waited for the slow fsync before it stored them, with the commit index
// queued behind them.
func TestFollowerAppliesWithEntriesQueued(t *testing.T) {
	c, gates := gatedCluster(t)
	l := c.leader()
	var fast, slow *Node
	for _, n := range c.nodes {
		if n != l {
			gates[n].hold()
			if fast == nil {
				fast = n
			} else {
				slow = n
			}
		}
	}
	ctx := ctxT(t)
	propose := func(key string) chan Result {
		ch := make(chan Result, 1)
		go func() {
			res, err := l.Propose(ctx, put(key, "v"))
			if err == nil {
				err = res.Err
			}
			if err != nil {
				t.Error(err)
			}
			ch <- res
		}()
		return ch
	}
	// Both followers hold the first write, unsynced; the second waits at
	// the leader (or, upstream, behind it in their main loops).
	first := propose("k1")
	time.Sleep(200 * time.Millisecond)
	second := propose("k2")
	time.Sleep(200 * time.Millisecond)
	gates[fast].release()
	r1 := <-first
	<-second
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := slow.fsm.applied.wait(wctx, r1.Index); err != nil {
		t.Fatalf("follower with a held fsync: applied %d, the first write is at %d: %v", slow.AppliedIndex(), r1.Index, err)
	}
	gates[slow].release()
}
