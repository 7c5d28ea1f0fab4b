package server

import (
	"slices"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// alarms is the member's alarm list. etcd replicates alarms through raft
// so that every member refuses writes once one member is out of space;
// here each member keeps its own list until the replication layer applies
// alarm requests (see doc.go), so a NOSPACE alarm refuses writes on the
// member that raised it.
type alarms struct {
	mu   sync.Mutex
	list []*pb.AlarmMember
	// noSpace is set while a NOSPACE alarm is active, for the write path.
	noSpace atomic.Bool
}

func (a *alarms) get(t pb.AlarmType) []*pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*pb.AlarmMember
	for _, m := range a.list {
		if t == pb.AlarmType_NONE || m.Alarm == t {
			out = append(out, &pb.AlarmMember{MemberID: m.MemberID, Alarm: m.Alarm})
		}
	}
	return out
}

// activate raises an alarm and returns it, or nil if it was raised
// already.
func (a *alarms) activate(member uint64, t pb.AlarmType) *pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.list {
		if m.MemberID == member && m.Alarm == t {
			return nil
		}
	}
	m := &pb.AlarmMember{MemberID: member, Alarm: t}
	a.list = append(a.list, m)
	a.update()
	return &pb.AlarmMember{MemberID: member, Alarm: t}
}

// deactivate clears an alarm and returns it, or nil if it was not
// raised.
func (a *alarms) deactivate(member uint64, t pb.AlarmType) *pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.list, func(m *pb.AlarmMember) bool { return m.MemberID == member && m.Alarm == t })
	if i < 0 {
		return nil
	}
	a.list = slices.Delete(a.list, i, i+1)
	a.update()
	return &pb.AlarmMember{MemberID: member, Alarm: t}
}

func (a *alarms) update() {
	a.noSpace.Store(slices.ContainsFunc(a.list, func(m *pb.AlarmMember) bool { return m.Alarm == pb.AlarmType_NOSPACE }))
}

// quota is etcd's backend quota: a write that would take the engine past
// --quota-backend-bytes raises the NOSPACE alarm and fails with "database
// space exceeded"; while the alarm is active, every write that adds data
// fails the same way (deletes, reads and compactions still work).
type quota struct {
	s   *Server
	max int64 // <= 0: no quota
}

// check returns ErrGRPCNoSpace if a request costing cost bytes may not
// be applied.
func (q *quota) check(cost int) error {
	if cost == 0 || q.max <= 0 {
		return nil
	}
	if q.s.alarms.noSpace.Load() {
		return rpctypes.ErrGRPCNoSpace
	}
	size, _ := q.s.dbSize()
	if size+int64(cost) < q.max {
		return nil
	}
	if m := q.s.alarms.activate(q.s.id.MemberID, pb.AlarmType_NOSPACE); m != nil {
		q.s.cfg.Logger.Warn("alarm raised", "alarm", "NOSPACE", "db_size", size, "quota", q.max)
	}
	return rpctypes.ErrGRPCNoSpace
}
