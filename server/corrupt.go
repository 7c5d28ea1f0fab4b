package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// Corruption detection, as etcd's (etcdserver/corrupt.go): members compare
// their HashKV at the same revisions. The initial check (InitialCorruptCheck)
// runs before a member serves clients and stops a member whose hash differs
// from a peer's; the periodic checks run on the leader (CorruptCheckTime,
// CompactHashCheckTime) and raise the replicated CORRUPT alarm, after which
// writes are refused with "etcdserver: corrupt cluster". Members ask each
// other over the peer port (replication.Node.PeerHashKV), as etcd asks over
// its peer URLs.

// errCorruptData is the initial check's failure.
var errCorruptData = errors.New("found data inconsistency with peers")

// peerHash is a peer's answer to HashKV at a revision.
type peerHash struct {
	id   uint64
	addr string
	resp *pb.HashKVResponse
	err  error
}

// localHash returns this member's HashKV at rev (0: its current revision)
// and its current revision.
func (s *Server) localHash(rev int64) (mvcc.KeyValueHash, int64, error) {
	var (
		h   mvcc.KeyValueHash
		cur int64
	)
	err := s.node.View(context.Background(), false, func(st *mvcc.Store) error {
		var err error
		h, cur, err = st.HashByRev(rev)
		return err
	})
	return h, cur, err
}

// peerHashes asks every other member for its HashKV at rev, over the peer
// port (with the peer TLS), as etcd asks over its peer URLs.
func (s *Server) peerHashes(ctx context.Context, rev int64) []peerHash {
	members, err := s.node.Members()
	if err != nil {
		return nil
	}
	var out []peerHash
	for _, m := range members {
		id := parseRaftID(m.ID)
		if id == s.id.MemberID {
			continue
		}
		p := peerHash{id: id, addr: m.Addr}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
		h, cur, err := s.node.PeerHashKV(cctx, m.Addr, rev)
		cancel()
		if err != nil {
			p.err = err
			s.cfg.Logger.Warn("failed hash kv request", "local-member-id", raftID(s.id.MemberID),
				"requested-revision", rev, "remote-peer-endpoint", m.Addr, "error", err)
		} else {
			p.resp = &pb.HashKVResponse{Header: &pb.ResponseHeader{Revision: cur, MemberId: id},
				Hash: h.Hash, CompactRevision: h.CompactRevision, HashRevision: h.Revision}
		}
		out = append(out, p)
	}
	return out
}

// initialCorruptCheck is etcd's InitialCheck: it fails if a peer's hash at
// this member's revision differs while their compact revisions agree.
func (s *Server) initialCorruptCheck(ctx context.Context) error {
	lg := s.cfg.Logger
	me := raftID(s.id.MemberID)
	lg.Info("starting initial corruption check", "local-member-id", me, "timeout", s.cfg.reqTimeout())
	h, _, err := s.localHash(0)
	if err != nil {
		return fmt.Errorf("%s failed to fetch hash (%w)", me, err)
	}
	mismatch := 0
	for _, p := range s.peerHashes(ctx, h.Revision) {
		fields := []any{"local-member-id", me, "local-member-revision", h.Revision,
			"local-member-compact-revision", h.CompactRevision, "local-member-hash", h.Hash,
			"remote-peer-id", raftID(p.id), "remote-peer-endpoints", []string{p.addr}}
		switch {
		case p.resp != nil && p.resp.Hash != h.Hash && p.resp.CompactRevision == h.CompactRevision:
			lg.Warn("found different hash values from remote peer", append(fields, "remote-peer-revision",
				p.resp.Header.Revision, "remote-peer-compact-revision", p.resp.CompactRevision, "remote-peer-hash", p.resp.Hash)...)
			mismatch++
		case p.resp != nil && p.resp.Hash != h.Hash:
			lg.Warn("found different compact revision values from remote peer", append(fields,
				"remote-peer-compact-revision", p.resp.CompactRevision)...)
		case errors.Is(p.err, mvcc.ErrFutureRev):
			lg.Warn("cannot fetch hash from slow remote peer", fields...)
		case errors.Is(p.err, mvcc.ErrCompacted):
			lg.Warn("cannot fetch hash from remote peer; local member is behind", fields...)
		}
	}
	if mismatch > 0 {
		return fmt.Errorf("%s %w", me, errCorruptData)
	}
	lg.Info("initial corruption checking passed; no corruption", "local-member-id", me)
	return nil
}

