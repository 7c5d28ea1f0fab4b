package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coreos/go-semver/semver"
	"github.com/dustin/go-humanize"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// maintenanceServer is etcd's Maintenance service.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (m *maintenanceServer) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	s := m.s
	if err := s.requireUser(ctx); err != nil {
		return nil, err
	}
	// As etcd's, the sizes are the engine's as of now, not as of the last
	// refresh.
	s.refreshSize()
	size, inUse := s.dbSize()
	resp := &pb.StatusResponse{
		Header:           s.header(),
		Version:          ServerVersion,
		DbSize:           size,
		DbSizeInUse:      inUse,
		Leader:           s.leaderID(),
		RaftIndex:        s.node.CommitIndex(),
		RaftTerm:         s.node.Term(),
		RaftAppliedIndex: s.node.AppliedIndex(),
		IsLearner:        s.isLearner(),
		StorageVersion:   StorageVersion,
		DbSizeQuota:      max(s.cfg.QuotaBackendBytes, 0),
		DowngradeInfo:    &pb.DowngradeInfo{},
	}
	if resp.Leader == 0 {
		resp.Errors = append(resp.Errors, "etcdserver: no leader")
	}
	for _, a := range s.node.Alarms(pb.AlarmType_NONE) {
		resp.Errors = append(resp.Errors, fmt.Sprintf("memberID:%d alarm:%s ", a.MemberID, a.Alarm))
	}
	return resp, nil
}

func (s *Server) isLearner() bool {
	members, err := s.node.Members()
	if err != nil {
		return false
	}
	for _, mb := range members {
		if parseRaftID(mb.ID) == s.id.MemberID {
			return mb.Learner
		}
	}
	return false
}

func (m *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := m.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	var (
		h   mvcc.KeyValueHash
		rev int64
	)
	err := m.s.node.View(ctx, false, func(st *mvcc.Store) error {
		var err error
		h, rev, err = st.HashByRev(r.GetRevision())
		return err
	})
	if err != nil {
		return nil, togRPCError(err)
	}
	resp := &pb.HashKVResponse{
		Header:          &pb.ResponseHeader{Revision: rev},
		Hash:            h.Hash,
		CompactRevision: h.CompactRevision,
		HashRevision:    h.Revision,
	}
	m.s.fillHeader(resp.Header)
	return resp, nil
}

// Alarm lists, raises and clears the cluster's alarms. Raising and
// clearing go through the log, so every member applies them; the list is
// read from this member's store, which holds what it has applied.
func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	s := m.s
	check := s.checkAdmin
	if r.GetAction() == pb.AlarmRequest_GET {
		check = s.requireUser
	}
	if err := check(ctx); err != nil {
		return nil, err
	}
	switch r.GetAction() {
	case pb.AlarmRequest_GET:
		return &pb.AlarmResponse{Header: s.header(), Alarms: s.node.Alarms(r.GetAlarm())}, nil
	case pb.AlarmRequest_ACTIVATE, pb.AlarmRequest_DEACTIVATE:
	default:
		return nil, status.Error(codes.InvalidArgument, "etcdserver: unknown alarm action")
	}
	resp, err := proposeAs[*pb.AlarmResponse](ctx, s, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, err
	}
	for _, a := range resp.Alarms {
		if r.GetAction() == pb.AlarmRequest_ACTIVATE {
			s.cfg.Logger.Warn("alarm raised", "alarm", a.Alarm.String(), "member-id", raftID(a.MemberID))
		} else {
			s.cfg.Logger.Info("alarm cleared", "alarm", a.Alarm.String(), "member-id", raftID(a.MemberID))
		}
	}
	resp.Header = s.header()
	return resp, nil
}

// Defragment gives back the space freed by deletes, on this member only.
func (m *maintenanceServer) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	s := m.s
	if err := s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	s.cfg.Logger.Info("starting defragment")
	err := s.node.WithBackend(func(be engine.Backend) error {
		d, ok := be.(engine.Defragmenter)
		if !ok {
			return status.Errorf(codes.Unimplemented, "etcdserver: the %s engine cannot defragment", s.cfg.Engine.Name)
		}
		return d.Defrag(ctx)
	})
	if err != nil {
		s.cfg.Logger.Warn("failed to defragment", "error", err)
		return nil, togRPCError(err)
	}
	s.refreshSize()
	s.cfg.Logger.Info("finished defragment", "took", time.Since(start))
	return &pb.DefragmentResponse{Header: s.header()}, nil
}

