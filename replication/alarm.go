package replication

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// ErrNoSpace is the result of a request that would add data while a NOSPACE
// alarm is active (etcd's "database space exceeded").
var ErrNoSpace = errors.New("replication: database space exceeded")

// ErrCorruptCluster is the result of a write (and of a range, lease
// grant, lease revoke or compaction) applied while a CORRUPT alarm is
// active (etcd's "corrupt cluster").
var ErrCorruptCluster = errors.New("replication: corrupt cluster")

// alarmPrefix names alarm records in the store's auxiliary area:
// alarmPrefix + alarm type name + "/" + member ID in hexadecimal -> "".
const alarmPrefix = "alarm/"

// alarms is the cluster's alarm list, as etcd's alarm store: raised and
// cleared by applied AlarmRequests, so every member has the same list, kept
// in the store (and its snapshots) and cached here for the apply path.
type alarms struct {
	mu   sync.Mutex
	list []*pb.AlarmMember
	// noSpace is set while a NOSPACE alarm is active: requests that add
	// data fail with ErrNoSpace when applied (etcd's capped applier).
	noSpace atomic.Bool
	// corrupt is set while a CORRUPT alarm is active: the kinds marked
	// refusedCorrupt fail with ErrCorruptCluster when applied (etcd's
	// corrupt applier).
	corrupt atomic.Bool
}

func alarmKey(m *pb.AlarmMember) []byte {
	return []byte(alarmPrefix + m.Alarm.String() + "/" + strconv.FormatUint(m.MemberID, 16))
}

// load replaces the list with the store's.
func (a *alarms) load(s *mvcc.Store) error {
	recs, err := s.Aux([]byte(alarmPrefix))
	if err != nil {
		return fmt.Errorf("replication: load alarms: %w", err)
	}
	var list []*pb.AlarmMember
	for k := range recs {
		typ, member, ok := strings.Cut(strings.TrimPrefix(k, alarmPrefix), "/")
		t, known := pb.AlarmType_value[typ]
		id, err := strconv.ParseUint(member, 16, 64)
		if !ok || !known || err != nil {
			return fmt.Errorf("replication: bad alarm record %q", k)
		}
		list = append(list, &pb.AlarmMember{MemberID: id, Alarm: pb.AlarmType(t)})
	}
	slices.SortFunc(list, func(x, y *pb.AlarmMember) int {
		if x.MemberID != y.MemberID {
			return cmpUint(x.MemberID, y.MemberID)
		}
		return int(x.Alarm) - int(y.Alarm)
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = list
	a.update()
	return nil
}

func cmpUint(x, y uint64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// get returns the alarms of type t, or all of them for AlarmType_NONE.
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

// apply applies an AlarmRequest as etcd's applier does: activate and
// deactivate answer the alarm they changed (none if nothing changed), get
// answers the list.
func (a *alarms) apply(w *mvcc.WriteBatch, r *pb.AlarmRequest) *pb.AlarmResponse {
	resp := &pb.AlarmResponse{}
	m := &pb.AlarmMember{MemberID: r.MemberID, Alarm: r.Alarm}
	switch r.Action {
	case pb.AlarmRequest_GET:
		resp.Alarms = a.get(r.Alarm)
		return resp
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			return resp
		}
	case pb.AlarmRequest_DEACTIVATE:
	default:
		return resp
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := slices.IndexFunc(a.list, func(x *pb.AlarmMember) bool { return x.MemberID == m.MemberID && x.Alarm == m.Alarm })
	switch {
	case r.Action == pb.AlarmRequest_ACTIVATE && i < 0:
		a.list = append(a.list, m)
		w.SetAux(alarmKey(m), nil)
	case r.Action == pb.AlarmRequest_DEACTIVATE && i >= 0:
		a.list = slices.Delete(a.list, i, i+1)
		w.DeleteAux(alarmKey(m))
	default:
		return resp
	}
	a.update()
	resp.Alarms = []*pb.AlarmMember{{MemberID: m.MemberID, Alarm: m.Alarm}}
	return resp
}

func (a *alarms) update() {
	a.noSpace.Store(slices.ContainsFunc(a.list, func(m *pb.AlarmMember) bool { return m.Alarm == pb.AlarmType_NOSPACE }))
	a.corrupt.Store(slices.ContainsFunc(a.list, func(m *pb.AlarmMember) bool { return m.Alarm == pb.AlarmType_CORRUPT }))
}

// Alarms returns the cluster's alarms of type t (all for
// AlarmType_NONE), as this member has applied them.
func (n *Node) Alarms(t pb.AlarmType) []*pb.AlarmMember { return n.fsm.alarms.get(t) }

// Corrupt reports whether a CORRUPT alarm is active.
func (n *Node) Corrupt() bool { return n.fsm.alarms.corrupt.Load() }

// NoSpace reports whether a NOSPACE alarm is active.
func (n *Node) NoSpace() bool { return n.fsm.alarms.noSpace.Load() }
