package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication/peerpb"
)

// Membership errors.
var (
	// ErrMemberExists is returned when adding an ID or address already in
	// the cluster.
	ErrMemberExists = errors.New("replication: member already exists")
	// ErrMemberNotFound is returned for an ID not in the cluster.
	ErrMemberNotFound = errors.New("replication: member not found")
	// ErrNotLearner is returned when promoting a member that votes already.
	ErrNotLearner = errors.New("replication: member is not a learner")
	// ErrLearnerNotReady is returned when promoting a learner that has not
	// caught up with the leader yet.
	ErrLearnerNotReady = errors.New("replication: learner not in sync with leader")
	// ErrRemoved is the reason a node gives once it has learned that it
	// was removed from the cluster (see Node.Removed).
	ErrRemoved = errors.New("replication: the member has been permanently removed from the cluster")
	// ErrNoTransferee is returned when no other voting member answers to
	// take over leadership (etcd's unhealthy cluster on shutdown).
	ErrNoTransferee = errors.New("replication: no voting member to transfer leadership to")
)

// Member is one member of the raft configuration.
type Member struct {
	// ID is the raft server ID.
	ID string
	// Addr is the member's peer address.
	Addr string
	// Learner is set for a member that receives the log but does not vote.
	Learner bool
	// Name and ClientURLs are the attributes the member published with
	// SetMemberAttrs, empty until it has.
	Name       string
	ClientURLs []string
}

// memberAttrPrefix names member attribute records in the store's
// auxiliary area: memberAttrPrefix + raft ID -> MemberAttributes.
const memberAttrPrefix = "member/"

// clusterVersionKey names the cluster version in the store's auxiliary
// area (etcd's ClusterVersionSet).
const clusterVersionKey = "cluster/version"

// SetClusterVersion replicates the cluster version (etcd's
// ClusterVersionSet), which ClusterVersion then reports on every member.
func (n *Node) SetClusterVersion(ctx context.Context, version string) error {
	res, err := n.Propose(ctx, &pb.InternalRaftRequest{ClusterVersionSet: &membershippb.ClusterVersionSetRequest{Ver: version}})
	if err != nil {
		return err
	}
	return res.Err
}

// ClusterVersion returns the cluster version as this member has applied
// it, "" if none was set.
func (n *Node) ClusterVersion() (string, error) {
	var v string
	err := n.fsm.view(func(s *mvcc.Store) error {
		recs, err := s.Aux([]byte(clusterVersionKey))
		v = string(recs[clusterVersionKey])
		return err
	})
	return v, err
}

// Members returns the current raft configuration as this node knows it.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := awaitFuture(f, n.stopc); err != nil {
		return nil, translateRaftError(err)
	}
	var attrs map[string][]byte
	if err := n.fsm.view(func(s *mvcc.Store) error {
		var err error
		attrs, err = s.Aux([]byte(memberAttrPrefix))
		return err
	}); err != nil {
		return nil, err
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		m := Member{ID: string(s.ID), Addr: string(s.Address), Learner: s.Suffrage != raft.Voter}
		if b, ok := attrs[memberAttrPrefix+m.ID]; ok {
			a := &membershippb.Attributes{}
			if err := proto.Unmarshal(b, a); err == nil {
				m.Name, m.ClientURLs = a.Name, a.ClientUrls
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// SetMemberAttrs replicates a member's name and client URLs, which
// Members then reports on every node (etcd's member publish). Attributes
// are keyed by raft ID, which must be a member ID in hexadecimal.
func (n *Node) SetMemberAttrs(ctx context.Context, id, name string, clientURLs []string) error {
	mid, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		return fmt.Errorf("replication: member attributes need a hexadecimal member ID, not %q", id)
	}
	res, err := n.Propose(ctx, &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        mid,
		MemberAttributes: &membershippb.Attributes{Name: name, ClientUrls: clientURLs},
	}})
	if err != nil {
		return err
	}
	return res.Err
}

// Membership operations, as forwarded to the leader.
const (
	memberAddLearner = peerpb.MemberOp_ADD_LEARNER
	memberPromote    = peerpb.MemberOp_PROMOTE
	memberRemove     = peerpb.MemberOp_REMOVE
	memberTransfer   = peerpb.MemberOp_TRANSFER_LEADERSHIP
	memberAddVoter   = peerpb.MemberOp_ADD_VOTER
	memberUpdate     = peerpb.MemberOp_UPDATE
)

// AddLearner adds a member that receives the log but does not vote, as
// etcd's `member add --learner`. Promote it once it has caught up.
func (n *Node) AddLearner(ctx context.Context, id, addr string) error {
	return n.memberOp(ctx, memberAddLearner, id, addr)
}

// AddVoter adds a voting member at once, as etcd's plain `member add`.
// Until the new member runs and catches up, the cluster needs one more
// member up for a quorum; AddLearner then PromoteLearner avoids that.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return n.memberOp(ctx, memberAddVoter, id, addr)
}

