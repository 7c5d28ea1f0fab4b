package replication

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// Leases are replicated like every write (grant, revoke and checkpoint are
// raft entries), but their clocks live on the leader only, as in etcd: the
// leader's store is primary (mvcc.Store.Promote), renewals (keep-alives) and
// time-to-live questions go to it, and it proposes the revokes of the leases
// that expire. A new leader promotes its store with every lease's remaining
// TTL plus an election timeout, so a leader change never cuts a TTL short.

// leaseTick is how often the leader looks for expired leases and due
// checkpoints.
const leaseTick = 250 * time.Millisecond

// leaseLoop runs the leader's lease duties.
func (n *Node) leaseLoop() {
	defer n.wg.Done()
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		select {
		case <-n.stopc:
			return
		case <-t.C:
		}
		if !n.IsLeader() || n.readyTerm.Load() != n.raft.CurrentTerm() {
			continue
		}
		var expired []int64
		var cps []*pb.LeaseCheckpoint
		now := time.Now()
		n.fsm.view(func(s *mvcc.Store) error {
			expired = s.Expired(now, 64)
			cps = s.DueCheckpoints(now, 256)
			return nil
		})
		if len(expired) > 0 {
			// One proposal for them all: they go out together, in as few
			// entries as MaxBatch allows.
			reqs := make([]*pb.InternalRaftRequest, len(expired))
			for i, id := range expired {
				reqs[i] = &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs := n.proposeLocalAll(ctx, reqs)
			cancel()
			for i, err := range errs {
				if err != nil && !errors.Is(err, ErrStopped) {
					n.cfg.Logger.Warn("revoking an expired lease failed; it is retried", "lease", expired[i], "error", err)
				}
			}
		}
		if len(cps) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := n.proposeLocal(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps}}, deadlineWait{})
			cancel()
			if err != nil && !errors.Is(err, ErrStopped) {
				n.cfg.Logger.Warn("lease checkpoint failed", "error", err)
			}
		}
	}
}

// LeaseRenew is a keep-alive: it resets lease id's expiry on the leader and
// returns its TTL. Followers forward it.
func (n *Node) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	return atLeader(ctx, n,
		func() (int64, error) { return n.leaseRenewLocal(ctx, id) },
		func(addr string) (int64, error) { return n.forwardLeaseRenew(ctx, addr, id) })
}

func (n *Node) leaseRenewLocal(ctx context.Context, id int64) (int64, error) {
	// As etcd: the leader renews only once it has applied everything it
	// committed, so a lease granted just before is known.
	if n.readyTerm.Load() != n.raft.CurrentTerm() {
		return 0, ErrNotReady
	}
	if err := n.fsm.applied.wait(ctx, n.raft.CommitIndex()); err != nil {
		return 0, err
	}
	var ttl int64
	var clear bool
	err := n.fsm.view(func(s *mvcc.Store) error {
		var err error
		ttl, clear, err = s.LeaseRenew(ctx, id)
		return err
	})
	if errors.Is(err, mvcc.ErrNotPrimary) {
		return 0, ErrNotLeader
	}
	if err != nil {
		return 0, err
	}
	if clear {
		// The checkpointed remaining TTL is stale now; clear it so that a
		// later leader counts from the full TTL.
		cp := &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{
			Checkpoints: []*pb.LeaseCheckpoint{{ID: id, Remaining_TTL: 0}}}}
		if _, err := n.proposeLocal(ctx, cp, deadlineWait{}); err != nil {
			return 0, err
		}
	}
	return ttl, nil
}

// LeaseTimeToLive answers etcd's LeaseTimeToLive from the leader, which
// alone knows the remaining TTLs. Followers forward it.
func (n *Node) LeaseTimeToLive(ctx context.Context, id int64, keys bool) (*pb.LeaseTimeToLiveResponse, error) {
	return atLeader(ctx, n,
		func() (*pb.LeaseTimeToLiveResponse, error) { return n.leaseTTLLocal(ctx, id, keys) },
		func(addr string) (*pb.LeaseTimeToLiveResponse, error) { return n.forwardLeaseTTL(ctx, addr, id, keys) })
}

func (n *Node) leaseTTLLocal(ctx context.Context, id int64, keys bool) (*pb.LeaseTimeToLiveResponse, error) {
	if err := n.ReadBarrier(ctx); err != nil {
		return nil, err
	}
	var resp *pb.LeaseTimeToLiveResponse
	err := n.fsm.view(func(s *mvcc.Store) error {
		var err error
		resp, err = s.LeaseTimeToLive(id, keys)
		return err
	})
	if errors.Is(err, mvcc.ErrNotPrimary) {
		return nil, ErrNotLeader
	}
	return resp, err
}
