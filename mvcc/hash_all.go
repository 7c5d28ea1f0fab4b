package mvcc

import (
	"bytes"
	"fmt"
	"hash/crc32"
)

// HashAll returns a CRC-32 (Castagnoli) of the store's whole engine
// keyspace (keys, leases, auxiliary data) at its current revision, and that
// revision: etcd's Maintenance.Hash, meant for tests that compare members.
// As etcd leaves out its consistent index, the applied index is left out:
// it is the member's raft position, not data.
func (s *Store) HashAll() (uint32, int64, error) {
	if s.closed.Load() {
		return 0, 0, ErrClosed
	}
	// No batch is open while writeMu is held: the snapshot holds exactly
	// the state's revision.
	s.writeMu.Lock()
	rev := s.state.Load().rev
	snap, err := s.be.NewSnapshot()
	s.writeMu.Unlock()
	if err != nil {
		return 0, 0, fmt.Errorf("mvcc: snapshot: %w", err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		return 0, 0, fmt.Errorf("mvcc: hash: %w", err)
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for ok := it.First(); ok; ok = it.Next() {
		if bytes.Equal(it.Key(), metaAppliedIndex) {
			continue
		}
		h.Write(it.Key())
		h.Write(it.Value())
	}
	if err := it.Close(); err != nil {
		return 0, 0, fmt.Errorf("mvcc: hash: %w", err)
	}
	return h.Sum32(), rev, nil
}
