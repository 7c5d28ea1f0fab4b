package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/strata-kv/strata/replication"
	"github.com/strata-kv/strata/replication/wal"
)

// StoreDir is where a member keeps its engine's data under its data
// directory.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "member", "data") }

// InitMember makes the data directory cfg.DataDir, whose store (StoreDir)
// was restored from a snapshot, the data directory of a member of the new
// cluster cfg.InitialCluster, as `etcdutl snapshot restore` does with its
// --name, --initial-cluster, --initial-cluster-token and
// --initial-advertise-peer-urls: it writes the member's identity (its ID
// from its peer URLs and the token, the cluster's ID from all members')
// and a raft log holding the cluster's first configuration. Every member
// restored from the same snapshot with the same flags (but its own --name
// and peer URLs) then starts with the same cluster ID and store, and the
// flags given at the start that are about the initial cluster are
// ignored, as etcd ignores them for an existing data directory. The store
// must not have applied raft entries (mvcc.ResetAppliedIndex); of cfg,
// the fields about the initial cluster, DataDir, Engine and Logger are
// used.
func InitMember(cfg Config) error {
	c, err := newConfig(cfg)
	if err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler) // an offline step: quiet unless given one
	}
	if c.InitialClusterState != ClusterStateNew {
		return invalid(fmt.Errorf("server: a restored member starts a new cluster: --initial-cluster-state must be %q", ClusterStateNew))
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, identityFile)); err == nil {
		return fmt.Errorf("server: %s has a member already", c.DataDir)
	}
	id, err := newIdentity(c)
	if err != nil {
		return err
	}
	var peers []replication.Peer
	for _, urls := range c.initialCluster {
		peers = append(peers, replication.Peer{
			ID:   raftID(memberID(urls, c.InitialClusterToken)),
			Addr: mustURL(urls[0]).Host,
		})
	}
	err = replication.Bootstrap(replication.Config{
		ID:  raftID(id.MemberID),
		Dir: filepath.Join(c.DataDir, "member"),
		OpenLog: func(dir string) (replication.LogStore, error) {
			return wal.Open(c.walDir(dir), &wal.Options{Logger: c.Logger.With("component", "wal"), MaxSegments: c.MaxWALs, NoSync: c.UnsafeNoFsync})
		},
		MaxSnapshots: c.MaxSnapshots,
		Logger:       c.Logger,
	}, peers)
	if err != nil {
		return err
	}
	return writeIdentity(c.DataDir, id)
}