// Snapshot streams a copy of the member's data in etcd's framing: chunks
// with the bytes remaining, then a last message holding the sha256 of
// everything sent before, which `etcdctl snapshot save` checks. The
// payload is a Strata snapshot (see doc.go), padded so that its size is a
// multiple of 512 as etcdctl expects of a bbolt file. The backup is first
// written to a file in the data directory, so that the engine is held
// only for a local copy, not for as long as the client takes to read,
// and remaining_bytes is exact.
func (m *maintenanceServer) Snapshot(r *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	s := m.s
	if err := s.checkAdmin(srv.Context()); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.cfg.DataDir, snapshotTempPattern)
	if err != nil {
		return togRPCError(err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	err = s.node.WithBackend(func(be engine.Backend) error { return be.Backup(f) })
	if err != nil {
		return togRPCError(err)
	}
	n, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return togRPCError(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return togRPCError(err)
	}
	total := snapshotSize(n)
	s.cfg.Logger.Info("sending database snapshot to client", "total-bytes", total, "size", humanize.Bytes(uint64(total)))
	start := time.Now()
	payload := io.MultiReader(io.LimitReader(f, n), snapshotTrailer(n))
	h := sha256.New()
	var sent int64
	for sent < total {
		// Send does not wait for the message to be received: every
		// message needs a buffer of its own.
		buf := make([]byte, min(snapshotChunk, total-sent))
		if _, err := io.ReadFull(payload, buf); err != nil {
			return togRPCError(err)
		}
		sent += int64(len(buf))
		h.Write(buf)
		if err := srv.Send(&pb.SnapshotResponse{RemainingBytes: uint64(total - sent), Blob: buf, Version: StorageVersion}); err != nil {
			return togRPCError(err)
		}
	}
	if err := srv.Send(&pb.SnapshotResponse{Blob: h.Sum(nil), Version: StorageVersion}); err != nil {
		return togRPCError(err)
	}
	s.cfg.Logger.Info("successfully sent database snapshot to client", "total-bytes", total, "size", humanize.Bytes(uint64(total)), "took", time.Since(start).String())
	return nil
}

// Snapshot payload framing: the engine's backup stream, zeros, then a
// 16-byte trailer (the backup's length, big-endian, and snapshotMagic)
// ending the payload on a multiple of 512 bytes.
const (
	snapshotTempPattern = "snapshot-*.tmp"
	snapshotChunk       = 32 << 10
	snapshotAlign       = 512
	snapshotMagic       = "STRATASN"
)

func snapshotSize(backup int64) int64 {
	return (backup + 16 + snapshotAlign - 1) / snapshotAlign * snapshotAlign
}

func snapshotTrailer(backup int64) io.Reader {
	pad := make([]byte, snapshotSize(backup)-backup)
	binary.BigEndian.PutUint64(pad[len(pad)-16:], uint64(backup))
	copy(pad[len(pad)-8:], snapshotMagic)
	return bytesReader(pad)
}

// ErrNotSnapshot is returned by ReadSnapshot for a file without a Strata
// snapshot's framing (size and trailer), such as an etcd snapshot.
var ErrNotSnapshot = errors.New("server: not a Strata snapshot")

// ReadSnapshot checks a snapshot file saved by `etcdctl snapshot save`
// (its framing, then its sha256) and returns a reader of the engine
// backup it holds, to give to the engine's Restore. A file without the
// framing fails with ErrNotSnapshot.
func ReadSnapshot(f io.ReaderAt, size int64) (io.Reader, error) {
	if size < 32+16 || (size-32)%snapshotAlign != 0 {
		return nil, fmt.Errorf("%w (size %d)", ErrNotSnapshot, size)
	}
	payload := size - 32
	var tr [16]byte
	if _, err := f.ReadAt(tr[:], payload-16); err != nil {
		return nil, err
	}
	if string(tr[8:]) != snapshotMagic {
		return nil, fmt.Errorf("%w (no trailer)", ErrNotSnapshot)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, payload)); err != nil {
		return nil, err
	}
	sum := make([]byte, 32)
	if _, err := f.ReadAt(sum, payload); err != nil {
		return nil, err
	}
	if string(sum) != string(h.Sum(nil)) {
		return nil, errors.New("server: snapshot file integrity check failed: sha256 mismatch")
	}
	n := int64(binary.BigEndian.Uint64(tr[:8]))
	if n < 0 || snapshotSize(n) != payload {
		return nil, errors.New("server: corrupt snapshot trailer")
	}
	return io.NewSectionReader(f, 0, n), nil
}

