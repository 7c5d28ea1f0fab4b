package replication

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/backends/pebble"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication/wal"
)

func engines() []engine.Engine {
	return []engine.Engine{bbolt.Engine(), pebble.Engine(), badger.Engine()}
}

func openWAL(dir string) (LogStore, error) { return wal.Open(dir, nil) }

// freeAddrs reserves n loopback ports for raft to bind.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := freeport.Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

type cluster struct {
	t     testing.TB
	eng   engine.Engine
	dirs  []string
	addrs []string
	peers []Peer
	nodes []*Node
	tweak func(*Config)
}

func newCluster(t testing.TB, eng engine.Engine, size int, tweak func(*Config)) *cluster {
	c := &cluster{t: t, eng: eng, nodes: make([]*Node, size), tweak: tweak}
	// The data directories' removal is registered first, so that it runs
	// after the nodes stopped (cleanups run last registered first): a node
	// whose directory is gone cannot close (badger retries its flush
	// forever).
	base := t.TempDir()
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	// The ports were free a moment ago; another test process may take one
	// before a node binds it. Then start again on new ports.
	for attempt := 1; ; attempt++ {
		c.addrs, c.dirs, c.peers = freeAddrs(t, size), nil, nil
		for i := range size {
			c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("%d-%d", attempt, i)))
			c.peers = append(c.peers, Peer{ID: fmt.Sprintf("a%d", i), Addr: c.addrs[i]})
		}
		var err error
		for i := range size {
			if err = c.open(i); err != nil {
				break
			}
		}
		if err == nil {
			return c
		}
		for i := range c.nodes {
			c.stop(i)
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting again on other ports: %v", err)
	}
}

// config is node i's configuration.
func (c *cluster) config(i int) Config {
	cfg := Config{
		ID: c.peers[i].ID, Dir: c.dirs[i], Engine: c.eng, OpenLog: openWAL,
		Bind: c.addrs[i], Bootstrap: c.peers,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *cluster) start(i int) {
	c.t.Helper()
	if err := c.open(i); err != nil {
		c.t.Fatal(err)
	}
}

// open starts node i.
func (c *cluster) open(i int) error {
	n, err := Open(c.config(i))
	if err != nil {
		return fmt.Errorf("start node %d: %w", i, err)
	}
	c.nodes[i] = n
	return nil
}

func (c *cluster) stop(i int) {
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close node %d: %v", i, err)
	}
	c.nodes[i] = nil
}

// leader waits for a ready leader among the running nodes.
func (c *cluster) leader() *Node {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n != nil && n.IsLeader() && n.readyTerm.Load() == n.Term() {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no ready leader")
	return nil
}

func put(key, val string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(key), Value: []byte(val)}}
}

