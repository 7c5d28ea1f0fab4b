package mvcc

import (
	"fmt"
	"strings"
)

// keyIndex holds the revisions of one key, grouped in generations, as etcd
// does. A generation is one life of the key: from a put that creates it to
// the tombstone that deletes it. The last generation is the current one; it
// is empty when the key is deleted.
//
// Example: put(1.0) put(2.0) tombstone(3.0) put(4.0) tombstone(5.0) gives
//
//	generations:
//	    {empty}
//	    {4.0, 5.0(t)}
//	    {1.0, 2.0, 3.0(t)}
//
// Compacting at revision N removes every revision below N that is not the
// latest one at N, and every generation that ended (tombstone) below N.
// With the example above, compact(2) keeps {2.0, 3.0(t)} and the later
// generations; compact(4) keeps {4.0, 5.0(t)} and {empty}; compact(5)
// keeps {5.0(t)} and {empty} (a tombstone at exactly N is kept so that a
// watcher starting at N sees the delete); compact(6) leaves only {empty}
// and the key is dropped from the index.
//
// A keyIndex is guarded by the lock of the index that holds it.
type keyIndex struct {
	key         []byte
	generations []generation
}

// generation is one life of a key.
type generation struct {
	ver     int64    // number of revisions ever put in this generation
	created revision // the revision that created the key (first put)
	revs    []revision
}

func (g *generation) isEmpty() bool { return g == nil || len(g.revs) == 0 }

// walk calls f on the revisions from the newest to the oldest and returns
// the position of the first one for which f returns false, or -1.
func (g *generation) walk(f func(rev revision) bool) int {
	for i := len(g.revs) - 1; i >= 0; i-- {
		if !f(g.revs[i]) {
			return i
		}
	}
	return -1
}

func (g *generation) String() string {
	return fmt.Sprintf("g: created[%v] ver[%d], revs %v", g.created, g.ver, g.revs)
}

// put adds a revision of the key. rev must be above every revision the key
// has.
func (ki *keyIndex) put(rev revision) {
	if last := ki.lastRev(); !last.less(rev) {
		panic(fmt.Sprintf("mvcc: put %v on key %q at or below its last revision %v", rev, ki.key, last))
	}
	if len(ki.generations) == 0 {
		ki.generations = append(ki.generations, generation{})
	}
	g := &ki.generations[len(ki.generations)-1]
	if len(g.revs) == 0 {
		g.created = rev
	}
	g.revs = append(g.revs, rev)
	g.ver++
}

// lastRev returns the key's last revision: the last of its last generation
// with revisions (the one a tombstone ended, if the key is deleted). It is
// not stored: a field would cost every key 16 bytes, and the last
// generation is the last or the one before it.
func (ki *keyIndex) lastRev() revision {
	for i := len(ki.generations) - 1; i >= 0; i-- {
		if g := &ki.generations[i]; len(g.revs) > 0 {
			return g.revs[len(g.revs)-1]
		}
	}
	return revision{}
}

// restore starts the key index of a key first met on a revision scan with
// a live revision (earlier ones were compacted away).
func (ki *keyIndex) restore(created, modified revision, ver int64) {
	ki.generations = append(ki.generations, generation{created: created, ver: ver, revs: []revision{modified}})
}

// restoreTombstone starts the key index of a key first met on a revision
// scan with a tombstone.
func (ki *keyIndex) restoreTombstone(rev revision) {
	ki.restore(revision{}, rev, 1)
	ki.generations = append(ki.generations, generation{})
}

// tombstone ends the current generation with rev. It reports false if the
// key is not live.
func (ki *keyIndex) tombstone(rev revision) bool {
	if ki.isEmpty() || ki.generations[len(ki.generations)-1].isEmpty() {
		return false
	}
	ki.put(rev)
	ki.generations = append(ki.generations, generation{})
	return true
}

// get returns the revision of the key visible at atRev, the revision that
// created it and its version then.
func (ki *keyIndex) get(atRev int64) (modified, created revision, ver int64, ok bool) {
	g := ki.findGeneration(atRev)
	if g.isEmpty() {
		return revision{}, revision{}, 0, false
	}
	n := g.walk(func(rev revision) bool { return rev.main > atRev })
	if n == -1 {
		return revision{}, revision{}, 0, false
	}
	return g.revs[n], g.created, g.ver - int64(len(g.revs)-n-1), true
}

// existsAt reports whether the key is visible at rev. At or after the
// key's last revision that is whether its last generation is live, which
// needs no search (the common case: counting at the current revision).
func (ki *keyIndex) existsAt(rev int64) bool {
	if rev >= ki.lastRev().main {
		return ki.liveAtHead()
	}
	_, _, _, ok := ki.get(rev)
	return ok
}

