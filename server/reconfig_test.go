package server

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// reconfigMembers builds a member list: "v" a started voter, "d" a voter that never
// published (not started), "l" a learner; IDs 1, 2, ...
func reconfigMembers(spec string) []*pb.Member {
	var out []*pb.Member
	for i, c := range spec {
		m := &pb.Member{ID: uint64(i + 1)}
		switch c {
		case 'v':
			m.Name = "m"
		case 'l':
			m.Name, m.IsLearner = "m", true
		}
		out = append(out, m)
	}
	return out
}

// The strict reconfiguration checks against etcd's
// RaftCluster.IsReadyToAddVotingMember, IsReadyToRemoveVotingMember and
// isConnectedToQuorumAfterAddingNewMemberSince.
func TestStrictReconfigChecks(t *testing.T) {
	addVoter := []struct {
		members string
		want    bool
	}{
		{"v", true},     // a second member joins a one-member cluster
		{"d", false},    // nothing started
		{"vd", false},   // 1 of 3 started
		{"vv", true},    // 2 of 3
		{"vvd", false},  // 2 of 4
		{"vvv", true},   // 3 of 4
		{"vvdd", false}, // 2 of 5
		{"vvvd", true},  // 3 of 5
		{"vl", true},    // learners do not count: one voter, a second joins
		{"vdl", false},  // 1 of 3
	}
	for _, tc := range addVoter {
		if got := readyToAddVoter(reconfigMembers(tc.members)); got != tc.want {
			t.Errorf("readyToAddVoter(%s) = %v, want %v", tc.members, got, tc.want)
		}
	}
	remove := []struct {
		members string
		id      uint64
		want    bool
	}{
		{"vvv", 1, true},  // 2 of 2 left
		{"vvd", 1, false}, // 1 of 2 left
		{"vvd", 3, true},  // removing the one not started
		{"vl", 2, true},   // a learner
		{"vv", 9, true},   // not a member
		{"vvvd", 1, true}, // 2 of 3 left
		{"vvdd", 1, false},
	}
	for _, tc := range remove {
		if got := readyToRemove(reconfigMembers(tc.members), tc.id); got != tc.want {
			t.Errorf("readyToRemove(%s, %d) = %v, want %v", tc.members, tc.id, got, tc.want)
		}
	}
	afterAdd := []struct {
		reachable, voters int
		want              bool
	}{
		{1, 1, true},  // a one-member cluster may always grow
		{1, 2, false}, // 1 of 3
		{2, 2, true},  // 2 of 3
		{2, 3, false}, // a voter down: 2 of 4
		{3, 3, true},  // 3 of 4
		{3, 4, true},  // 3 of 5
		{3, 5, false}, // 3 of 6
		{4, 5, true},  // 4 of 6
	}
	for _, tc := range afterAdd {
		if got := quorumAfterAdd(tc.reachable, tc.voters); got != tc.want {
			t.Errorf("quorumAfterAdd(%d reachable, %d voters) = %v, want %v", tc.reachable, tc.voters, got, tc.want)
		}
	}
}