// proposeAll sends n puts from clients goroutines and fails on any error.
func proposeAll(t *testing.T, n *Node, prefix string, count, clients int) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := c; i < count; i += clients {
				// A put of a fixed key and value is idempotent, so a write
				// whose outcome is unknown (a leader change under a loaded
				// machine) is simply sent again.
				deadline := time.Now().Add(30 * time.Second)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					res, err := n.Propose(ctx, put(fmt.Sprintf("%s%06d", prefix, i), fmt.Sprint(i)))
					cancel()
					if err == nil && res.Err == nil {
						break
					}
					if err == nil {
						errc <- fmt.Errorf("put %d: %w", i, res.Err)
						return
					}
					if time.Now().After(deadline) {
						errc <- fmt.Errorf("put %d: %w", i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func countPrefix(t *testing.T, n *Node, linearizable bool, prefix string) int64 {
	t.Helper()
	var count int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := n.View(ctx, linearizable, func(s *mvcc.Store) error {
		resp, err := s.Range(ctx, &pb.RangeRequest{Key: []byte(prefix), RangeEnd: prefixEnd(prefix), CountOnly: true})
		if err != nil {
			return err
		}
		count = resp.Count
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

func prefixEnd(p string) []byte {
	b := []byte(p)
	b[len(b)-1]++
	return b
}

// waitConverged waits until every running node has applied the leader's
// commit index, then until their hashes agree. Entries can still commit
// after that index (a write whose client gave up goes on in raft), so a node
// may be one entry ahead of another for a moment: only hashes that still
// differ at the deadline are a divergence.
func (c *cluster) waitConverged() {
	c.t.Helper()
	l := c.leader()
	target := l.CommitIndex()
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		for n.AppliedIndex() < target {
			if time.Now().After(deadline) {
				c.t.Fatalf("node %s applied %d, leader committed %d", n.ID(), n.AppliedIndex(), target)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for {
		diff := c.hashDiff()
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal(diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hashDiff compares the running nodes' hashes and describes the first
// difference, or returns "".
func (c *cluster) hashDiff() string {
	c.t.Helper()
	var want *mvcc.KeyValueHash
	var wantID string
	var wantApplied uint64
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		var h mvcc.KeyValueHash
		err := n.View(context.Background(), false, func(s *mvcc.Store) error {
			var err error
			h, _, err = s.HashByRev(0)
			return err
		})
		if err != nil {
			c.t.Fatal(err)
		}
		if want == nil {
			want, wantID, wantApplied = &h, n.ID(), n.AppliedIndex()
		} else if h.Hash != want.Hash || h.Revision != want.Revision {
			return fmt.Sprintf("node %s hash %+v (applied %d) differs from node %s's %+v (applied %d)",
				n.ID(), h, n.AppliedIndex(), wantID, *want, wantApplied)
		}
	}
	return ""
}

func TestSingleNodeRestartWithoutReplay(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 1, nil)
			n := c.leader()
			proposeAll(t, n, "k/", 2000, 32)
			if got := countPrefix(t, n, true, "k/"); got != 2000 {
				t.Fatalf("linearizable count = %d, want 2000", got)
			}
			applied, rev := n.AppliedIndex(), int64(0)
			n.View(context.Background(), false, func(s *mvcc.Store) error { rev = s.Rev(); return nil })
			entries := n.fsm.appliedEntries.Load()
			t.Logf("2000 puts in %d raft entries (proposal batching)", entries)

			c.stop(0)
			c.start(0)
			n = c.leader()
			if n.fsm.appliedEntries.Load() > 1 { // the new term's barrier
				t.Fatalf("restart applied %d entries again (skipped %d)", n.fsm.appliedEntries.Load(), n.fsm.skippedEntries.Load())
			}
			if got := countPrefix(t, n, true, "k/"); got != 2000 {
				t.Fatalf("after restart count = %d, want 2000", got)
			}
			var rev2 int64
			n.View(context.Background(), false, func(s *mvcc.Store) error { rev2 = s.Rev(); return nil })
			if rev2 != rev || n.AppliedIndex() < applied {
				t.Fatalf("after restart rev %d applied %d, before rev %d applied %d", rev2, n.AppliedIndex(), rev, applied)
			}
		})
	}
}

func TestThreeNodesLeaderFailover(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, nil)
			l := c.leader()
			proposeAll(t, l, "a/", 500, 16)
			c.waitConverged()

			// Kill the leader; the others elect a new one and keep going.
			var li int
			for i, n := range c.nodes {
				if n == l {
					li = i
				}
			}
			c.stop(li)
			l = c.leader()
			proposeAll(t, l, "b/", 500, 16)
			if got := countPrefix(t, l, true, "a/") + countPrefix(t, l, true, "b/"); got != 1000 {
				t.Fatalf("count after failover = %d, want 1000", got)
			}
			// The old leader comes back and catches up.
			c.start(li)
			c.waitConverged()
			if got := countPrefix(t, c.nodes[li], false, "b/"); got != 500 {
				t.Fatalf("restarted node sees %d of the writes made while it was down", got)
			}
		})
	}
}

func TestFollowerCatchUpBySnapshot(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 3, func(cfg *Config) {
				cfg.SnapshotCount = 20
				cfg.SnapshotInterval = 100 * time.Millisecond
			})
			l := c.leader()
			proposeAll(t, l, "a/", 100, 8)
			c.waitConverged()
			// Stop a follower and wipe its data, as a lost disk.
			fi := c.follower(l)
			c.stop(fi)
			// Few clients, so entries carry few requests and the log grows
			// well past what the leader keeps after a snapshot.
			proposeAll(t, l, "b/", 3000, 2)
			// Let the leader snapshot and truncate its log.
			if err := l.Snapshot(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			c.dirs[fi] = t.TempDir()
			c.start(fi)
			c.waitConverged()
			if got := countPrefix(t, c.nodes[fi], false, "b/"); got != 3000 {
				t.Fatalf("caught-up follower sees %d of 3000 keys", got)
			}
			if c.nodes[fi].fsm.restores.Load() == 0 {
				t.Fatalf("the follower caught up from the log, not from a snapshot")
			}
			// The store's live bytes (the size in use on pebble and
			// badger), summed by the follower when it opened the
			// snapshot, are the leader's, counted write by write.
			liveBytes := func(n *Node) int64 {
				var b int64
				if err := n.View(context.Background(), false, func(st *mvcc.Store) error { b = st.LiveBytes(); return nil }); err != nil {
					t.Fatal(err)
				}
				return b
			}
			if lb, fb := liveBytes(l), liveBytes(c.nodes[fi]); lb != fb || lb == 0 {
				t.Errorf("live bytes: leader %d, follower restored from a snapshot %d", lb, fb)
			}
			// It restarts without replaying from the snapshot again.
			c.stop(fi)
			c.start(fi)
			c.waitConverged()
			if lb, fb := liveBytes(l), liveBytes(c.nodes[fi]); lb != fb {
				t.Errorf("live bytes: leader %d, follower restarted %d", lb, fb)
			}
		})
	}
}

