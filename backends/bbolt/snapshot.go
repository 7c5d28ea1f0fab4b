package bbolt

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-kv/strata/engine"
)

// snapshot is a bbolt read transaction, of its own or shared (then
// shared and d are set), seen through the pending writes of the moment
// it was taken (nil when there were none).
type snapshot struct {
	tx      *bolt.Tx
	bkt     *bolt.Bucket
	shared  *sharedRead
	d       *DB
	pending *pending
}

func (s *snapshot) Get(key []byte) ([]byte, error) {
	if s.tx == nil {
		return nil, engine.ErrClosed
	}
	if v, ok := pendingGet(s.pending, key); ok {
		if v == nil {
			return nil, engine.ErrNotFound
		}
		return append([]byte{}, v...), nil
	}
	// Seek rather than Get: Get cannot tell an empty value from a missing key.
	k, v := s.bkt.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil, engine.ErrNotFound
	}
	return append([]byte{}, v...), nil
}

func (s *snapshot) NewIter(opts *engine.IterOptions) (engine.Iterator, error) {
	if s.tx == nil {
		return nil, engine.ErrClosed
	}
	it := &iterator{c: s.bkt.Cursor()}
	if opts != nil {
		it.lower = bytes.Clone(opts.LowerBound)
		it.upper = bytes.Clone(opts.UpperBound)
		it.reverse = opts.Reverse
	}
	if s.pending != nil {
		return newMergeIter(it, s.pending), nil
	}
	return it, nil
}

func (s *snapshot) Close() error {
	if s.tx == nil {
		return engine.ErrClosed
	}
	var err error
	if s.shared != nil {
		s.d.readMu.Lock()
		s.d.releaseLocked(s.shared)
		s.d.readMu.Unlock()
	} else {
		err = s.tx.Rollback()
	}
	s.tx, s.bkt, s.shared, s.pending = nil, nil, nil, nil
	return err
}

// iterator walks a bbolt cursor inside [lower, upper).
type iterator struct {
	c            *bolt.Cursor
	lower, upper []byte
	reverse      bool
	key, value   []byte
}

func (it *iterator) set(k, v []byte) bool {
	if k != nil && (it.lower == nil || bytes.Compare(k, it.lower) >= 0) &&
		(it.upper == nil || bytes.Compare(k, it.upper) < 0) {
		it.key, it.value = k, v
		return true
	}
	it.key, it.value = nil, nil
	return false
}

func (it *iterator) First() bool {
	if !it.reverse {
		if it.lower == nil {
			return it.set(it.c.First())
		}
		return it.set(it.c.Seek(it.lower))
	}
	if it.upper == nil {
		return it.set(it.c.Last())
	}
	return it.set(it.seekLT(it.upper))
}

// seekLT positions the cursor on the largest key < key.
func (it *iterator) seekLT(key []byte) ([]byte, []byte) {
	if k, _ := it.c.Seek(key); k == nil {
		return it.c.Last()
	}
	return it.c.Prev()
}

func (it *iterator) Seek(key []byte) bool {
	if !it.reverse {
		if it.lower != nil && bytes.Compare(key, it.lower) < 0 {
			key = it.lower
		}
		return it.set(it.c.Seek(key))
	}
	if it.upper != nil && bytes.Compare(key, it.upper) >= 0 {
		return it.First()
	}
	k, v := it.c.Seek(key)
	switch {
	case k == nil:
		k, v = it.c.Last()
	case !bytes.Equal(k, key):
		k, v = it.c.Prev()
	}
	return it.set(k, v)
}

func (it *iterator) Next() bool {
	if it.key == nil {
		return false
	}
	if it.reverse {
		return it.set(it.c.Prev())
	}
	return it.set(it.c.Next())
}

func (it *iterator) Valid() bool   { return it.key != nil }
func (it *iterator) Key() []byte   { return it.key }
func (it *iterator) Value() []byte { return it.value }
func (it *iterator) Error() error  { return nil }

func (it *iterator) Close() error {
	it.key, it.value, it.c = nil, nil, nil
	return nil
}
