package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// clusterServer is etcd's Cluster service over the raft configuration.
//
// The raft configuration knows each member's ID, peer address and
// whether it votes; names and client URLs are what members published
// (replication.Node.SetMemberAttrs), and a member that has not published
// yet is listed without them, as etcd lists a member not started.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	members, err := c.s.listMembers(ctx, r.GetLinearizable())
	if err != nil {
		return nil, err
	}
	// As etcd 3.7 (EtcdServer.MemberList): while auth is enabled the
	// caller must name a user, checked after the read barrier.
	if err := c.s.requireUser(ctx); err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{Header: c.s.header(), Members: members}, nil
}

// members returns the raft configuration as etcd members, sorted by ID.
func (s *Server) members() ([]*pb.Member, error) {
	rms, err := s.node.Members()
	if err != nil {
		return nil, err
	}
	byID := map[uint64]string{}
	for name, id := range s.cfg.initialMembers() {
		byID[id] = name
	}
	var out []*pb.Member
	for _, rm := range rms {
		id := parseRaftID(rm.ID)
		m := &pb.Member{ID: id, IsLearner: rm.Learner}
		// Peer URLs as configured while they still name the raft address
		// (a member update moves it).
		switch name, initial := byID[id]; {
		case id == s.id.MemberID && urlsAt(s.id.PeerURLs, rm.Addr):
			m.Name = s.id.Name
			m.PeerURLs = slices.Clone(s.id.PeerURLs)
		case initial && urlsAt(s.cfg.initialCluster[name], rm.Addr):
			m.Name = name
			m.PeerURLs = slices.Clone(s.cfg.initialCluster[name])
		default:
			m.PeerURLs = []string{(&url.URL{Scheme: "http", Host: rm.Addr}).String()}
		}
		if id == s.id.MemberID {
			m.Name = s.id.Name
			m.ClientURLs = slices.Clone(s.advertiseClientURLs())
		}
		// What the member published is authoritative (etcd's publish).
		if rm.Name != "" {
			m.Name = rm.Name
		}
		if len(rm.ClientURLs) > 0 {
			m.ClientURLs = slices.Clone(rm.ClientURLs)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// urlsAt reports whether the first of urls has host addr.
func urlsAt(urls []string, addr string) bool {
	if len(urls) == 0 {
		return false
	}
	u, err := url.Parse(urls[0])
	return err == nil && u.Host == addr
}

// listMembers returns the members as this member knows them, after a
// linearizable read barrier when linearizable is set: the strict
// reconfiguration checks need one to see every change committed before
// the request (learners added, names published), even on a follower that
// has not applied them yet. Its errors are gRPC errors.
func (s *Server) listMembers(ctx context.Context, linearizable bool) ([]*pb.Member, error) {
	if linearizable {
		if err := s.view(ctx, true, func(*mvcc.Store) error { return nil }); err != nil {
			return nil, readError(ctx, err)
		}
	}
	members, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return members, nil
}

// started reports whether a member has started: it has published its
// name, as etcd's Member.IsStarted.
func started(m *pb.Member) bool { return m.Name != "" }

// readyToAddVoter is etcd's strict reconfiguration check for adding a
// voting member (RaftCluster.IsReadyToAddVotingMember): the started voting
// members must make a quorum of the cluster with the new member, except
// when a second member joins a one-member cluster.
func readyToAddVoter(members []*pb.Member) bool {
	nmembers, nstarted := 1, 0
	for _, m := range members {
		if m.IsLearner {
			continue
		}
		if started(m) {
			nstarted++
		}
		nmembers++
	}
	if nstarted == 1 && nmembers == 2 {
		return true
	}
	return nstarted >= nmembers/2+1
}

// quorumAfterAdd is etcd's isConnectedToQuorumAfterAddingNewMemberSince:
// a one-voter cluster may always grow; otherwise the voters this member
// reaches (itself included) must make a quorum of voters+1.
func quorumAfterAdd(reachable, voters int) bool {
	if voters == 1 {
		return true
	}
	return reachable >= (voters+1)/2+1
}

// learners counts the learners among members.
func learners(members []*pb.Member) int {
	n := 0
	for _, m := range members {
		if m.IsLearner {
			n++
		}
	}
	return n
}

// readyToRemove is etcd's strict check for removing member id
// (mayRemoveMember): a learner, or an ID not in the cluster, needs none;
// removing a voter, the started voting members left must make a quorum of
// the voting members left (RaftCluster.IsReadyToRemoveVotingMember).
func readyToRemove(members []*pb.Member, id uint64) bool {
	if !slices.ContainsFunc(members, func(m *pb.Member) bool { return m.ID == id && !m.IsLearner }) {
		return true
	}
	nmembers, nstarted := 0, 0
	for _, m := range members {
		if m.IsLearner || m.ID == id {
			continue
		}
		if started(m) {
			nstarted++
		}
		nmembers++
	}
	return nstarted >= nmembers/2+1
}

// MemberAdd adds a learner or a voting member: its ID is computed from its
// peer URLs and the cluster token as etcd does (without etcd's timestamp),
// which is also the ID the new member takes when started with
// --initial-cluster-state=existing. A voting member counts towards the
// quorum at once, so, as etcd's strict reconfiguration check, it is added
// only if the started members still make a quorum with it.
func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := c.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	s := c.s
	if len(r.GetPeerURLs()) == 0 {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	urls, err := parseURLs("peer URLs", r.GetPeerURLs())
	if err != nil {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	existing, err := s.listMembers(ctx, true)
	if err != nil {
		return nil, err
	}
	if err := s.mayAddMember(ctx, r, existing); err != nil {
		return nil, err
	}
	for _, m := range existing {
		for _, u := range m.PeerURLs {
			if slices.Contains(r.GetPeerURLs(), u) {
				return nil, rpctypes.ErrGRPCPeerURLExist
			}
		}
	}
	// etcd's --max-learners, checked after the peer URLs as etcd's
	// ValidateConfigurationChange does.
	if r.GetIsLearner() && learners(existing)+1 > s.cfg.MaxLearners {
		return nil, rpctypes.ErrGRPCTooManyLearners
	}
	id := memberID(r.GetPeerURLs(), s.cfg.InitialClusterToken)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	defer cancel()
	add := s.node.AddVoter
	if r.GetIsLearner() {
		add = s.node.AddLearner
	}
	if err := add(ctx, raftID(id), urls[0].Host); err != nil {
		return nil, memberError(err)
	}
	added := &pb.Member{ID: id, PeerURLs: slices.Clone(r.GetPeerURLs()), IsLearner: r.GetIsLearner()}
	members, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	// The member answering may learn of the new configuration after the
	// leader: list the added member in any case.
	found := false
	for _, m := range members {
		if m.ID == id {
			m.PeerURLs, found = added.PeerURLs, true
		}
	}
	if !found {
		members = append(members, added)
		sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	}
	return &pb.MemberAddResponse{Header: s.header(), Member: added, Members: members}, nil
}

func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := c.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	s := c.s
	existing, err := s.listMembers(ctx, true)
	if err != nil {
		return nil, err
	}
	if !s.cfg.DisableStrictReconfigCheck && !readyToRemove(existing, r.GetID()) {
		return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	defer cancel()
	if err := s.node.RemoveMember(ctx, raftID(r.GetID())); err != nil {
		return nil, memberError(err)
	}
	members, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberRemoveResponse{Header: s.header(), Members: members}, nil
}

func (c *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := c.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	s := c.s
	ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	defer cancel()
	if err := s.node.PromoteLearner(ctx, raftID(r.GetID())); err != nil {
		return nil, memberError(err)
	}
	members, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberPromoteResponse{Header: s.header(), Members: members}, nil
}

// MemberUpdate changes a member's peer URLs; the member must then be
// restarted listening on them. Raft knows one address per member: the
// first URL's host.
func (c *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := c.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	s := c.s
	if len(r.GetPeerURLs()) == 0 {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	urls, err := parseURLs("peer URLs", r.GetPeerURLs())
	if err != nil {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	existing, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	found := false
	for _, m := range existing {
		if m.ID == r.GetID() {
			found = true
			continue
		}
		for _, u := range m.PeerURLs {
			if slices.Contains(r.GetPeerURLs(), u) {
				return nil, rpctypes.ErrGRPCPeerURLExist
			}
		}
	}
	if !found {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	defer cancel()
	if err := s.node.UpdateMember(ctx, raftID(r.GetID()), urls[0].Host); err != nil {
		return nil, memberError(err)
	}
	members, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	for _, m := range members {
		if m.ID == r.GetID() {
			m.PeerURLs = slices.Clone(r.GetPeerURLs())
		}
	}
	return &pb.MemberUpdateResponse{Header: s.header(), Members: members}, nil
}

func memberError(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, replication.ErrMemberNotFound) || errors.Is(err, replication.ErrMemberExists) ||
		errors.Is(err, replication.ErrNotLearner) || errors.Is(err, replication.ErrLearnerNotReady) {
		return togRPCError(err)
	}
	return proposeError(err)
}

// publish replicates this member's name and client URLs, as etcd's
// publish does at start, so that every member lists them. It retries
// until it succeeds or the server stops (ctx), and reports whether it
// succeeded.
func (s *Server) publish(ctx context.Context) bool {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.node.SetMemberAttrs(pctx, raftID(s.id.MemberID), s.id.Name, s.advertiseClientURLs())
		cancel()
		if err == nil {
			s.cfg.Logger.Info("published local member to cluster through raft", "local-member-id", raftID(s.id.MemberID),
				"local-member-attributes", fmt.Sprintf("{Name:%s ClientURLs:%v}", s.id.Name, s.advertiseClientURLs()),
				"cluster-id", raftID(s.id.ClusterID), "publish-timeout", 5*time.Second)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.cfg.Logger.Warn("failed to publish local member to cluster through raft", "local-member-id", raftID(s.id.MemberID), "error", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// mayAddMember is etcd's strict reconfiguration check of a MemberAdd
// (skipped with DisableStrictReconfigCheck): a voter is added only if
// the started members still make a quorum with it, and, for learners
// too, counting the new member as down, this member must reach a quorum
// of the grown cluster.
func (s *Server) mayAddMember(ctx context.Context, r *pb.MemberAddRequest, existing []*pb.Member) error {
	if s.cfg.DisableStrictReconfigCheck {
		return nil
	}
	if !r.GetIsLearner() && !readyToAddVoter(existing) {
		return rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	reachable, voters, err := s.node.ReachableVoters(ctx)
	if err != nil {
		return togRPCError(err)
	}
	if !quorumAfterAdd(reachable, voters) {
		s.cfg.Logger.Warn("rejecting member add request; local member has not been connected to majority peers, reconfigure breaks active quorum",
			"local-member-id", raftID(s.id.MemberID), "requested-member-add", r.GetPeerURLs(), "error", rpctypes.ErrGRPCUnhealthy)
		return rpctypes.ErrGRPCUnhealthy
	}
	return nil
}
