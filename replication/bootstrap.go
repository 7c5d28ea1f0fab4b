package replication

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// ErrExistingState is returned by Bootstrap for a node that has raft
// state already.
var ErrExistingState = errors.New("replication: the node has raft state already")

// Bootstrap writes, offline, the raft state of a node of a new cluster
// whose members are peers: its log then holds the cluster's first
// configuration, as Open writes it for a Config with Bootstrap set. It is
// how a store restored from a snapshot becomes a member of a new cluster
// of several members (etcdutl snapshot restore writes etcd's WAL so): the
// node keeps its store, and later starts need no Bootstrap. Of cfg, only
// ID, Dir, OpenLog and Logger are used.
func Bootstrap(cfg Config, peers []Peer) error {
	if cfg.ID == "" || cfg.Dir == "" || cfg.OpenLog == nil {
		return fmt.Errorf("%w: Bootstrap needs ID, Dir and OpenLog", ErrInvalidConfig)
	}
	if len(peers) == 0 {
		return fmt.Errorf("%w: Bootstrap needs peers", ErrInvalidConfig)
	}
	cfg.EnsureDefaults()
	raftDir := filepath.Join(cfg.Dir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	logs, err := cfg.OpenLog(filepath.Join(raftDir, "log"))
	if err != nil {
		return fmt.Errorf("replication: open raft log: %w", err)
	}
	hlog := hclogFor(cfg.Logger)
	snaps, err := openSnapshots(raftDir, cfg.snapshotsRetained(), hlog, nil)
	if err != nil {
		logs.Close()
		return err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	var servers []raft.Server
	for _, p := range peers {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	// The transport is used only by raft's protocol versions before 3.
	err = raft.BootstrapCluster(rc, logs, logs, snaps, nil, raft.Configuration{Servers: servers})
	if errors.Is(err, raft.ErrCantBootstrap) {
		err = ErrExistingState
	}
	if cerr := logs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("replication: bootstrap: %w", err)
	}
	return nil
}

// RewriteSnapshot writes, offline, a new newest raft snapshot of the node
// in dir that names its store (which must be at or past the newest
// snapshot's index, as a store is): the same index, term and configuration
// as the newest snapshot, so raft sends a dump of the store instead of an
// older snapshot's content. `strata migrate` calls it after moving a store
// to another engine, so that no snapshot in the old engine's backup format
// (snapshots taken before engine dumps) is used any more. A node without
// snapshots is left alone.
func RewriteSnapshot(dir string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	snaps, err := openSnapshots(filepath.Join(dir, "raft"), 2, hclogFor(logger), nil)
	if err != nil {
		return err
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	m := metas[0]
	// The store writes its metadata's legacy peer list through a
	// transport's EncodePeer: an in-memory one does.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, m.Index, m.Term, m.Configuration, m.ConfigurationIndex, trans)
	if err != nil {
		return fmt.Errorf("replication: rewrite snapshot: %w", err)
	}
	if err := writeSnapshotRef(sink, m.Index); err != nil {
		sink.Cancel()
		return fmt.Errorf("replication: rewrite snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("replication: rewrite snapshot: %w", err)
	}
	return nil
}
