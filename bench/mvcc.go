package bench

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/mvcc"
)

// MVCCStore drives an mvcc.Store in process ("mvcc" mode): every write is
// one request in a write batch of its own, every read a Range at the current
// revision, as a single-node server without raft would issue them.
type MVCCStore struct {
	Store *mvcc.Store
}

var (
	_ Store       = (*MVCCStore)(nil)
	_ BatchWriter = (*MVCCStore)(nil)
)

// Read implements Store.
func (s *MVCCStore) Read(ctx context.Context, key []byte) error {
	_, err := s.Store.Range(ctx, &pb.RangeRequest{Key: key})
	return err
}

// Write implements Store.
func (s *MVCCStore) Write(_ context.Context, key, value []byte) error {
	_, err := s.Store.Put(&pb.PutRequest{Key: key, Value: value})
	return err
}

// WriteBatch implements BatchWriter: one write batch, one revision per key.
func (s *MVCCStore) WriteBatch(_ context.Context, keys, values [][]byte) error {
	w, err := s.Store.NewWriteBatch()
	if err != nil {
		return err
	}
	for i := range keys {
		if _, err := w.Put(&pb.PutRequest{Key: keys[i], Value: values[i]}); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit(s.Store.AppliedIndex())
}

// Scan implements Store.
func (s *MVCCStore) Scan(ctx context.Context, start []byte, n int) error {
	_, err := s.Store.Range(ctx, &pb.RangeRequest{Key: start, RangeEnd: []byte{0}, Limit: int64(n)})
	return err
}

// Delete implements Store.
func (s *MVCCStore) Delete(_ context.Context, key []byte) error {
	_, err := s.Store.DeleteRange(&pb.DeleteRangeRequest{Key: key})
	return err
}