// TestFollowerCatchUpFromTrailingLog: with SnapshotCatchUpEntries (etcd's
// --snapshot-catchup-entries) above what a stopped follower missed, the
// leader keeps those entries past its snapshots and the follower catches up
// from the log, without a snapshot; with SnapshotCount's default, as in
// TestFollowerCatchUpBySnapshot, it needs one.
func TestFollowerCatchUpFromTrailingLog(t *testing.T) {
	eng := engines()[0]
	c := newCluster(t, eng, 3, func(cfg *Config) {
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 5000
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	l := c.leader()
	proposeAll(t, l, "a/", 50, 4)
	c.waitConverged()
	fi := c.follower(l)
	c.stop(fi)
	proposeAll(t, l, "b/", 300, 2)
	if err := l.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	c.start(fi)
	c.waitConverged()
	if got := countPrefix(t, c.nodes[fi], false, "b/"); got != 300 {
		t.Fatalf("caught-up follower sees %d of 300 keys", got)
	}
	if n := c.nodes[fi].fsm.restores.Load(); n != 0 {
		t.Fatalf("the follower restored %d snapshots; the leader's log held what it missed", n)
	}
}

// TestLostDataDir wipes only a node's engine directory, keeping its raft
// log and snapshots: the store is then behind the newest snapshot, so the
// node must not trust raft's snapshot index (rqlite #2747). A snapshot the
// node took of itself names the store and cannot fill the gap: the node
// refuses to start, as etcd does without its backend. A snapshot holding a
// dump (one a leader sent) is restored, and the node ends up with every
// write.
func TestLostDataDir(t *testing.T) {
	for _, eng := range engines() {
		for _, sent := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/sent=%v", eng.Name, sent), func(t *testing.T) {
				c := newCluster(t, eng, 1, nil)
				n := c.leader()
				proposeAll(t, n, "a/", 300, 4)
				if err := n.Snapshot(); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
				proposeAll(t, n, "b/", 300, 4)
				c.stop(0)
				dataDir := filepath.Join(c.dirs[0], "data")
				if sent {
					replaceNewestSnapshotWithDump(t, eng, c.dirs[0], dataDir)
				}
				if err := os.RemoveAll(dataDir); err != nil {
					t.Fatal(err)
				}
				if !sent {
					_, err := Open(c.config(0))
					if !errors.Is(err, ErrStoreBehindSnapshot) {
						t.Fatalf("open with a lost data directory: %v, want %v", err, ErrStoreBehindSnapshot)
					}
					return
				}
				c.start(0)
				n = c.leader()
				if n.fsm.restores.Load() != 1 {
					t.Fatalf("node restored %d snapshots at start, want 1", n.fsm.restores.Load())
				}
				for _, p := range []string{"a/", "b/"} {
					if got := countPrefix(t, n, true, p); got != 300 {
						t.Fatalf("%s: %d keys after recovering from a lost data dir, want 300", p, got)
					}
				}
			})
		}
	}
}

// replaceNewestSnapshotWithDump writes, for the stopped node in dir, a
// snapshot with the newest one's metadata holding a dump of its store, as
// a snapshot a leader sent holds.
func replaceNewestSnapshotWithDump(t *testing.T, eng engine.Engine, dir, dataDir string) {
	t.Helper()
	snaps, err := openSnapshots(filepath.Join(dir, "raft"), 5, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("snapshots: %v, %d", err, len(metas))
	}
	m := metas[0]
	be, err := eng.Open(dataDir, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, m.Index, m.Term, m.Configuration, m.ConfigurationIndex, trans)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.Dump(sink, be); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
}

// newBenchCluster starts a one-node cluster for benchmarks.
func newBenchCluster(b *testing.B, eng engine.Engine) *cluster {
	return newCluster(b, eng, 1, nil)
}

// TestOpenLogFailure checks that Open fails with OpenLog's error, and does
// not panic, when OpenLog returns a typed nil (a nil *wal.Store in the
// interface, as `return wal.Open(...)` does on a damaged log).
func TestOpenLogFailure(t *testing.T) {
	damaged := errors.New("damaged log")
	_, err := Open(Config{
		ID: "a0", Dir: t.TempDir(), Engine: bbolt.Engine(),
		OpenLog: func(string) (LogStore, error) { return (*wal.Store)(nil), damaged },
		Bind:    freeAddrs(t, 1)[0], Bootstrap: []Peer{{ID: "a0", Addr: "127.0.0.1:1"}},
	})
	if !errors.Is(err, damaged) {
		t.Fatalf("Open with a failing OpenLog: %v, want %v", err, damaged)
	}
}
