package bbolt

import (
	"bytes"
	"fmt"
	"time"

	"github.com/tidwall/btree"
	bolt "go.etcd.io/bbolt"

	"github.com/strata-kv/strata/engine"
)

// pendingMaxBytes bounds the bytes of keys and values held in memory by
// commits not yet written to the file, whatever Options.BatchLimit says:
// etcd's batch limit counts operations, and values are up to
// engine.MaxValueSize.
const pendingMaxBytes = 16 << 20

// pendingDegree is the B-tree degree of the pending writes. Every commit
// publishes a copy-on-write copy of the tree, so the next commit copies the
// nodes on its path: small nodes keep that copy short.
const pendingDegree = 16

// pendingItem is one key written by a commit not yet in the file. A nil
// value deletes the key (a Set of an empty value stores []byte{}).
type pendingItem struct {
	key, value []byte
}

func pendingLess(a, b pendingItem) bool { return bytes.Compare(a.key, b.key) < 0 }

// pending is a published, immutable view of the writes not yet in the
// file: readers pair it with a read transaction (see DB.pending).
type pending = btree.BTreeG[pendingItem]

// pendingWrites are the writes accepted by Commit and not yet written to
// the file. The writer (holding DB.writeMu) adds to tree and publishes a
// copy-on-write copy of it after each commit; readers only ever see the
// published copies, which never change.
type pendingWrites struct {
	tree  *pending
	ops   int
	bytes int
}

// deferrable reports whether a commit of b with opts may stay in memory:
// a synced commit, a commit while Defrag records, and a batch with a
// range deletion (compaction's rare deletes) are written at once, after
// the pending writes.
func (d *DB) deferrable(b *engine.Batch, opts *engine.WriteOptions) bool {
	if d.opts.BatchInterval < 0 || opts.GetSync() || d.recording {
		return false
	}
	r := b.Reader()
	for {
		kind, _, _, ok := r.Next()
		if !ok {
			return r.Err() == nil
		}
		if kind == engine.KindDeleteRange {
			return false
		}
	}
}

// deferCommit adds b to the pending writes and publishes them. The caller
// holds writeMu and mu read-locked.
func (d *DB) deferCommit(b *engine.Batch) error {
	// The batch may be reused once Commit returns: keep a copy of its
	// representation, which the items point into.
	var c engine.Batch
	if err := c.SetRepr(b.Repr()); err != nil {
		return fmt.Errorf("bbolt: commit: %w", err)
	}
	p := &d.writes
	if p.tree == nil {
		p.tree = btree.NewBTreeGOptions(pendingLess, btree.Options{Degree: pendingDegree, NoLocks: true})
	}
	r := c.Reader()
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			break
		}
		if kind == engine.KindSet && value == nil {
			value = []byte{}
		}
		if kind == engine.KindDelete {
			value = nil
		}
		p.tree.Set(pendingItem{key: key, value: value})
		p.ops++
		p.bytes += len(key) + len(value)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("bbolt: commit: %w", err)
	}
	pub := p.tree.Copy()
	d.readMu.Lock()
	first := d.pendingView == nil
	d.pendingView = pub
	d.readMu.Unlock()
	if p.ops >= d.opts.BatchLimit || p.bytes >= pendingMaxBytes {
		return d.flushLocked()
	}
	if first {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// flushLocked writes the pending writes to the file in one bbolt
// transaction (without fsync) and drops them. The caller holds writeMu and
// mu read-locked, and mu is not closed. On an error the writes stay
// pending (and visible), and the error is returned again by the next
// Commit or Sync until a flush succeeds.
func (d *DB) flushLocked() error {
	p := &d.writes
	if p.tree == nil || p.tree.Len() == 0 {
		return nil
	}
	d.beginWrite()
	d.cur.NoSync = true
	err := update(d.cur, d.opts.FillPercent, func(bkt *bolt.Bucket) error {
		var err error
		p.tree.Scan(func(it pendingItem) bool {
			kind := engine.KindSet
			if it.value == nil {
				kind, err = engine.KindDelete, bkt.Delete(it.key)
			} else {
				err = bkt.Put(it.key, it.value)
			}
			if err != nil {
				err = fmt.Errorf("%s %q: %w", kind, it.key, err)
			}
			return err == nil
		})
		return err
	})
	if err == nil {
		// Still inside the write: a snapshot that sees the pending writes
		// gone opens its transaction after this commit (see NewSnapshot).
		d.readMu.Lock()
		d.pendingView = nil
		d.readMu.Unlock()
		*p = pendingWrites{}
	}
	d.endWrite()
	if err != nil {
		d.flushErr = err
		return err
	}
	d.flushErr = nil
	d.unmapIfDue()
	return nil
}

// flushLoop writes the pending writes to the file Options.BatchInterval
// after the first of them, as etcd's backend commits its batch
// transaction every --backend-batch-interval. It stops when stop closes.
func (d *DB) flushLoop() {
	defer d.loops.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-d.kick:
		}
		t.Reset(d.opts.BatchInterval)
		select {
		case <-d.stop:
			t.Stop()
			return
		case <-t.C:
		}
		d.flushed(nil) // an error is kept in flushErr for the next Commit
	}
}