// PromoteLearner makes a caught-up learner a voter. A learner whose store
// is below 90% of the leader's commit index is refused with
// ErrLearnerNotReady, as etcd refuses promoting a learner out of sync.
func (n *Node) PromoteLearner(ctx context.Context, id string) error {
	return n.memberOp(ctx, memberPromote, id, "")
}

// RemoveMember removes a member. Removing the leader makes the others elect
// a new one.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	return n.memberOp(ctx, memberRemove, id, "")
}

// UpdateMember changes a member's peer address (etcd's member update). The
// member keeps its ID, its vote or learner status and its data; it must be
// restarted listening on the new address.
func (n *Node) UpdateMember(ctx context.Context, id, addr string) error {
	return n.memberOp(ctx, memberUpdate, id, addr)
}

// TransferLeadership makes the member id the leader (etcd's MoveLeader).
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	return n.memberOp(ctx, memberTransfer, id, "")
}

// CaughtUpVoter picks the voting member a leader about to stop hands
// leadership to (etcd's TryTransferLeadershipOnShutdown): of the other
// voters that report their applied index within ctx, or within an election
// timeout each, the one that has applied the most. It fails with
// ErrNoTransferee when none answers.
func (n *Node) CaughtUpVoter(ctx context.Context) (string, error) {
	members, err := n.Members()
	if err != nil {
		return "", err
	}
	type answer struct {
		id      string
		applied uint64
		err     error
	}
	var asked int
	answers := make(chan answer, len(members))
	for _, m := range members {
		if m.Learner || m.ID == n.cfg.ID {
			continue
		}
		asked++
		go func() {
			ctx, cancel := context.WithTimeout(ctx, n.cfg.ElectionTimeout)
			defer cancel()
			applied, err := n.memberApplied(ctx, m.Addr)
			answers <- answer{m.ID, applied, err}
		}()
	}
	best, found := answer{}, false
	for range asked {
		a := <-answers
		if a.err != nil {
			continue
		}
		if !found || a.applied > best.applied || (a.applied == best.applied && a.id < best.id) {
			best, found = a, true
		}
	}
	if !found {
		return "", fmt.Errorf("%w: %d asked", ErrNoTransferee, asked)
	}
	return best.id, nil
}

// ReachableVoters counts the voting members, and those among them this
// node reaches now: itself, and the others that report their applied
// index within ctx, or within an election timeout each. It stands in for
// etcd's transport view of active peers in its quorum-safety checks.
func (n *Node) ReachableVoters(ctx context.Context) (reachable, voters int, err error) {
	members, err := n.Members()
	if err != nil {
		return 0, 0, err
	}
	answers := make(chan error, len(members))
	asked := 0
	for _, m := range members {
		if m.Learner {
			continue
		}
		voters++
		if m.ID == n.cfg.ID {
			reachable++
			continue
		}
		asked++
		go func() {
			ctx, cancel := context.WithTimeout(ctx, n.cfg.ElectionTimeout)
			defer cancel()
			_, err := n.memberApplied(ctx, m.Addr)
			answers <- err
		}()
	}
	for range asked {
		if <-answers == nil {
			reachable++
		}
	}
	return reachable, voters, nil
}

func (n *Node) memberOp(ctx context.Context, op peerpb.MemberOp, id, addr string) error {
	_, err := atLeader(ctx, n,
		func() (struct{}, error) { return struct{}{}, n.memberOpLocal(ctx, op, id, addr) },
		func(leader string) (struct{}, error) { return struct{}{}, n.forwardMemberOp(ctx, leader, op, id, addr) })
	return err
}

