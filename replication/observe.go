package replication

import (
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// leaderWatch follows raft's leader observations (pushed by raft, not
// polled, so no change is missed), counts the changes as etcd's
// etcd_server_leader_changes_seen_total does and logs etcd/raft's lines
// for them, which operators grep for.
type leaderWatch struct {
	ch       chan raft.Observation
	obs      *raft.Observer
	changes  atomic.Uint64
	lastSeen string // the leader last observed, "" for none; owned by the loop
}

func (w *leaderWatch) init(r *raft.Raft) {
	// Large enough for bursts of elections; raft drops an observation when
	// the channel is full rather than blocking (not blocking: raft's loop
	// must never wait on us).
	w.ch = make(chan raft.Observation, 64)
	w.obs = raft.NewObserver(w.ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
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
			lo, ok := o.Data.(raft.LeaderObservation)
			if !ok {
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

// LeaderChanges returns the number of times this node has seen a new
// leader (etcd's etcd_server_leader_changes_seen_total).
func (n *Node) LeaderChanges() uint64 { return n.leaders.changes.Load() }