// pendingGet looks key up in the pending writes p (nil: none): found
// reports whether they hold it, and a nil value with found set means
// deleted.
func pendingGet(p *pending, key []byte) (value []byte, found bool) {
	if p == nil {
		return nil, false
	}
	it, ok := p.Get(pendingItem{key: key})
	if !ok {
		return nil, false
	}
	return it.value, true
}

// mergeIter merges the file's iterator with the pending writes, which win
// on equal keys and hide the keys they delete.
type mergeIter struct {
	base       *iterator
	ov         btree.IterG[pendingItem]
	ovOK       bool
	key, value []byte
}

func newMergeIter(base *iterator, p *pending) *mergeIter {
	return &mergeIter{base: base, ov: p.Iter()}
}

// ovSet records whether the pending writes' iterator is on an item, which
// counts only inside the bounds.
func (m *mergeIter) ovSet(ok bool) {
	if ok {
		k := m.ov.Item().key
		if (m.base.lower != nil && bytes.Compare(k, m.base.lower) < 0) ||
			(m.base.upper != nil && bytes.Compare(k, m.base.upper) >= 0) {
			ok = false
		}
	}
	m.ovOK = ok
}

// ovSeekGE positions the pending writes on the first key >= key.
func (m *mergeIter) ovSeekGE(key []byte) {
	m.ovSet(m.ov.Seek(pendingItem{key: key}))
}

// ovSeekLT positions the pending writes on the last key < key (nil: the
// last key).
func (m *mergeIter) ovSeekLT(key []byte) {
	if key == nil {
		m.ovSet(m.ov.Last())
		return
	}
	if m.ov.Seek(pendingItem{key: key}) {
		m.ovSet(m.ov.Prev())
		return
	}
	m.ovSet(m.ov.Last())
}

// ovSeekLE positions the pending writes on the last key <= key.
func (m *mergeIter) ovSeekLE(key []byte) {
	if !m.ov.Seek(pendingItem{key: key}) {
		m.ovSet(m.ov.Last())
		return
	}
	if bytes.Equal(m.ov.Item().key, key) {
		m.ovSet(true)
		return
	}
	m.ovSet(m.ov.Prev())
}

func (m *mergeIter) ovStep() {
	if m.base.reverse {
		m.ovSet(m.ov.Prev())
	} else {
		m.ovSet(m.ov.Next())
	}
}

// settle makes the merged position the first of the two sources' keys in
// iteration order, skipping deleted keys.
func (m *mergeIter) settle() bool {
	for {
		bk := m.base.key
		if !m.ovOK {
			m.key, m.value = bk, m.base.value
			return bk != nil
		}
		it := m.ov.Item()
		c := -1 // the pending item comes first
		if bk != nil {
			c = bytes.Compare(it.key, bk)
			if m.base.reverse {
				c = -c
			}
		}
		if c > 0 {
			m.key, m.value = bk, m.base.value
			return true
		}
		if it.value != nil {
			m.key, m.value = it.key, it.value
			return true
		}
		// A deleted key: skip it in both sources.
		if c == 0 {
			m.base.Next()
		}
		m.ovStep()
	}
}

func (m *mergeIter) First() bool {
	m.base.First()
	switch {
	case !m.base.reverse && m.base.lower == nil:
		m.ovSet(m.ov.First())
	case !m.base.reverse:
		m.ovSeekGE(m.base.lower)
	default:
		m.ovSeekLT(m.base.upper)
	}
	return m.settle()
}

func (m *mergeIter) Seek(key []byte) bool {
	if m.base.reverse && m.base.upper != nil && bytes.Compare(key, m.base.upper) >= 0 {
		return m.First()
	}
	m.base.Seek(key)
	if !m.base.reverse {
		if m.base.lower != nil && bytes.Compare(key, m.base.lower) < 0 {
			key = m.base.lower
		}
		m.ovSeekGE(key)
	} else {
		m.ovSeekLE(key)
	}
	return m.settle()
}

func (m *mergeIter) Next() bool {
	if m.key == nil {
		return false
	}
	cur := m.key
	if m.base.key != nil && bytes.Equal(m.base.key, cur) {
		m.base.Next()
	}
	if m.ovOK && bytes.Equal(m.ov.Item().key, cur) {
		m.ovStep()
	}
	return m.settle()
}

func (m *mergeIter) Valid() bool   { return m.key != nil }
func (m *mergeIter) Key() []byte   { return m.key }
func (m *mergeIter) Value() []byte { return m.value }
func (m *mergeIter) Error() error  { return nil }

func (m *mergeIter) Close() error {
	m.ov.Release()
	m.key, m.value, m.ovOK = nil, nil, false
	return m.base.Close()
}