func (m *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	s := m.s
	if err := s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	target := r.GetTargetID()
	if target == s.leaderID() && target != 0 {
		return &pb.MoveLeaderResponse{Header: s.header()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.reqTimeout())
	defer cancel()
	err := s.node.TransferLeadership(ctx, raftID(target))
	if errors.Is(err, replication.ErrMemberNotFound) || errors.Is(err, replication.ErrNotLearner) {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	if err != nil {
		return nil, proposeError(err)
	}
	return &pb.MoveLeaderResponse{Header: s.header()}, nil
}

// Hash is etcd's: a hash of the member's whole keyspace (see
// mvcc.Store.HashAll), for tests that compare members at one revision.
func (m *maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	if err := m.s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	var (
		h   uint32
		rev int64
	)
	err := m.s.node.View(ctx, false, func(st *mvcc.Store) error {
		var err error
		h, rev, err = st.HashAll()
		return err
	})
	if err != nil {
		return nil, togRPCError(err)
	}
	resp := &pb.HashResponse{Header: &pb.ResponseHeader{Revision: rev}, Hash: h}
	m.s.fillHeader(resp.Header)
	return resp, nil
}

// Downgrade answers etcd's downgrade requests (etcdctl downgrade
// validate|enable|cancel) for the cluster version Strata reports, with
// etcd's rules: the target is major.minor[.patch], and the only valid one
// is one minor version below the cluster version. Validate says whether a
// downgrade could start; Cancel succeeds as etcd's does when no downgrade
// is in progress (etcd only logs it); Enable is refused after validating:
// a Strata cluster cannot run at an older cluster version, since every
// member runs the same Strata binary (see ErrDowngradeUnsupported).
func (m *maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	s := m.s
	if err := s.checkAdmin(ctx); err != nil {
		return nil, err
	}
	cv, err := s.clusterSemver()
	if err != nil {
		return nil, err
	}
	resp := &pb.DowngradeResponse{Header: &pb.ResponseHeader{}, Version: fmt.Sprintf("%d.%d", cv.Major, cv.Minor)}
	validate := func() error {
		target, err := semver.NewVersion(r.GetVersion())
		if err != nil {
			// As etcd: major.minor is accepted too.
			if target, err = semver.NewVersion(r.GetVersion() + ".0"); err != nil {
				return rpctypes.ErrGRPCWrongDowngradeVersionFormat
			}
		}
		// The cluster's applied state, as of a linearizable read (as etcd's).
		if err := s.view(ctx, true, func(*mvcc.Store) error { return nil }); err != nil {
			return readError(ctx, err)
		}
		if target.Major != cv.Major || target.Minor+1 != cv.Minor {
			return rpctypes.ErrGRPCInvalidDowngradeTargetVersion
		}
		return nil
	}
	switch r.GetAction() {
	case pb.DowngradeRequest_VALIDATE:
		if err := validate(); err != nil {
			return nil, err
		}
	case pb.DowngradeRequest_ENABLE:
		if err := validate(); err != nil {
			s.cfg.Logger.Warn("reject downgrade request", "error", err)
			return nil, err
		}
		s.cfg.Logger.Warn("reject downgrade request", "error", ErrDowngradeUnsupported)
		return nil, status.Error(codes.FailedPrecondition, ErrDowngradeUnsupported.Error())
	case pb.DowngradeRequest_CANCEL:
		if err := s.view(ctx, true, func(*mvcc.Store) error { return nil }); err != nil {
			return nil, readError(ctx, err)
		}
		// No downgrade can be in progress: etcd logs this and answers.
		s.cfg.Logger.Warn("failed to cancel downgrade", "error", rpctypes.ErrNoInflightDowngrade)
	default:
		return nil, status.Error(codes.Unknown, "etcdserver: unknown method")
	}
	s.fillHeader(resp.Header)
	return resp, nil
}

// ErrDowngradeUnsupported is Downgrade's answer to enable: a valid target,
// but Strata cannot run a cluster at an older cluster version.
var ErrDowngradeUnsupported = errors.New("etcdserver: downgrade is not supported by Strata: to move to etcd of the target version, save a snapshot, `strata snapshot export` it and `etcdutl snapshot restore` it")

// clusterSemver is the cluster version the member reports, as a version.
func (s *Server) clusterSemver() (*semver.Version, error) {
	v, err := s.node.ClusterVersion()
	if err != nil || v == "" {
		v = ClusterVersion
	}
	sv, err := semver.NewVersion(v)
	if err != nil {
		return nil, rpctypes.ErrGRPCClusterVersionUnavailable
	}
	return sv, nil
}

// maybeDefragAtStart is etcd's maybeDefragBackend: with
// BootstrapDefragThresholdMegabytes set, the engine is defragmented
// before the member serves when that frees at least the threshold.
func (s *Server) maybeDefragAtStart() error {
	mb := s.cfg.BootstrapDefragThresholdMegabytes
	if mb == 0 {
		return nil
	}
	threshold := uint64(mb) * 1024 * 1024
	st, err := s.storeStats()
	if err != nil {
		return fmt.Errorf("server: bootstrap defragmentation: %w", err)
	}
	return s.node.WithBackend(func(be engine.Backend) error {
		if uint64(max(st.Size-st.InUse, 0)) < threshold {
			s.cfg.Logger.Info("Skipping defragmentation", "current-db-size-bytes", st.Size, "current-db-size-in-use-bytes", st.InUse,
				"bootstrap-defrag-threshold-bytes", threshold)
			return nil
		}
		d, ok := be.(engine.Defragmenter)
		if !ok {
			return fmt.Errorf("server: bootstrap defragmentation: the %s engine cannot defragment", s.cfg.Engine.Name)
		}
		start := time.Now()
		s.cfg.Logger.Info("defragmenting", "current-db-size-bytes", st.Size, "current-db-size-in-use-bytes", st.InUse)
		if err := d.Defrag(context.Background()); err != nil {
			return fmt.Errorf("server: bootstrap defragmentation: %w", err)
		}
		after, err := be.Stats()
		if err != nil {
			return fmt.Errorf("server: bootstrap defragmentation: %w", err)
		}
		s.cfg.Logger.Info("finished defragmenting directory", "current-db-size-bytes-diff", after.Size-st.Size,
			"current-db-size-bytes", after.Size, "took", time.Since(start))
		return nil
	})
}
