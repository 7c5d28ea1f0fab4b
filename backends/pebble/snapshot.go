package pebble

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/strata-kv/strata/engine"
)

// snapshot is an engine.Snapshot over a Pebble snapshot. Like Pebble's, it
// is not safe for concurrent use.
type snapshot struct {
	d    *DB
	snap *pdb.Snapshot // nil once closed
	// iters are the iterators not yet closed; closing the snapshot closes
	// them.
	iters []*iterator
}

var _ engine.Snapshot = (*snapshot)(nil)

// Get implements engine.Snapshot.
func (s *snapshot) Get(key []byte) ([]byte, error) {
	if _, err := s.d.acquire(); err != nil {
		return nil, err
	}
	defer s.d.mu.RUnlock()
	if s.snap == nil {
		return nil, engine.ErrClosed
	}
	v, closer, err := s.snap.Get(key)
	if errors.Is(err, pdb.ErrNotFound) {
		return nil, engine.ErrNotFound
	}
	if err != nil {
		return nil, wrapErr("get", err)
	}
	// v belongs to Pebble until closer is closed. Never return nil for a
	// present key, even with an empty value.
	out := append(make([]byte, 0, len(v)), v...)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("pebble: get: %w", err)
	}
	return out, nil
}

// NewIter implements engine.Snapshot.
func (s *snapshot) NewIter(opts *engine.IterOptions) (engine.Iterator, error) {
	if _, err := s.d.acquire(); err != nil {
		return nil, err
	}
	defer s.d.mu.RUnlock()
	if s.snap == nil {
		return nil, engine.ErrClosed
	}
	var o engine.IterOptions
	if opts != nil {
		o = *opts
	}
	it := &iterator{s: s, reverse: o.Reverse}
	if o.LowerBound != nil && o.UpperBound != nil && bytes.Compare(o.LowerBound, o.UpperBound) >= 0 {
		// An empty range: leave it.it nil rather than hand Pebble
		// inverted bounds.
		s.iters = append(s.iters, it)
		return it, nil
	}
	// Pebble copies the bounds into iterator-owned buffers (see
	// Iterator.processBounds), so the caller may reuse its slices at once.
	pi, err := s.snap.NewIter(&pdb.IterOptions{
		LowerBound: o.LowerBound,
		UpperBound: o.UpperBound,
	})
	if err != nil {
		return nil, wrapErr("new iterator", err)
	}
	it.it = pi
	s.iters = append(s.iters, it)
	return it, nil
}

// Close implements engine.Snapshot. It closes iterators left open. Closing a
// closed snapshot, or one the DB's Close already released, does nothing.
func (s *snapshot) Close() error {
	if _, err := s.d.acquire(); err != nil {
		// The DB's Close released the snapshot.
		return nil
	}
	defer s.d.mu.RUnlock()
	if s.snap == nil {
		return nil
	}
	err := s.release()
	s.d.snapMu.Lock()
	delete(s.d.snaps, s)
	s.d.snapMu.Unlock()
	return err
}

// closeLocked releases s on behalf of DB.Close, which holds d.mu for writing
// and d.snapMu.
func (s *snapshot) closeLocked() { _ = s.release() }

// release closes s's iterators and its Pebble snapshot. The caller holds
// d.mu.
func (s *snapshot) release() error {
	var err error
	for _, it := range s.iters {
		err = errors.Join(err, it.release())
		it.err = engine.ErrClosed
	}
	s.iters = nil
	if cerr := s.snap.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("pebble: close snapshot: %w", cerr))
	}
	s.snap = nil
	return err
}

// iterator is an engine.Iterator over a Pebble iterator. Reverse iterators
// map First to Last, Next to Prev and Seek to "SeekLE" (see Seek).
type iterator struct {
	s  *snapshot
	it *pdb.Iterator // nil for an empty range or once closed
	// reverse iterates from the largest key down.
	reverse bool
	closed  bool
	// err is the sticky error: once set, every positioning method returns
	// false. Pebble resets its own error on absolute positioning; we do not.
	err error
	// seekBuf holds key+"\x00" for reverse seeks; Pebble copies seek keys,
	// so it is reused.
	seekBuf []byte
}

var _ engine.Iterator = (*iterator)(nil)

func (i *iterator) usable() bool { return i.err == nil && i.it != nil }

// settle records Pebble's error after a move that left the iterator
// unpositioned.
func (i *iterator) settle(ok bool) bool {
	if !ok {
		if err := i.it.Error(); err != nil {
			i.err = wrapErr("iterator", err)
		}
	}
	return ok
}

// First implements engine.Iterator.
func (i *iterator) First() bool {
	if !i.usable() {
		return false
	}
	if i.reverse {
		return i.settle(i.it.Last())
	}
	return i.settle(i.it.First())
}

// Seek implements engine.Iterator. Going backwards it must land on the
// largest key <= key, but Pebble only offers SeekLT (largest key < target).
// Since key+"\x00" is the immediate successor of key in bytewise order (no
// byte string lies strictly between them), SeekLT(key+"\x00") is exactly
// "largest key <= key". Pebble clamps seek keys to the bounds itself.
func (i *iterator) Seek(key []byte) bool {
	if !i.usable() {
		return false
	}
	if !i.reverse {
		return i.settle(i.it.SeekGE(key))
	}
	i.seekBuf = append(append(i.seekBuf[:0], key...), 0)
	return i.settle(i.it.SeekLT(i.seekBuf))
}

// Next implements engine.Iterator.
func (i *iterator) Next() bool {
	if !i.usable() {
		return false
	}
	if i.reverse {
		return i.settle(i.it.Prev())
	}
	return i.settle(i.it.Next())
}

// Valid implements engine.Iterator.
func (i *iterator) Valid() bool { return i.usable() && i.it.Valid() }

// Key implements engine.Iterator.
func (i *iterator) Key() []byte {
	if !i.Valid() {
		return nil
	}
	return i.it.Key()
}

// Value implements engine.Iterator. A value that cannot be read (for
// instance a corrupt block) becomes the sticky error.
func (i *iterator) Value() []byte {
	if !i.Valid() {
		return nil
	}
	v, err := i.it.ValueAndErr()
	if err != nil {
		i.err = wrapErr("iterator: value", err)
		return nil
	}
	return v
}

// Error implements engine.Iterator.
func (i *iterator) Error() error { return i.err }

// Close implements engine.Iterator. Closing twice returns the same error.
func (i *iterator) Close() error {
	if i.closed {
		return i.err
	}
	err := i.release()
	if i.err == nil {
		i.err = err
	}
	if idx := slices.Index(i.s.iters, i); idx >= 0 {
		i.s.iters = slices.Delete(i.s.iters, idx, idx+1)
	}
	return i.err
}

// release closes the Pebble iterator without touching the snapshot's list.
func (i *iterator) release() error {
	if i.closed {
		return nil
	}
	i.closed = true
	if i.it == nil {
		return nil
	}
	err := i.it.Close()
	i.it = nil
	if err != nil {
		return fmt.Errorf("pebble: close iterator: %w", err)
	}
	return nil
}

// wrapErr adds op to a Pebble error, and engine.ErrCorrupt to one that
// reports damaged files (a block checksum mismatch).
func wrapErr(op string, err error) error {
	if pdb.IsCorruptionError(err) {
		return fmt.Errorf("pebble: %s: %w: %w", op, engine.ErrCorrupt, err)
	}
	return fmt.Errorf("pebble: %s: %w", op, err)
}
