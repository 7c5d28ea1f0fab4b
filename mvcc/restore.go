package mvcc

import "github.com/strata-kv/strata/engine"

// ResetAppliedIndex sets the raft applied index stored in be (a store
// that is not open) to 0, so that a store restored from a backup can
// start a new raft log: entries at or below the stored index would
// otherwise be skipped as already applied. It is what `etcdutl snapshot
// restore` does to etcd's consistent index.
func ResetAppliedIndex(be engine.Backend) error {
	var b engine.Batch
	b.Set(metaAppliedIndex, putUint64(0))
	if err := b.Err(); err != nil {
		return err
	}
	return be.Commit(&b, engine.Sync)
}
