package badger

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/strata-kv/strata/engine"
)

// snapshot is an engine.Snapshot over a badger read-only transaction, which
// reads the store as of its read timestamp. Like the transaction, it is not
// safe for concurrent use.
type snapshot struct {
	d   *DB
	txn *bdg.Txn // nil once closed
	// iters are the iterators not yet closed; closing the snapshot closes
	// them.
	iters []*iterator
	// keyBuf holds the stored form of the key Get looks up.
	keyBuf []byte
}

var _ engine.Snapshot = (*snapshot)(nil)

// Get implements engine.Snapshot.
func (s *snapshot) Get(key []byte) ([]byte, error) {
	if _, err := s.d.acquire(); err != nil {
		return nil, err
	}
	defer s.d.mu.RUnlock()
	if s.txn == nil {
		return nil, engine.ErrClosed
	}
	s.keyBuf = appendKey(s.keyBuf[:0], key)
	item, err := s.txn.Get(s.keyBuf)
	if errors.Is(err, bdg.ErrKeyNotFound) {
		return nil, engine.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("badger: get: %w", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("badger: get: %w", err)
	}
	if v == nil {
		v = []byte{} // never nil for a present key
	}
	return v, nil
}

// NewIter implements engine.Snapshot.
func (s *snapshot) NewIter(opts *engine.IterOptions) (engine.Iterator, error) {
	if _, err := s.d.acquire(); err != nil {
		return nil, err
	}
	defer s.d.mu.RUnlock()
	if s.txn == nil {
		return nil, engine.ErrClosed
	}
	var o engine.IterOptions
	if opts != nil {
		o = *opts
	}
	it := &iterator{s: s, reverse: o.Reverse, lower: dataPrefix, upper: dataEnd}
	if o.LowerBound != nil {
		it.lower = appendKey(nil, o.LowerBound)
	}
	if o.UpperBound != nil {
		it.upper = appendKey(nil, o.UpperBound)
	}
	s.iters = append(s.iters, it)
	if bytes.Compare(it.lower, it.upper) >= 0 {
		return it, nil // an empty range: it.it stays nil
	}
	prefix := dataPrefix
	if o.LowerBound != nil && o.UpperBound != nil {
		prefix = commonPrefix(it.lower, it.upper)
	}
	it.it = s.txn.NewIterator(bdg.IteratorOptions{
		// Values are read on demand by Value; most are small and
		// inline in the LSM tree.
		PrefetchValues: false,
		Reverse:        o.Reverse,
		Prefix:         prefix,
	})
	return it, nil
}

// Close implements engine.Snapshot. It closes iterators left open. Closing a
// closed snapshot, or one the DB's Close already released, does nothing.
func (s *snapshot) Close() error {
	if _, err := s.d.acquire(); err != nil {
		return nil // the DB's Close released the snapshot
	}
	defer s.d.mu.RUnlock()
	if s.txn == nil {
		return nil
	}
	err := s.release()
	s.d.snapMu.Lock()
	delete(s.d.snaps, s)
	s.d.snapMu.Unlock()
	return err
}

// release closes s's iterators and discards its transaction. The caller
// holds d.mu.
func (s *snapshot) release() error {
	for _, it := range s.iters {
		it.release()
		it.err = engine.ErrClosed
	}
	s.iters = nil
	s.txn.Discard()
	s.txn = nil
	return nil
}

// iterator is an engine.Iterator over a badger iterator.
//
// Badger iterators have no bounds (only a key prefix) and their Seek lands
// on the smallest key >= k going forwards but on the largest key <= k going
// backwards. The bounds are applied here on stored keys: forwards, Seek
// clamps its target up to lower and a move past upper ends the iteration;
// backwards, positioning at or above upper seeks to upper and steps past a
// key equal to it (upper is exclusive), and a move below lower ends the
// iteration.
type iterator struct {
	s  *snapshot
	it *bdg.Iterator // nil for an empty range or once closed
	// lower and upper are the stored-key bounds: [lower, upper).
	lower, upper []byte
	reverse      bool
	closed       bool
	// valid is whether the iterator is on a key inside the bounds.
	valid bool
	// err is the sticky error: once set, every positioning method returns
	// false.
	err error
	// seekBuf holds the stored form of Seek's key.
	seekBuf []byte
	// val holds the current value once loaded; valOK says it is.
	val   []byte
	valOK bool
}

var _ engine.Iterator = (*iterator)(nil)

func (i *iterator) usable() bool { return i.err == nil && i.it != nil }

// settle checks the badger iterator's position against the bounds.
func (i *iterator) settle() bool {
	i.valOK = false
	i.valid = false
	if !i.it.Valid() {
		return false
	}
	k := i.it.Item().Key()
	if i.reverse {
		i.valid = bytes.Compare(k, i.lower) >= 0
	} else {
		i.valid = bytes.Compare(k, i.upper) < 0
	}
	return i.valid
}

// seekBelowUpper positions a reverse iterator on the largest key < upper.
func (i *iterator) seekBelowUpper() {
	i.it.Seek(i.upper)
	if i.it.Valid() && bytes.Equal(i.it.Item().Key(), i.upper) {
		i.it.Next()
	}
}

// First implements engine.Iterator.
func (i *iterator) First() bool {
	if !i.usable() {
		return i.invalidate()
	}
	if i.reverse {
		i.seekBelowUpper()
	} else {
		i.it.Seek(i.lower)
	}
	return i.settle()
}

// Seek implements engine.Iterator.
func (i *iterator) Seek(key []byte) bool {
	if !i.usable() {
		return i.invalidate()
	}
	i.seekBuf = appendKey(i.seekBuf[:0], key)
	switch {
	case !i.reverse && bytes.Compare(i.seekBuf, i.lower) < 0:
		i.it.Seek(i.lower)
	case i.reverse && bytes.Compare(i.seekBuf, i.upper) >= 0:
		i.seekBelowUpper()
	default:
		i.it.Seek(i.seekBuf)
	}
	return i.settle()
}

// Next implements engine.Iterator.
func (i *iterator) Next() bool {
	if !i.usable() || !i.valid {
		return i.invalidate()
	}
	i.it.Next()
	return i.settle()
}

func (i *iterator) invalidate() bool {
	i.valid, i.valOK = false, false
	return false
}

// Valid implements engine.Iterator.
func (i *iterator) Valid() bool { return i.valid && i.usable() }

// Key implements engine.Iterator.
func (i *iterator) Key() []byte {
	if !i.Valid() {
		return nil
	}
	return i.it.Item().Key()[len(dataPrefix):]
}

// Value implements engine.Iterator. The value is copied into a buffer the
// iterator reuses; a value that cannot be read (for instance from a value
// log file) becomes the sticky error.
func (i *iterator) Value() []byte {
	if !i.Valid() {
		return nil
	}
	if !i.valOK {
		v, err := i.it.Item().ValueCopy(i.val[:0])
		if err != nil {
			i.err = fmt.Errorf("badger: iterator: value: %w", err)
			return nil
		}
		i.val, i.valOK = v, true
	}
	return i.val
}

// Error implements engine.Iterator.
func (i *iterator) Error() error { return i.err }

// Close implements engine.Iterator. Closing twice returns the same error.
func (i *iterator) Close() error {
	if i.closed {
		return i.err
	}
	i.release()
	if idx := slices.Index(i.s.iters, i); idx >= 0 {
		i.s.iters = slices.Delete(i.s.iters, idx, idx+1)
	}
	return i.err
}

// release closes the badger iterator without touching the snapshot's list.
func (i *iterator) release() {
	if i.closed {
		return
	}
	i.closed = true
	i.valid = false
	if i.it != nil {
		i.it.Close()
		i.it = nil
	}
}
