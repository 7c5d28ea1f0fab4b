package mvcc

import (
	"bytes"
	"sync"

	"github.com/google/btree"
)

// btreeDegree is the degree of the index B-tree (etcd uses 32).
const btreeDegree = 32

// treeIndex is the in-memory key index: a B-tree of keyIndex ordered by
// key. Every method takes the index lock itself; keyIndex values are only
// read or changed under it.
//
// The index may hold revisions above the store's published revision: the
// open WriteBatch adds its revisions as it goes and removes them again if
// it is aborted. Readers always ask for a revision at or below the one they
// read at, so those are invisible to them.
type treeIndex struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[*keyIndex]
}

func newTreeIndex() *treeIndex {
	return &treeIndex{tree: btree.NewG(btreeDegree, func(a, b *keyIndex) bool {
		return bytes.Compare(a.key, b.key) < 0
	})}
}

// Len returns the number of keys in the index, live or not.
func (ti *treeIndex) Len() int {
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	return ti.tree.Len()
}

func (ti *treeIndex) lookup(key []byte) *keyIndex {
	ki, _ := ti.tree.Get(&keyIndex{key: key})
	return ki
}

// get returns the state of key at atRev.
func (ti *treeIndex) get(key []byte, atRev int64) (modified, created revision, ver int64, ok bool) {
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	ki := ti.lookup(key)
	if ki == nil {
		return revision{}, revision{}, 0, false
	}
	return ki.get(atRev)
}

// put records rev as the new revision of key and returns the create
// revision and version the new KeyValue has.
func (ti *treeIndex) put(key []byte, rev revision) (created int64, ver int64) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ki := ti.lookup(key)
	if ki == nil {
		ki = &keyIndex{key: bytes.Clone(key)}
		ti.tree.ReplaceOrInsert(ki)
	}
	created = rev.main
	if _, c, v, ok := ki.get(rev.main); ok {
		created, ver = c.main, v
	}
	ki.put(rev)
	return created, ver + 1
}

// tombstone records rev as the deletion of key. It reports false if the
// key is not live.
func (ti *treeIndex) tombstone(key []byte, rev revision) bool {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ki := ti.lookup(key)
	if ki == nil {
		return false
	}
	return ki.tombstone(rev)
}

// rollback removes every revision at or above from of key, and the key if
// nothing is left.
func (ti *treeIndex) rollback(key []byte, from revision) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ki := ti.lookup(key)
	if ki == nil {
		return
	}
	ki.rollback(from)
	if ki.isEmpty() {
		ti.tree.Delete(ki)
	}
}

// visit calls f on the keyIndex of every key in [key, end) (end empty:
// every key >= key) until f returns false. The caller holds the lock.
func (ti *treeIndex) visit(key, end []byte, f func(ki *keyIndex) bool) {
	ti.tree.AscendGreaterOrEqual(&keyIndex{key: key}, func(ki *keyIndex) bool {
		if len(end) > 0 && bytes.Compare(ki.key, end) >= 0 {
			return false
		}
		return f(ki)
	})
}

// indexEntry is one key visible at a revision.
type indexEntry struct {
	key      []byte // aliases the index; never modified
	modified revision
	created  revision
	ver      int64
}

// rangeEntries returns the keys visible at atRev in the range (end nil: the
// single key; end empty: every key >= key), at most limit of them when
// limit > 0, and the number of visible keys in the range. With limit > 0
// and !withTotal the count stops at limit.
func (ti *treeIndex) rangeEntries(key, end []byte, atRev int64, limit int, withTotal bool) (ents []indexEntry, total int) {
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	if end == nil {
		ki := ti.lookup(key)
		if ki == nil {
			return nil, 0
		}
		m, c, v, ok := ki.get(atRev)
		if !ok {
			return nil, 0
		}
		return []indexEntry{{key: ki.key, modified: m, created: c, ver: v}}, 1
	}
	ti.visit(key, end, func(ki *keyIndex) bool {
		if limit > 0 && len(ents) >= limit {
			if !withTotal {
				return false
			}
			if ki.existsAt(atRev) {
				total++
			}
			return true
		}
		if m, c, v, ok := ki.get(atRev); ok {
			ents = append(ents, indexEntry{key: ki.key, modified: m, created: c, ver: v})
			total++
		}
		return true
	})
	return ents, total
}

// count returns the number of keys in the range visible at atRev.
func (ti *treeIndex) count(key, end []byte, atRev int64) int {
	_, n := ti.countOrKeys(key, end, atRev, false)
	return n
}

// liveKeys returns the keys in the range visible at atRev.
func (ti *treeIndex) liveKeys(key, end []byte, atRev int64) [][]byte {
	keys, _ := ti.countOrKeys(key, end, atRev, true)
	return keys
}

func (ti *treeIndex) countOrKeys(key, end []byte, atRev int64, wantKeys bool) (keys [][]byte, n int) {
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	if end == nil {
		ki := ti.lookup(key)
		if ki == nil {
			return nil, 0
		}
		if _, _, _, ok := ki.get(atRev); !ok {
			return nil, 0
		}
		if wantKeys {
			keys = append(keys, ki.key)
		}
		return keys, 1
	}
	ti.visit(key, end, func(ki *keyIndex) bool {
		if ki.existsAt(atRev) {
			if wantKeys {
				keys = append(keys, ki.key)
			}
			n++
		}
		return true
	})
	return keys, n
}

// compact compacts every key at rev and returns the revisions at or below
// rev that stay. Writers are held up only one key at a time.
func (ti *treeIndex) compact(rev int64) map[revision]struct{} {
	available := make(map[revision]struct{})
	ti.mu.Lock()
	clone := ti.tree.Clone()
	ti.mu.Unlock()
	clone.Ascend(func(ki *keyIndex) bool {
		ti.mu.Lock()
		if !ki.isEmpty() {
			ki.compact(rev, available)
		}
		// The clone may hold a keyIndex that an aborted batch already
		// dropped (and a later one re-created): delete only our own.
		if ki.isEmpty() && ti.lookup(ki.key) == ki {
			ti.tree.Delete(ki)
		}
		ti.mu.Unlock()
		return true
	})
	return available
}

// keep returns the revisions at or below rev that a compaction at rev would
// keep, tombstones left out (etcd's HashByRev rule).
func (ti *treeIndex) keep(rev int64) map[revision]struct{} {
	available := make(map[revision]struct{})
	ti.mu.RLock()
	defer ti.mu.RUnlock()
	ti.tree.Ascend(func(ki *keyIndex) bool {
		ki.keep(rev, available)
		return true
	})
	return available
}

// insert adds a keyIndex built by a restore scan.
func (ti *treeIndex) insert(ki *keyIndex) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.tree.ReplaceOrInsert(ki)
}
