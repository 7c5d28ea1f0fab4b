package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/strata-kv/strata/replication/peerpb"
)

func TestPairQuorum(t *testing.T) {
	voter := func(id string) raft.Server { return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id)} }
	learner := func(id string) raft.Server { return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id)} }
	tests := []struct {
		name    string
		servers []raft.Server
		a, b    raft.ServerID
		want    bool
	}{
		{"three voters", []raft.Server{voter("a"), voter("b"), voter("c")}, "a", "b", true},
		{"two voters", []raft.Server{voter("a"), voter("b")}, "a", "b", true},
		{"three voters and a learner", []raft.Server{voter("a"), voter("b"), voter("c"), learner("d")}, "a", "c", true},
		{"four voters", []raft.Server{voter("a"), voter("b"), voter("c"), voter("d")}, "a", "b", false},
		{"five voters", []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")}, "a", "b", false},
		{"asker is a learner", []raft.Server{voter("a"), voter("b"), learner("c")}, "a", "c", false},
		{"asker is not a member", []raft.Server{voter("a"), voter("b"), voter("c")}, "a", "x", false},
		{"leader is not a voter", []raft.Server{learner("a"), voter("b"), voter("c")}, "a", "b", false},
		{"asker is the leader", []raft.Server{voter("a"), voter("b")}, "a", "a", false},
		{"sole voter", []raft.Server{voter("a")}, "a", "b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pairQuorum(tt.servers, tt.a, tt.b); got != tt.want {
				t.Fatalf("pairQuorum(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

// TestFollowerConfirmsReadIndex checks the read index of a follower of a
// 3-member cluster: the leader answers it without a heartbeat round, with
// its term, and the follower serves writes acknowledged before the read;
// an index of an older term than the follower's is refused as a leader
// change; a member the leader does not name as its pair gets an index the
// leader confirmed itself (no term).
func TestFollowerConfirmsReadIndex(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	f := c.nodes[c.follower(l)]
	ctx := context.Background()

	res, err := l.Propose(ctx, put("k", "v"))
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	acked := l.AppliedIndex()
	rounds := l.verifier.rounds.Load()
	for range 20 {
		if err := f.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if got := f.AppliedIndex(); got < acked {
			t.Fatalf("follower applied %d after its read barrier, the write was acknowledged at %d", got, acked)
		}
	}
	if got := l.verifier.rounds.Load() - rounds; got != 0 {
		t.Errorf("the leader ran %d verification rounds for a follower's reads, want 0", got)
	}

	ri, term, err := l.followerReadIndex(ctx, f.cfg.ID)
	if err != nil || term != l.Term() || ri < acked {
		t.Fatalf("followerReadIndex(%s) = %d, term %d, %v; want >= %d, term %d", f.cfg.ID, ri, term, err, acked, l.Term())
	}
	rounds = l.verifier.rounds.Load()
	for _, member := range []string{"", "nobody", l.cfg.ID} {
		ri, term, err := l.followerReadIndex(ctx, member)
		if err != nil || term != 0 || ri < acked {
			t.Fatalf("followerReadIndex(%q) = %d, term %d, %v; want >= %d confirmed by the leader (term 0)", member, ri, term, err, acked)
		}
	}
	if got := l.verifier.rounds.Load() - rounds; got != 3 {
		t.Errorf("%d verification rounds for 3 read indexes the leader confirms, want 3", got)
	}

	// A newer term: the old leader's unconfirmed index no longer holds.
	old := &peerpb.ReadIndexResponse{Index: ri, Term: term}
	if err := f.confirmReadIndex(old); err != nil {
		t.Fatalf("confirm at the same term: %v", err)
	}
	if err := l.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.Term() <= term {
		if time.Now().After(deadline) {
			t.Fatalf("follower still at term %d after a leadership transfer", f.Term())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.confirmReadIndex(old); !errors.Is(err, ErrLeaderChanged) {
		t.Fatalf("confirm of term %d at term %d: %v, want %v", term, f.Term(), err, ErrLeaderChanged)
	}
	if err := f.confirmReadIndex(&peerpb.ReadIndexResponse{Index: ri}); err != nil {
		t.Fatalf("an index the leader confirmed: %v", err)
	}
	// Reads go on at the new leader, from every member.
	c.leader()
	for _, n := range c.nodes {
		if err := n.ReadBarrier(ctx); err != nil {
			t.Fatalf("read barrier at %s after the transfer: %v", n.cfg.ID, err)
		}
	}
}

func TestEchoed(t *testing.T) {
	v := &verifier{}
	v.echoes, v.echoc = map[raft.ServerID]echo{}, make(chan struct{}, 1)
	v.echo("b", 3, 10)
	v.echo("b", 3, 7)  // an older stamp, sent concurrently: kept out
	v.echo("c", 0, 20) // a call with no term vouches for nothing
	v.echo("d", 4, 20) // at a newer term than the round's
	now := time.Now()
	tests := []struct {
		id       raft.ServerID
		round    uint64
		term     uint64
		ok       bool
		recently bool
	}{
		{"b", 10, 3, true, true},
		{"b", 9, 3, true, true},
		{"b", 11, 3, false, true},
		{"b", 10, 4, true, true},
		{"b", 10, 2, false, true},
		{"c", 10, 3, false, true},
		{"d", 10, 3, false, true},
		{"d", 10, 4, true, true},
		{"e", 0, 3, false, false},
	}
	for _, tt := range tests {
		ok, recent := v.echoed(tt.id, tt.round, tt.term, now)
		if ok != tt.ok || recent != tt.recently {
			t.Errorf("echoed(%s, round %d, term %d) = %v, %v; want %v, %v", tt.id, tt.round, tt.term, ok, recent, tt.ok, tt.recently)
		}
	}
	if _, recent := v.echoed("b", 10, 3, now.Add(echoRecent)); recent {
		t.Errorf("a call %v ago counts as recent", echoRecent)
	}
	for i := range maxEchoes * 2 {
		v.echo(raft.ServerID(fmt.Sprint("x", i)), 3, 1)
	}
	if len(v.echoes) != maxEchoes {
		t.Errorf("%d members' echoes kept, want at most %d", len(v.echoes), maxEchoes)
	}
}

// TestLeaderRoundsConfirmedByCalls reads at the leader of a 3-member
// cluster whose heartbeats are lost (fault injection) while a follower
// forwards writes without pause: the follower's calls confirm the
// leader's verification rounds, and every read sees the writes
// acknowledged before it began. Once the calls stop, nothing confirms a
// round: a read waits until its deadline.
func TestLeaderRoundsConfirmedByCalls(t *testing.T) {
	c := newCluster(t, engines()[0], 3, nil)
	l := c.leader()
	f := c.nodes[c.follower(l)]
	l.verifier.loseHeartbeats.Store(true)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var acked atomic.Uint64
	for i := range 8 {
		wg.Go(func() {
			for j := 0; ctx.Err() == nil; j++ {
				res, err := f.Propose(ctx, put(fmt.Sprintf("w/%d/%d", i, j%100), "v"))
				if err == nil && res.Err == nil {
					idx := f.AppliedIndex()
					for {
						old := acked.Load()
						if idx <= old || acked.CompareAndSwap(old, idx) {
							break
						}
					}
				}
			}
		})
	}
	rounds := l.verifier.rounds.Load()
	for range 200 {
		before := acked.Load()
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := l.ReadBarrier(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := l.AppliedIndex(); got < before {
			t.Fatalf("leader applied %d after a read barrier; %d was acknowledged before it", got, before)
		}
	}
	stop()
	wg.Wait()
	if got := l.verifier.heartbeats.Load(); got != 0 {
		t.Errorf("%d heartbeats sent while they are lost", got)
	}
	if got := l.verifier.rounds.Load() - rounds; got == 0 {
		t.Errorf("no verification round for 200 reads")
	}
	rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := l.ReadBarrier(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read barrier with no heartbeat answered and no call: %v, want %v", err, context.DeadlineExceeded)
	}
}