// periodicCorruptCheck is etcd's PeriodicCheck, run by the leader: a peer
// ahead of it, compacted further, or with another hash at the same
// compact revision raises the CORRUPT alarm for that peer; its own hash
// changing under an unchanged revision raises it for itself.
func (s *Server) periodicCorruptCheck(ctx context.Context) error {
	h, _, err := s.localHash(0)
	if err != nil {
		return err
	}
	peers := s.peerHashes(ctx, h.Revision)
	rctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	err = s.node.ReadBarrier(rctx)
	cancel()
	if err != nil {
		return err
	}
	h2, rev2, err := s.localHash(0)
	if err != nil {
		return err
	}
	lg := s.cfg.Logger
	alarmed := false
	mismatch := func(id uint64) {
		if !alarmed {
			alarmed = true
			s.triggerCorruptAlarm(ctx, id)
		}
	}
	if h2.Hash != h.Hash && h2.Revision == h.Revision && h.CompactRevision == h2.CompactRevision {
		lg.Warn("found hash mismatch", "revision-1", h.Revision, "compact-revision-1", h.CompactRevision, "hash-1", h.Hash,
			"revision-2", h2.Revision, "compact-revision-2", h2.CompactRevision, "hash-2", h2.Hash)
		mismatch(s.id.MemberID)
	}
	checked := 0
	for _, p := range peers {
		if p.resp == nil {
			continue
		}
		checked++
		if p.resp.Header.Revision > rev2 {
			lg.Warn("revision from follower must be less than or equal to leader's", "leader-revision", rev2,
				"follower-revision", p.resp.Header.Revision, "follower-peer-id", raftID(p.id))
			mismatch(p.id)
		}
		if p.resp.CompactRevision > h2.CompactRevision {
			lg.Warn("compact revision from follower must be less than or equal to leader's", "leader-compact-revision",
				h2.CompactRevision, "follower-compact-revision", p.resp.CompactRevision, "follower-peer-id", raftID(p.id))
			mismatch(p.id)
		}
		if p.resp.CompactRevision == h.CompactRevision && p.resp.Hash != h.Hash {
			lg.Warn("same compact revision then hashes must match", "leader-compact-revision", h2.CompactRevision,
				"leader-hash", h.Hash, "follower-compact-revision", p.resp.CompactRevision, "follower-hash", p.resp.Hash,
				"follower-peer-id", raftID(p.id))
			mismatch(p.id)
		}
	}
	lg.Info("finished peer corruption check", "number-of-peers-checked", checked)
	return nil
}

// compactHashCheck is etcd's CompactHashCheck, run by the leader: for the
// hashes its compactions computed, newest first and not yet checked, it
// asks the peers for theirs; the members outside the majority's hash get
// the CORRUPT alarm (member 0 when there is no majority).
func (s *Server) compactHashCheck(ctx context.Context, latestChecked *int64) {
	lg := s.cfg.Logger
	me := raftID(s.id.MemberID)
	lg.Info("starting compact hash check", "local-member-id", me, "timeout", s.cfg.reqTimeout())
	var hashes []mvcc.KeyValueHash
	_ = s.node.View(ctx, false, func(st *mvcc.Store) error { hashes = st.Hashes(); return nil })
	sort.Slice(hashes, func(i, j int) bool { return hashes[i].Revision > hashes[j].Revision })
	for i, h := range hashes {
		if h.Revision <= *latestChecked {
			break
		}
		peers := s.peerHashes(ctx, h.Revision)
		if len(peers) == 0 {
			continue
		}
		if s.checkPeerHashes(ctx, h, peers, latestChecked) {
			lg.Info("finished compaction hash check", "number-of-hashes-checked", i+1)
			return
		}
	}
	lg.Info("finished compaction hash check", "number-of-hashes-checked", len(hashes))
}

