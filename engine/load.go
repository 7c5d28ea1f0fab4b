package engine

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
)

// ErrLoadOrder is returned by Loader.Set for a key that is not greater
// than the key set before it.
var ErrLoadOrder = errors.New("engine: bulk load keys out of order")

// BulkLoader is implemented by engines that can fill an empty backend
// faster than batches of commits do, from keys given in increasing order:
// a restore from another store's files. The engine may write its files
// directly (badger's sorted tables) or in fewer, larger transactions
// (bbolt).
type BulkLoader interface {
	// NewLoader starts a bulk load. The backend must be empty, and take
	// no commits and no snapshots until the load is finished or aborted.
	NewLoader() (Loader, error)
}

// A Loader writes keys in increasing order into an empty backend. Only
// one goroutine may use it.
type Loader interface {
	// Set adds key with value. key must be greater than every key set
	// before (else ErrLoadOrder). The slices may be reused when Set
	// returns.
	Set(key, value []byte) error
	// Finish makes every key set durable and visible to new snapshots.
	Finish() error
	// Abort abandons the load: what was set may be partly in the
	// backend, which the caller discards.
	Abort()
}

// CheckLoadKey validates a key given to Loader.Set after prev (nil for the
// first key), as every engine's loader does.
func CheckLoadKey(prev, key, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return err
	}
	if prev != nil && bytes.Compare(prev, key) >= 0 {
		return fmt.Errorf("%w: %q after %q", ErrLoadOrder, key, prev)
	}
	return nil
}

// ErrLoadEnded is returned by a Loader's Set or Finish once Finish or
// Abort was called.
var ErrLoadEnded = errors.New("engine: bulk load finished or aborted")

// LoadState is the bookkeeping every engine's Loader shares: the key
// order, the load's end, and the backend's slot for the loader in
// progress, through which Close aborts a load left unfinished.
type LoadState struct {
	slot  *LoadSlot
	self  Loader
	last  []byte
	ended bool
}

// Start records self, the engine's loader, in slot (nil for none).
func (s *LoadState) Start(slot *LoadSlot, self Loader) {
	s.slot, s.self = slot, self
	if slot != nil {
		slot.mu.Lock()
		slot.l = self
		slot.mu.Unlock()
	}
}

// Next checks key and value as the next pair set (CheckLoadKey, and
// ErrLoadEnded after the end) and remembers key.
func (s *LoadState) Next(key, value []byte) error {
	if s.ended {
		return ErrLoadEnded
	}
	if err := CheckLoadKey(s.last, key, value); err != nil {
		return err
	}
	s.last = append(s.last[:0], key...)
	return nil
}

// Ended reports whether End was called.
func (s *LoadState) Ended() bool { return s.ended }

// End marks the load ended and empties the backend's slot.
func (s *LoadState) End() {
	s.ended = true
	if s.slot != nil {
		s.slot.mu.Lock()
		if s.slot.l == s.self {
			s.slot.l = nil
		}
		s.slot.mu.Unlock()
	}
}

// LoadSlot holds a backend's loader in progress.
type LoadSlot struct {
	mu sync.Mutex
	l  Loader
}

// Abort aborts the loader in progress, if any: Close calls it, so that it
// does not wait forever for the locks a load holds.
func (s *LoadSlot) Abort() {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	if l != nil {
		l.Abort()
	}
}
