package replication

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// ErrNotInConfiguration is returned by Open with ForceNewCluster for a
// node that is not in its own latest raft configuration (it was removed).
var ErrNotInConfiguration = errors.New("replication: the node is not in its raft configuration")

// forceNewCluster makes the node's raft state that of a one-member
// cluster, keeping its log and store, as etcd's --force-new-cluster
// does: it appends to the log a configuration holding only this node, so
// that at its start it is the only voter, elects itself and commits the
// log. etcd drops the entries past its persisted commit index first;
// hashicorp/raft does not persist the commit index, so here every entry
// of the log is committed, as raft.RecoverCluster commits them: an entry
// that was proposed but never acknowledged may take effect, none that was
// acknowledged is lost. A node without raft state is left alone (it
// bootstraps), as etcd ignores the flag for a new member. It reports
// whether it changed the configuration.
func forceNewCluster(id, addr string, logs LogStore, snaps raft.SnapshotStore) (bool, error) {
	if existing, err := raft.HasExistingState(logs, logs, snaps); err != nil || !existing {
		return false, err
	}
	// The latest configuration: the newest snapshot's, then any in the
	// log past it (uncommitted ones count, as raft counts them).
	var (
		conf             raft.Configuration
		lastIdx, lastTrm uint64
	)
	metas, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("replication: force new cluster: %w", err)
	}
	if len(metas) > 0 {
		conf, lastIdx, lastTrm = metas[0].Configuration, metas[0].Index, metas[0].Term
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return false, fmt.Errorf("replication: force new cluster: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return false, fmt.Errorf("replication: force new cluster: %w", err)
	}
	for i := max(first, lastIdx+1); last > 0 && i <= last; i++ {
		var e raft.Log
		if err := logs.GetLog(i, &e); err != nil {
			return false, fmt.Errorf("replication: force new cluster: log entry %d: %w", i, err)
		}
		if e.Type == raft.LogConfiguration {
			conf = raft.DecodeConfiguration(e.Data)
		}
		lastIdx, lastTrm = e.Index, e.Term
	}
	if !inConfiguration(conf.Servers, id) {
		return false, fmt.Errorf("%w: force new cluster: %s", ErrNotInConfiguration, id)
	}
	if len(conf.Servers) == 1 && conf.Servers[0].Address == raft.ServerAddress(addr) {
		return false, nil
	}
	single := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)}}}
	e := &raft.Log{Index: lastIdx + 1, Term: lastTrm, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(single)}
	if err := logs.StoreLog(e); err != nil {
		return false, fmt.Errorf("replication: force new cluster: %w", err)
	}
	return true, nil
}
