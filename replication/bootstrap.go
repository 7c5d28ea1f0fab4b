package replication

import (
	"errors"
	"fmt"
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
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(raftDir, "snapshots"), 2, hlog)
	if err != nil {
		logs.Close()
		return fmt.Errorf("replication: snapshot store: %w", err)
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
