package engine

import "fmt"

// sortedBatchBytes is the size at which a SortedWriter without a Loader
// commits its batch.
const sortedBatchBytes = 4 << 20

// A SortedWriter fills an empty backend with keys given in increasing
// order: through the engine's Loader when it has one (see BulkLoader),
// else in batches of NoSync commits. Only one goroutine may use it.
type SortedWriter struct {
	be    Backend
	l     Loader
	b     Batch
	state LoadState
}

// NewSortedWriter starts writing into be, which must be empty and must
// take no other writes until Finish or Abort.
func NewSortedWriter(be Backend) (*SortedWriter, error) {
	w := &SortedWriter{be: be}
	if bl, ok := be.(BulkLoader); ok {
		l, err := bl.NewLoader()
		if err != nil {
			return nil, fmt.Errorf("engine: bulk load: %w", err)
		}
		w.l = l
	}
	return w, nil
}

// Set adds key with value; key must be greater than the key set before.
// The slices may be reused when Set returns.
func (w *SortedWriter) Set(key, value []byte) error {
	if w.l != nil {
		if w.state.Ended() {
			return ErrLoadEnded
		}
		return w.l.Set(key, value)
	}
	if err := w.state.Next(key, value); err != nil {
		return err
	}
	w.b.Set(key, value)
	if w.b.Size() < sortedBatchBytes {
		return nil
	}
	return w.flush()
}

func (w *SortedWriter) flush() error {
	if w.b.Empty() {
		return nil
	}
	if err := w.be.Commit(&w.b, NoSync); err != nil {
		return err
	}
	w.b.Reset()
	return nil
}

// Finish makes every key set visible and durable.
func (w *SortedWriter) Finish() error {
	if w.state.Ended() {
		return ErrLoadEnded
	}
	w.state.End()
	if w.l != nil {
		return w.l.Finish()
	}
	if err := w.flush(); err != nil {
		return err
	}
	return w.be.Sync()
}

// Abort abandons the writes; the backend may hold part of them. It does
// nothing after Finish.
func (w *SortedWriter) Abort() {
	if w.state.Ended() {
		return
	}
	w.state.End()
	if w.l != nil {
		w.l.Abort()
	}
}
