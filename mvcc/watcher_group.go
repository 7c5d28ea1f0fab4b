package mvcc

import (
	"bytes"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/pkg/v3/adt"
)

// watcher states.
const (
	watcherSynced    = iota // in hub.synced: gets the events of each commit
	watcherUnsynced         // in hub.unsynced: catches up from the ring or the store
	watcherCompacted        // fell below the compact revision; still on its stream
	watcherCanceled         // removed
)

// watcher is one watch of a WatchStream.
type watcher struct {
	st *WatchStream
	id int64
	// key and end are the watched range, with Range's rules: end nil is
	// the single key, end empty every key >= key.
	key, end []byte
	startRev int64

	prevKV, noPut, noDelete, progressNotify, fragment bool

	// Guarded by the hub's mu:
	//
	// minRev is the first revision the watcher still needs. A synced
	// watcher has seen every revision below max(minRev, hub.rev+1).
	minRev int64
	state  int
	// g is the group of a synced watcher (also guarded by st.mu).
	g *watchGroup

	// Guarded by st.mu:
	//
	// The responses of the watcher alone (created, catching up,
	// progress); those of its groups count against them.
	queueUnit
	// canceled is set when the watcher is cancelled or its stream
	// closed: the entries of its groups no longer go to it.
	canceled bool
	// sentEvents records that events were sent since the last progress
	// tick; progressPending that a progress response is queued.
	sentEvents, progressPending bool
}

// contains reports whether key is in the watched range.
func (w *watcher) contains(key []byte) bool {
	if w.end == nil {
		return bytes.Equal(key, w.key)
	}
	if bytes.Compare(key, w.key) < 0 {
		return false
	}
	return len(w.end) == 0 || bytes.Compare(key, w.end) < 0
}

// wants reports whether the watcher's filters let ev through.
func (w *watcher) wants(ev *mvccpb.Event) bool {
	if ev.Type == mvccpb.Event_PUT {
		return !w.noPut
	}
	return !w.noDelete
}

// ranged is what a rangeIndex holds: a watcher, or a group of them.
type ranged interface {
	comparable
	// keyRange is the watched range, with Range's rules: end nil is the
	// single key, end empty every key >= key.
	keyRange() (key, end []byte)
}

func (w *watcher) keyRange() ([]byte, []byte) { return w.key, w.end }

// rangeIndex is a set of watchers (or groups) indexed by what they
// watch: a map for single keys and an interval tree for ranges, as
// etcd's watcherGroup.
type rangeIndex[T ranged] struct {
	keys   map[string]map[T]struct{}
	ranges adt.IntervalTree // interval -> map[T]struct{}
	all    map[T]struct{}
}

// watcherGroup is the index of unsynced watchers; groupIndex that of
// the synced watchers' groups.
type (
	watcherGroup = rangeIndex[*watcher]
	groupIndex   = rangeIndex[*watchGroup]
)

func newWatcherGroup() *watcherGroup { return newRangeIndex[*watcher]() }

func newRangeIndex[T ranged]() *rangeIndex[T] {
	return &rangeIndex[T]{keys: make(map[string]map[T]struct{}), ranges: adt.NewIntervalTree(), all: make(map[T]struct{})}
}

func (g *rangeIndex[T]) size() int { return len(g.all) }

// interval is a watched range in the tree's terms: an empty end is "no
// end" for adt's affine strings.
func watchInterval(key, end []byte) adt.Interval {
	return adt.NewStringAffineInterval(string(key), string(end))
}

func (g *rangeIndex[T]) add(w T) {
	g.all[w] = struct{}{}
	key, end := w.keyRange()
	if end == nil {
		set := g.keys[string(key)]
		if set == nil {
			set = make(map[T]struct{})
			g.keys[string(key)] = set
		}
		set[w] = struct{}{}
		return
	}
	ivl := watchInterval(key, end)
	if iv := g.ranges.Find(ivl); iv != nil {
		iv.Val.(map[T]struct{})[w] = struct{}{}
		return
	}
	g.ranges.Insert(ivl, map[T]struct{}{w: {}})
}

func (g *rangeIndex[T]) delete(w T) bool {
	if _, ok := g.all[w]; !ok {
		return false
	}
	delete(g.all, w)
	key, end := w.keyRange()
	if end == nil {
		set := g.keys[string(key)]
		delete(set, w)
		if len(set) == 0 {
			delete(g.keys, string(key))
		}
		return true
	}
	ivl := watchInterval(key, end)
	if iv := g.ranges.Find(ivl); iv != nil {
		set := iv.Val.(map[T]struct{})
		delete(set, w)
		if len(set) == 0 {
			g.ranges.Delete(ivl)
		}
	}
	return true
}

// visit calls f on every member of the index whose range holds key.
func (g *rangeIndex[T]) visit(key []byte, f func(w T)) {
	for w := range g.keys[string(key)] {
		f(w)
	}
	if g.ranges.Len() == 0 {
		return
	}
	g.ranges.Visit(adt.NewStringAffinePoint(string(key)), func(iv *adt.IntervalValue) bool {
		for w := range iv.Val.(map[T]struct{}) {
			f(w)
		}
		return true
	})
}
