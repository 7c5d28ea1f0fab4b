package mvcc

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	tbtree "github.com/tidwall/btree"
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
//
// Beside the tree, the index keeps the live keys in a counted B-tree, so
// that a range's count is two rank lookups rather than a walk of the range
// (etcd walks it: kube-apiserver counts every resource every minute and
// pages its lists with the total). The live set is the keys' state at the
// index's newest revision; liveness changes above floor are kept in
// changes, oldest first, so that a count at any revision from floor on is
// the live set's count corrected by the keys that changed after it.
// Counts below floor walk the range.
type treeIndex struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[*keyIndex]

	live    *tbtree.BTreeG[*keyIndex] // keys live at the newest revision
	changes []liveChange              // liveness changes above floor, in revision order
	floor   int64                     // counts at or above it need no walk

	// published is the store's published revision: changes at or below it
	// may be dropped (readers of older revisions then walk).
	published atomic.Int64
}

// liveChange records that key became live or dead at rev.
type liveChange struct {
	key []byte // aliases the index; never modified
	rev revision
}

// maxLiveChanges bounds the liveness changes kept for counts at revisions
// below the newest: beyond it the published ones are dropped down to half.
const maxLiveChanges = 4096

// liveDegree is the degree of the live keys' B-tree: small nodes make a
// rank lookup's scan of child counts short.
const liveDegree = 16

func keyLess(a, b *keyIndex) bool { return bytes.Compare(a.key, b.key) < 0 }

func newTreeIndex() *treeIndex {
	return &treeIndex{
		tree: btree.NewG(btreeDegree, keyLess),
		live: tbtree.NewBTreeGOptions(keyLess, tbtree.Options{Degree: liveDegree, NoLocks: true}),
	}
}

// noteLiveness updates the live set after a change at rev to ki, which was
// live before it if wasLive. The caller holds the write lock.
func (ti *treeIndex) noteLiveness(ki *keyIndex, wasLive bool, rev revision) {
	if !ti.syncLive(ki, wasLive) {
		return
	}
	if len(ti.changes) >= maxLiveChanges {
		ti.dropChanges()
	}
	ti.changes = append(ti.changes, liveChange{key: ki.key, rev: rev})
}

// syncLive puts ki in the live set or takes it out after a change, if the
// change moved it (it was live before if wasLive), and reports whether it
// did. The caller holds the write lock.
func (ti *treeIndex) syncLive(ki *keyIndex, wasLive bool) bool {
	live := ki.liveAtHead()
	switch {
	case live == wasLive:
		return false
	case live:
		ti.live.Set(ki)
	default:
		ti.live.Delete(ki)
	}
	return true
}

// dropChanges drops the oldest published liveness changes, down to half of
// maxLiveChanges, and raises floor past them.
func (ti *treeIndex) dropChanges() {
	pub := ti.published.Load()
	n := 0
	for n < len(ti.changes)-maxLiveChanges/2 && ti.changes[n].rev.main <= pub {
		n++
	}
	if n == 0 {
		return
	}
	ti.floor = max(ti.floor, ti.changes[n-1].rev.main)
	ti.changes = append(ti.changes[:0], ti.changes[n:]...)
	clear(ti.changes[len(ti.changes):cap(ti.changes)])
}

// resetLive rebuilds the live set from the tree, as of revision rev (a
// restore): counts at rev and later need no walk.
func (ti *treeIndex) resetLive(rev int64) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.live.Clear()
	ti.tree.Ascend(func(ki *keyIndex) bool {
		if ki.liveAtHead() {
			ti.live.Load(ki) // in key order: appended
		}
		return true
	})
	ti.changes, ti.floor = nil, rev
}

// liveRank returns the number of live keys below key (with end true and key
// empty: all of them). The caller holds the lock.
func (ti *treeIndex) liveRank(key []byte) int {
	lo, hi := 0, ti.live.Len()
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		ki, _ := ti.live.GetAt(mid)
		if bytes.Compare(ki.key, key) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// fastCount returns the number of keys in [key, end) (end empty: every key
// >= key) visible at atRev, and false if atRev is below floor. The caller
// holds the lock.
func (ti *treeIndex) fastCount(key, end []byte, atRev int64) (int, bool) {
	if atRev < ti.floor {
		return 0, false
	}
	hi := ti.live.Len()
	if len(end) > 0 {
		if bytes.Compare(key, end) >= 0 {
			return 0, true
		}
		hi = ti.liveRank(end)
	}
	n := hi - ti.liveRank(key)
	// Keys whose liveness changed after atRev count as they were then. A
	// key may be listed more than once: the correction is by its state,
	// so each key is corrected once.
	var few [8][]byte // the keys corrected, while they are few
	var seen map[string]struct{}
	nfew := 0
	for i := len(ti.changes) - 1; i >= 0 && ti.changes[i].rev.main > atRev; i-- {
		k := ti.changes[i].key
		if bytes.Compare(k, key) < 0 || (len(end) > 0 && bytes.Compare(k, end) >= 0) {
			continue
		}
		dup := false
		for _, s := range few[:nfew] {
			dup = dup || bytes.Equal(s, k)
		}
		if dup {
			continue
		}
		if nfew < len(few) {
			few[nfew] = k
			nfew++
		} else {
			if seen == nil {
				seen = make(map[string]struct{})
			}
			if _, ok := seen[string(k)]; ok {
				continue
			}
			seen[string(k)] = struct{}{}
		}
		ki := ti.lookup(k)
		if ki == nil {
			continue // rolled back: neither live now nor then
		}
		if ki.liveAtHead() {
			n--
		}
		if ki.existsAt(atRev) {
			n++
		}
	}
	return n, true
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
	wasLive := ki.liveAtHead()
	if _, c, v, ok := ki.get(rev.main); ok {
		created, ver = c.main, v
	}
	ki.put(rev)
	ti.noteLiveness(ki, wasLive, rev)
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
	if !ki.tombstone(rev) {
		return false
	}
	ti.noteLiveness(ki, true, rev)
	return true
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
	wasLive := ki.liveAtHead()
	ki.rollback(from)
	if ki.isEmpty() {
		ti.tree.Delete(ki)
	}
	ti.syncLive(ki, wasLive)
	// The changes at or above from are undone: they are the newest.
	n := len(ti.changes)
	for n > 0 && !ti.changes[n-1].rev.less(from) {
		n--
	}
	clear(ti.changes[n:])
	ti.changes = ti.changes[:n]
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
	fast, counted := 0, false
	if limit > 0 && withTotal {
		fast, counted = ti.fastCount(key, end, atRev)
	}
	ti.visit(key, end, func(ki *keyIndex) bool {
		if limit > 0 && len(ents) >= limit {
			if !withTotal || counted {
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
	if counted {
		total = fast
	}
	return ents, total
}

// count returns the number of keys in the range visible at atRev.
func (ti *treeIndex) count(key, end []byte, atRev int64) int {
	if end != nil {
		ti.mu.RLock()
		n, ok := ti.fastCount(key, end, atRev)
		ti.mu.RUnlock()
		if ok {
			return n
		}
	}
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
