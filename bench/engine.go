package bench

import (
	"context"
	"errors"

	"github.com/strata-kv/strata/engine"
)

// EngineStore drives an engine.Backend directly ("engine" mode). Every write
// is one batch commit; reads take a fresh snapshot each, as a server would.
type EngineStore struct {
	Backend engine.Backend
	// Sync commits every write durably. Never mix synced and unsynced runs
	// in one comparison.
	Sync bool
}

var (
	_ Store       = (*EngineStore)(nil)
	_ BatchWriter = (*EngineStore)(nil)
)

func (s *EngineStore) opts() *engine.WriteOptions {
	if s.Sync {
		return engine.Sync
	}
	return engine.NoSync
}

// Read implements Store.
func (s *EngineStore) Read(_ context.Context, key []byte) error {
	snap, err := s.Backend.NewSnapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	if _, err := snap.Get(key); err != nil && !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	return nil
}

// Write implements Store.
func (s *EngineStore) Write(_ context.Context, key, value []byte) error {
	var b engine.Batch
	b.Set(key, value)
	return s.Backend.Commit(&b, s.opts())
}

// WriteBatch implements BatchWriter.
func (s *EngineStore) WriteBatch(_ context.Context, keys, values [][]byte) error {
	var b engine.Batch
	for i := range keys {
		b.Set(keys[i], values[i])
	}
	return s.Backend.Commit(&b, s.opts())
}

// Scan implements Store.
func (s *EngineStore) Scan(_ context.Context, start []byte, n int) error {
	snap, err := s.Backend.NewSnapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: start})
	if err != nil {
		return err
	}
	got := 0
	for ok := it.First(); ok && got < n; ok = it.Next() {
		_ = it.Value()
		got++
	}
	return it.Close()
}

// Delete implements Store.
func (s *EngineStore) Delete(_ context.Context, key []byte) error {
	var b engine.Batch
	b.Delete(key)
	return s.Backend.Commit(&b, s.opts())
}