// checkPeerHashes compares the peers' hashes at a compaction with the
// leader's; it reports whether the revision was settled (all agreed, or
// alarms were raised).
func (s *Server) checkPeerHashes(ctx context.Context, lh mvcc.KeyValueHash, peers []peerHash, latestChecked *int64) bool {
	lg := s.cfg.Logger
	byHash := map[uint32][]uint64{lh.Hash: {s.id.MemberID}}
	checked := 0
	for _, p := range peers {
		reason := ""
		switch {
		case p.resp == nil:
			reason = "no response"
		case p.resp.CompactRevision != lh.CompactRevision:
			reason = fmt.Sprintf("the peer's CompactRevision %d doesn't match leader's CompactRevision %d",
				p.resp.CompactRevision, lh.CompactRevision)
		}
		if reason != "" {
			lg.Warn("Skipped peer's hash", "number-of-peers", len(peers), "leader-id", raftID(s.id.MemberID),
				"peer-id", raftID(p.id), "reason", reason)
			continue
		}
		checked++
		byHash[p.resp.Hash] = append(byHash[p.resp.Hash], p.id)
	}
	if len(byHash) == 1 {
		if checked == len(peers) {
			lg.Info("successfully checked hash on whole cluster", "number-of-peers-checked", checked,
				"revision", lh.Revision, "compactRevision", lh.CompactRevision)
			*latestChecked = max(*latestChecked, lh.Revision)
			return true
		}
		lg.Warn("skipped revision in compaction hash check; was not able to check all peers",
			"number-of-peers-checked", checked, "number-of-peers", len(peers), "revision", lh.Revision,
			"compactRevision", lh.CompactRevision)
		return false
	}
	quorum := (len(peers)+1)/2 + 1
	quorumExists := false
	for h, ids := range byHash {
		if len(ids) >= quorum {
			quorumExists = true
			delete(byHash, h)
			break
		}
	}
	if !quorumExists {
		lg.Error("Detected compaction hash mismatch but cannot identify the corrupted members, so intentionally set the memberID as 0",
			"leader-id", raftID(s.id.MemberID), "leader-revision", lh.Revision, "leader-compact-revision", lh.CompactRevision,
			"leader-hash", lh.Hash)
		s.triggerCorruptAlarm(ctx, 0)
	}
	for h, ids := range byHash {
		if quorumExists {
			for _, id := range ids {
				s.triggerCorruptAlarm(ctx, id)
			}
		}
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = raftID(id)
		}
		lg.Error("Detected compaction hash mismatch", "leader-id", raftID(s.id.MemberID), "leader-revision", lh.Revision,
			"leader-compact-revision", lh.CompactRevision, "leader-hash", lh.Hash, "peer-hash", h,
			"peer-ids", names, "quorum-exist", quorumExists)
	}
	return true
}

// triggerCorruptAlarm raises the CORRUPT alarm for member id through the
// log.
func (s *Server) triggerCorruptAlarm(ctx context.Context, id uint64) {
	req := &pb.AlarmRequest{MemberID: id, Action: pb.AlarmRequest_ACTIVATE, Alarm: pb.AlarmType_CORRUPT}
	if _, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: req}); err != nil {
		s.cfg.Logger.Warn("raising the CORRUPT alarm failed", "member-id", raftID(id), "error", err)
		return
	}
	s.cfg.Logger.Warn("alarm raised", "alarm", pb.AlarmType_CORRUPT.String(), "member-id", raftID(id))
}

// corruptionLoop runs the leader's periodic checks until the server stops.
func (s *Server) corruptionLoop() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stopc
		cancel()
	}()
	var periodic, compact <-chan time.Time
	if d := s.cfg.CorruptCheckTime; d > 0 {
		s.cfg.Logger.Info("enabled corruption checking", "local-member-id", raftID(s.id.MemberID), "interval", d)
		t := time.NewTicker(d)
		defer t.Stop()
		periodic = t.C
	}
	if d := s.cfg.CompactHashCheckTime; s.cfg.CompactHashCheck && d > 0 {
		s.cfg.Logger.Info("enabled compact hash check", "local-member-id", raftID(s.id.MemberID), "interval", d)
		t := time.NewTicker(d)
		defer t.Stop()
		compact = t.C
	}
	var latestChecked int64
	for {
		select {
		case <-s.stopc:
			return
		case <-periodic:
			if !s.node.IsLeader() {
				continue
			}
			if err := s.periodicCorruptCheck(ctx); err != nil {
				s.cfg.Logger.Warn("failed to check hash KV", "error", err)
			}
		case <-compact:
			if s.node.IsLeader() {
				s.compactHashCheck(ctx, &latestChecked)
			}
		}
	}
}

// reportCorruption raises, once, the CORRUPT alarm for this member, whose
// engine or store found its data damaged while reading (err): the read
// fails with "corrupt cluster" and writes are refused from then on.
func (s *Server) reportCorruption(err error) {
	s.corruptOnce.Do(func() {
		s.cfg.Logger.Error("data corruption detected; raising the CORRUPT alarm", "local-member-id", raftID(s.id.MemberID), "error", err)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-s.stopc:
					cancel()
				case <-ctx.Done():
				}
			}()
			s.triggerCorruptAlarm(ctx, s.id.MemberID)
		}()
	})
}
