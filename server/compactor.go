package server

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/strata-kv/strata/mvcc"
)

// Auto-compaction, etcd's --auto-compaction-mode and -retention
// (server/etcdserver/api/v3compactor), run by the leader only:
//
//   - periodic with window P: the current revision is sampled every P/10
//     (every 6 minutes when P > 1h); every P (every hour when P > 1h),
//     the store is compacted at the revision sampled P ago;
//   - revision with N: every 5 minutes the store is compacted at the
//     current revision minus N.
//
// A compaction that fails is retried at the next tick.

// defaultRevisionCompactInterval is etcd's revInterval: how often the
// revision mode compacts (Config.revisionCompactInterval, set by tests).
const defaultRevisionCompactInterval = 5 * time.Minute

type compactor struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Server) startCompactor() {
	c := s.cfg
	if (c.AutoCompactionMode == CompactionPeriodic && c.compactPeriod == 0) ||
		(c.AutoCompactionMode == CompactionRevision && c.compactRevs == 0) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.compactor = &compactor{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.compactor.done)
		if c.AutoCompactionMode == CompactionPeriodic {
			s.runPeriodicCompaction(ctx, c.compactPeriod)
		} else {
			s.runRevisionCompaction(ctx, c.compactRevs)
		}
	}()
	c.Logger.Info("auto compaction enabled", "mode", c.AutoCompactionMode, "retention", c.AutoCompactionRetention)
}

func (s *Server) stopCompactor() {
	if s.compactor != nil {
		s.compactor.cancel()
		<-s.compactor.done
	}
}

func (s *Server) currentRev() int64 {
	var rev int64
	_ = s.node.View(context.Background(), false, func(st *mvcc.Store) error {
		rev = st.Rev()
		return nil
	})
	return rev
}

// autoCompact compacts at rev and reports whether it succeeded (a
// revision compacted already counts as success, as in etcd).
func (s *Server) autoCompact(ctx context.Context, mode string, rev int64) bool {
	start := time.Now()
	_, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev}})
	if err != nil && !errors.Is(err, rpctypes.ErrGRPCCompacted) {
		s.cfg.Logger.Warn("failed auto compaction", "mode", mode, "revision", rev, "error", err)
		return false
	}
	s.cfg.Logger.Info("completed auto compaction", "mode", mode, "revision", rev, "took", time.Since(start))
	return true
}

func (s *Server) runRevisionCompaction(ctx context.Context, keep int64) {
	t := time.NewTicker(s.cfg.revisionCompactInterval)
	defer t.Stop()
	var prev int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.node.IsLeader() {
			continue
		}
		rev := s.currentRev() - keep
		if rev <= 0 || rev == prev {
			continue
		}
		if s.autoCompact(ctx, CompactionRevision, rev) {
			prev = rev
		}
	}
}

func (s *Server) runPeriodicCompaction(ctx context.Context, period time.Duration) {
	interval := min(period, time.Hour)
	retry := interval / 10
	keep := int(period/retry) + 1
	t := time.NewTicker(retry)
	defer t.Stop()
	var (
		revs         []int64
		lastRev      int64
		lastSuccess  = time.Now()
		baseInterval = period
	)
	for {
		revs = append(revs, s.currentRev())
		if len(revs) > keep {
			revs = revs[1:] // revs[0] is the revision sampled a period ago
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.node.IsLeader() {
			continue
		}
		rev := revs[0]
		if time.Since(lastSuccess) < baseInterval || rev == lastRev {
			continue
		}
		baseInterval = interval
		if s.autoCompact(ctx, CompactionPeriodic, rev) {
			lastRev, lastSuccess = rev, time.Now()
		}
	}
}
