package replication

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// leaderWatch follows raft's leader, state and failed-heartbeat
// observations (pushed by raft, not polled, so no change is missed),
// counts leader changes as etcd's etcd_server_leader_changes_seen_total
// does and heartbeats the leader could not deliver in time
// (etcd_server_heartbeat_send_failures_total), and logs etcd/raft's lines
// for them, which operators grep for.
type leaderWatch struct {
	ch       chan raft.Observation
	obs      *raft.Observer
	changes  atomic.Uint64
	hbFails  atomic.Uint64
	lastSeen string // the leader last observed, "" for none; owned by the loop
}

func (w *leaderWatch) init(r *raft.Raft) {
	// Large enough for bursts of elections; raft drops an observation when
	// the channel is full rather than blocking (not blocking: raft's loop
	// must never wait on us).
	w.ch = make(chan raft.Observation, 64)
	w.obs = raft.NewObserver(w.ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.FailedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(w.obs)
}

// leaderWatchLoop consumes the observations until the node stops.
func (n *Node) leaderWatchLoop() {
	defer n.wg.Done()
	defer n.raft.DeregisterObserver(n.leaders.obs)
	w := &n.leaders
	for {
		select {
		case <-n.stopc:
			return
		case o := <-w.ch:
			var lo raft.LeaderObservation
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				lo = d
			case raft.RaftState:
				n.logState(d)
				continue
			case raft.FailedHeartbeatObservation:
				n.heartbeatFailed(d, time.Now())
				continue
			default:
				continue
			}
			lead := string(lo.LeaderID)
			if lead == w.lastSeen {
				continue
			}
			term := n.raft.CurrentTerm()
			switch {
			case lead != "" && w.lastSeen == "":
				w.changes.Add(1)
				n.cfg.Logger.Info("raft.node: "+n.cfg.ID+" elected leader "+lead+" at term "+strconv.FormatUint(term, 10), "logger", "raft")
			case lead != "":
				w.changes.Add(1)
				n.cfg.Logger.Info("raft.node: "+n.cfg.ID+" changed leader from "+w.lastSeen+" to "+lead+" at term "+strconv.FormatUint(term, 10), "logger", "raft")
			default:
				n.cfg.Logger.Info("raft.node: "+n.cfg.ID+" lost leader "+w.lastSeen+" at term "+strconv.FormatUint(term, 10), "logger", "raft")
			}
			w.lastSeen = lead
		}
	}
}

// logState logs etcd/raft's line for this node's new role ("<id> became
// leader at term <n>"; follower, candidate likewise). hashicorp/raft runs
// pre-vote as a candidate, so etcd's pre-candidate line has no match.
func (n *Node) logState(st raft.RaftState) {
	switch st {
	case raft.Follower, raft.Candidate, raft.Leader:
		n.cfg.Logger.Info(n.cfg.ID+" became "+strings.ToLower(st.String())+" at term "+strconv.FormatUint(n.raft.CurrentTerm(), 10), "logger", "raft")
	}
}

// heartbeatFailed handles a heartbeat this node, as leader, could not
// deliver to a follower (the AppendEntries RPC failed or timed out):
// when the follower has then gone without the leader's contact for more
// than two heartbeat intervals, it is etcd's late heartbeat (etcd's
// leader finds it has not sent one for two intervals): counted and logged
// with etcd's text and fields. hashicorp/raft heartbeats each follower
// from a goroutine of its own, so the leader's disk does not delay them as
// it delays etcd's; a follower whose disk holds up raft's loop (which
// handles heartbeats, see transport.go) or an unreachable follower do.
func (n *Node) heartbeatFailed(o raft.FailedHeartbeatObservation, now time.Time) {
	interval := n.cfg.HeartbeatTimeout / 10
	if o.LastContact.IsZero() || interval <= 0 {
		return
	}
	expected := 2 * interval
	since := now.Sub(o.LastContact)
	if since <= expected {
		return
	}
	n.leaders.hbFails.Add(1)
	n.cfg.Logger.Warn("leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk",
		"to", fmt.Sprint(o.PeerID), "heartbeat-interval", interval, "expected-duration", expected, "exceeded-duration", since-expected)
}

// HeartbeatSendFailures returns the number of late heartbeats this node
// has seen as leader (etcd's etcd_server_heartbeat_send_failures_total;
// see heartbeatFailed).
func (n *Node) HeartbeatSendFailures() uint64 { return n.leaders.hbFails.Load() }

// LeaderChanges returns the number of times this node has seen a new
// leader (etcd's etcd_server_leader_changes_seen_total).
func (n *Node) LeaderChanges() uint64 { return n.leaders.changes.Load() }