func (n *Node) memberOpLocal(ctx context.Context, op peerpb.MemberOp, id, addr string) error {
	cf := n.raft.GetConfiguration()
	if err := awaitFuture(cf, n.stopc); err != nil {
		return translateRaftError(err)
	}
	cfg, index := cf.Configuration(), cf.Index()
	var cur *raft.Server
	for i, s := range cfg.Servers {
		if string(s.ID) == id {
			cur = &cfg.Servers[i]
		}
		if (op == memberAddLearner || op == memberAddVoter) && (string(s.ID) == id || string(s.Address) == addr) {
			return fmt.Errorf("%w: %s %s", ErrMemberExists, s.ID, s.Address)
		}
		if op == memberUpdate && string(s.ID) != id && string(s.Address) == addr {
			return fmt.Errorf("%w: %s %s", ErrMemberExists, s.ID, s.Address)
		}
	}
	if op != memberAddLearner && op != memberAddVoter && cur == nil {
		return fmt.Errorf("%w: %s", ErrMemberNotFound, id)
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	var f raft.Future
	switch op {
	case memberAddLearner:
		f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), index, timeout)
	case memberAddVoter:
		f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), index, timeout)
	case memberPromote:
		if cur.Suffrage == raft.Voter {
			return fmt.Errorf("%w: %s", ErrNotLearner, id)
		}
		// A learner that does not answer within an election timeout is
		// not in sync (etcd sees its match index 0). Its error is only
		// text here: it may say "not leader", which callers would retry.
		actx, cancel := context.WithTimeout(ctx, n.cfg.ElectionTimeout)
		applied, err := n.memberApplied(actx, string(cur.Address))
		cancel()
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrLearnerNotReady, id, err)
		}
		if commit := n.raft.CommitIndex(); float64(applied) < 0.9*float64(commit) {
			return fmt.Errorf("%w: %s applied %d of %d", ErrLearnerNotReady, id, applied, commit)
		}
		f = n.raft.AddVoter(cur.ID, cur.Address, index, timeout)
	case memberUpdate:
		// raft changes the address of a server added again under the
		// same ID, keeping its suffrage.
		if cur.Suffrage == raft.Voter {
			f = n.raft.AddVoter(cur.ID, raft.ServerAddress(addr), index, timeout)
		} else {
			f = n.raft.AddNonvoter(cur.ID, raft.ServerAddress(addr), index, timeout)
		}
	case memberRemove:
		f = n.raft.RemoveServer(cur.ID, index, timeout)
	case memberTransfer:
		if cur.Suffrage != raft.Voter {
			return fmt.Errorf("%w: %s cannot lead", ErrNotLearner, id)
		}
		if string(cur.ID) == n.cfg.ID {
			return nil
		}
		f = n.raft.LeadershipTransferToServer(cur.ID, cur.Address)
	default:
		return fmt.Errorf("replication: unknown member operation %d", op)
	}
	if err := awaitFuture(f, n.stopc); err != nil {
		return translateRaftError(err)
	}
	return nil
}

// Removed returns a channel closed once the node has learned that it was
// removed from the cluster; it then takes no more requests and its owner
// should close it (etcd stops a removed member). A node learns it from its
// own configuration, or, a removed follower usually never receiving the
// entry that removes it, by asking the leader while it has none.
func (n *Node) Removed() <-chan struct{} { return n.removedc }

// removalLoop watches for this node's removal from the cluster.
func (n *Node) removalLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ElectionTimeout)
	defer t.Stop()
	leaderless := 0
	for {
		select {
		case <-n.stopc:
			return
		case <-t.C:
		}
		if id, _ := n.Leader(); id != "" {
			leaderless = 0
		} else {
			leaderless++
		}
		if n.removed(leaderless >= 3) {
			n.cfg.Logger.Error(ErrRemoved.Error(), "id", n.cfg.ID)
			close(n.removedc)
			return
		}
	}
}

// removed reports whether this node is out of the cluster: raft shut itself
// down after the leader removed itself, or a committed configuration this
// node has does not list it, or (when ask is set) the leader, found among
// the last configuration's members, says so.
func (n *Node) removed(ask bool) bool {
	if n.raft.State() == raft.Shutdown {
		return true
	}
	cf := n.raft.GetConfiguration()
	if err := awaitFuture(cf, n.stopc); err != nil {
		return false
	}
	servers := cf.Configuration().Servers
	if len(servers) == 0 {
		// A new member not yet reached by the leader.
		return false
	}
	if inConfiguration(servers, n.cfg.ID) {
		n.inConfigSeen = true
	} else if n.inConfigSeen && cf.Index() <= n.raft.CommitIndex() {
		return true
	}
	// Else only the leader can tell: a node that has never seen itself in
	// a configuration may be a new member that installed a snapshot taken
	// before it was added (that configuration does not list it yet), and
	// a removed node may hold the entry removing it without knowing it
	// committed (the leader stops replicating to it at that entry).
	if !ask {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == n.cfg.ID {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ElectionTimeout)
		st, err := n.askMemberState(ctx, string(s.Address), n.cfg.ID)
		cancel()
		if err == nil && st == peerpb.MemberStatus_REMOVED_MEMBER {
			return true
		}
	}
	return false
}

// memberState answers whether id is a member, if this node leads.
func (n *Node) memberState(id string) peerpb.MemberStatus {
	if !n.IsLeader() {
		return peerpb.MemberStatus_MEMBER_STATUS_UNKNOWN
	}
	cf := n.raft.GetConfiguration()
	if err := awaitFuture(cf, n.stopc); err != nil || !n.IsLeader() {
		return peerpb.MemberStatus_MEMBER_STATUS_UNKNOWN
	}
	if inConfiguration(cf.Configuration().Servers, id) || cf.Index() > n.raft.CommitIndex() {
		return peerpb.MemberStatus_MEMBER
	}
	return peerpb.MemberStatus_REMOVED_MEMBER
}

func inConfiguration(servers []raft.Server, id string) bool {
	for _, s := range servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}