// liveAtHead reports whether the key is live at its newest revision.
func (ki *keyIndex) liveAtHead() bool {
	return len(ki.generations) > 0 && !ki.generations[len(ki.generations)-1].isEmpty()
}

// findGeneration returns the generation holding the key's state at rev,
// or nil if the key did not exist then.
func (ki *keyIndex) findGeneration(rev int64) *generation {
	lastg := len(ki.generations) - 1
	for cg := lastg; cg >= 0; cg-- {
		g := &ki.generations[cg]
		if len(g.revs) == 0 {
			continue
		}
		if cg != lastg {
			if tomb := g.revs[len(g.revs)-1].main; tomb <= rev {
				return nil
			}
		}
		if g.revs[0].main <= rev {
			return g
		}
	}
	return nil
}

// doCompact finds the generation holding the key's state at atRev (or the
// first one created after it) and, in it, the newest revision at or below
// atRev, which it adds to available.
//
// etcd: etcd picks the first generation whose tombstone is at or above
// atRev. When a txn deletes a key and puts it again in the same revision
// (possible through a delete with range_end "\x00", which etcd's
// duplicate check lets pass) and the store is compacted at exactly that
// revision, that is the dead generation: etcd keeps the tombstone, deletes
// the live revision from its backend while its index still points at it,
// and then dies on the next read of the key ("range failed to find
// revision pair"). Here the generation is the last one that begins at or
// before atRev, moved on by one if it ended before atRev; it is the same
// generation as etcd's in every other case.
func (ki *keyIndex) doCompact(atRev int64, available map[revision]struct{}) (genIdx, revIndex int) {
	genIdx = 0
	for i := len(ki.generations) - 1; i >= 0; i-- {
		if g := &ki.generations[i]; len(g.revs) > 0 && g.revs[0].main <= atRev {
			genIdx = i
			break
		}
	}
	g := &ki.generations[genIdx]
	if genIdx < len(ki.generations)-1 && len(g.revs) > 0 && g.revs[len(g.revs)-1].main < atRev {
		genIdx++
		g = &ki.generations[genIdx]
	}
	revIndex = g.walk(func(rev revision) bool {
		if rev.main <= atRev {
			available[rev] = struct{}{}
			return false
		}
		return true
	})
	return genIdx, revIndex
}

// compact drops the revisions and generations not needed to read at atRev
// or later, and adds the kept revision at or below atRev to available.
func (ki *keyIndex) compact(atRev int64, available map[revision]struct{}) {
	genIdx, revIndex := ki.doCompact(atRev, available)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIndex != -1 {
		g.revs = g.revs[revIndex:]
	}
	ki.generations = ki.generations[genIdx:]
}

// keep adds to available the revision compact(atRev) would keep at or below
// atRev, except a tombstone (etcd's HashByRev rule).
func (ki *keyIndex) keep(atRev int64, available map[revision]struct{}) {
	if ki.isEmpty() {
		return
	}
	genIdx, revIndex := ki.doCompact(atRev, available)
	g := &ki.generations[genIdx]
	if !g.isEmpty() && revIndex == len(g.revs)-1 && genIdx != len(ki.generations)-1 {
		delete(available, g.revs[revIndex])
	}
}

// rollback removes every revision at or above from, undoing puts and
// tombstones that were never committed.
func (ki *keyIndex) rollback(from revision) {
	for len(ki.generations) > 0 {
		last := len(ki.generations) - 1
		g := &ki.generations[last]
		if len(g.revs) == 0 {
			if last == 0 {
				break
			}
			prev := &ki.generations[last-1]
			if prev.revs[len(prev.revs)-1].less(from) {
				break
			}
			// The tombstone that closed prev is rolled back: prev is live
			// again and the empty generation after it goes.
			ki.generations = ki.generations[:last]
			continue
		}
		n := len(g.revs)
		for n > 0 && !g.revs[n-1].less(from) {
			n--
		}
		g.ver -= int64(len(g.revs) - n)
		g.revs = g.revs[:n]
		if n > 0 {
			break
		}
		*g = generation{}
	}
}

// isEmpty reports whether the key has no revision left.
func (ki *keyIndex) isEmpty() bool {
	return len(ki.generations) == 0 || (len(ki.generations) == 1 && ki.generations[0].isEmpty())
}

func (ki *keyIndex) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q modified %v:", ki.key, ki.lastRev())
	for i := range ki.generations {
		b.WriteString(" {")
		b.WriteString(ki.generations[i].String())
		b.WriteString("}")
	}
	return b.String()
}
