package bench

import (
	"context"
	"errors"
	"fmt"

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
	_ Store        = (*EngineStore)(nil)
	_ BatchWriter  = (*EngineStore)(nil)
	_ Defragger    = (*EngineStore)(nil)
	_ EngineStater = (*EngineStore)(nil)
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

// EngineStats implements EngineStater.
func (s *EngineStore) EngineStats(context.Context) (engine.Stats, error) { return s.Backend.Stats() }

// DefragTargets implements Defragger: "engine" when the backend can
// defragment.
func (s *EngineStore) DefragTargets() []string { return engineDefragTargets(s.Backend) }

// Defrag implements Defragger.
func (s *EngineStore) Defrag(ctx context.Context, _ string) error {
	return defragEngine(ctx, s.Backend)
}

func engineDefragTargets(be engine.Backend) []string {
	if _, ok := be.(engine.Defragmenter); ok {
		return []string{"engine"}
	}
	return nil
}

func defragEngine(ctx context.Context, be engine.Backend) error {
	d, ok := be.(engine.Defragmenter)
	if !ok {
		return errors.New("bench: the engine cannot defragment")
	}
	if err := d.Defrag(ctx); err != nil {
		return fmt.Errorf("bench: defragment: %w", err)
	}
	return nil
}
