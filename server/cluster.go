package server

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// clusterServer is etcd's Cluster service over the raft configuration.
//
// The raft configuration knows each member's ID, peer address and
// whether it votes; names and client URLs are known for this member, and
// names and peer URLs for the members of --initial-cluster. Other members
// are listed with no name and no client URLs, as etcd lists a member that
// has not started yet, until the replication layer carries member
// attributes (see doc.go).
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

func (c *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.GetLinearizable() {
		if err := c.s.view(ctx, true, func(*mvcc.Store) error { return nil }); err != nil {
			return nil, readError(ctx, err)
		}
	}
	members, err := c.s.members()
	if err != nil {
		return nil, togRPCError(err)
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
		switch name, initial := byID[id]; {
		case id == s.id.MemberID:
			m.Name = s.id.Name
			m.PeerURLs = slices.Clone(s.id.PeerURLs)
			m.ClientURLs = slices.Clone(s.cfg.AdvertiseClientURLs)
		case initial:
			m.Name = name
			m.PeerURLs = slices.Clone(s.cfg.initialCluster[name])
		default:
			m.PeerURLs = []string{(&url.URL{Scheme: "http", Host: rm.Addr}).String()}
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

// MemberAdd adds a learner: its ID is computed from its peer URLs and the
// cluster token as etcd does (without etcd's timestamp), which is also
// the ID the new member takes when started with
// --initial-cluster-state=existing. Adding a voting member directly is not
// supported yet: add a learner, start it, then promote it.
func (c *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	s := c.s
	if len(r.GetPeerURLs()) == 0 {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	urls, err := parseURLs("peer URLs", r.GetPeerURLs())
	if err != nil {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	if !r.GetIsLearner() {
		return nil, status.Error(codes.Unimplemented, "etcdserver: adding a voting member is not supported yet; add it with --learner, then promote it")
	}
	existing, err := s.members()
	if err != nil {
		return nil, togRPCError(err)
	}
	for _, m := range existing {
		for _, u := range m.PeerURLs {
			if slices.Contains(r.GetPeerURLs(), u) {
				return nil, rpctypes.ErrGRPCPeerURLExist
			}
		}
	}
	id := memberID(r.GetPeerURLs(), s.cfg.InitialClusterToken)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	defer cancel()
	if err := s.node.AddLearner(ctx, raftID(id), urls[0].Host); err != nil {
		return nil, proposeError(err)
	}
	added := &pb.Member{ID: id, PeerURLs: slices.Clone(r.GetPeerURLs()), IsLearner: true}
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
	s := c.s
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

// MemberUpdate (changing a member's peer URLs) needs the replication layer
// to change a member's address.
func (c *clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, status.Error(codes.Unimplemented, "etcdserver: member update is not supported yet")
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
// until it succeeds or the server stops (ctx).
func (s *Server) publish(ctx context.Context) {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.node.SetMemberAttrs(pctx, raftID(s.id.MemberID), s.id.Name, s.cfg.AdvertiseClientURLs)
		cancel()
		if err == nil {
			return
		}
		s.cfg.Logger.Warn("publishing member attributes failed; retrying", "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
