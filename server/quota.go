package server

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// quota is etcd's backend quota: a write that would take the engine past
// --quota-backend-bytes raises the NOSPACE alarm and fails with "database
// space exceeded". Alarms are replicated (replication.Node.Alarms): while
// one is active every member refuses requests that add data, here before
// proposing them and again when they are applied, as etcd does; deletes,
// reads and compactions still work.
type quota struct {
	s   *Server
	max int64 // <= 0: no quota
}

// check returns ErrGRPCNoSpace if a request costing cost bytes may not
// be applied.
func (q *quota) check(ctx context.Context, cost int) error {
	if cost == 0 || q.max <= 0 {
		return nil
	}
	if q.s.node.NoSpace() {
		return rpctypes.ErrGRPCNoSpace
	}
	size, _ := q.s.dbSize()
	if size+int64(cost) < q.max {
		return nil
	}
	q.s.cfg.Logger.Warn("space quota exceeded; raising the NOSPACE alarm", "quota-size-bytes", q.max, "current-db-size-bytes", size)
	// As etcd: raise the alarm through the log, then refuse.
	req := &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: q.s.id.MemberID, Alarm: pb.AlarmType_NOSPACE}
	if _, err := q.s.propose(ctx, &pb.InternalRaftRequest{Alarm: req}); err != nil {
		q.s.cfg.Logger.Warn("raising the NOSPACE alarm failed", "error", err)
	}
	return rpctypes.ErrGRPCNoSpace
}
