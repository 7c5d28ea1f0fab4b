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
	// The events of the commit being notified: evs[from:from+n] of the
	// commit while they are contiguous there, else batch.
	from, n int
	batch   []*event

	// Guarded by st.mu:
	//
	// queued is the cost of the watcher's responses queued on its stream
	// (events + 1 per response), queuedBytes the memory of their events.
	queued, queuedBytes int
	// tail is 1 + the stream position (counted from the first entry
	// ever queued) of the watcher's last queued response with events,
	// or 0 (see admitLocked).
	tail int64
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

type watcherSet map[*watcher]struct{}

// watcherGroup is a set of watchers indexed by what they watch: a map for
// single keys and an interval tree for ranges, as etcd's.
type watcherGroup struct {
	keys   map[string]watcherSet
	ranges adt.IntervalTree // interval -> watcherSet
	all    watcherSet
}

func newWatcherGroup() *watcherGroup {
	return &watcherGroup{keys: make(map[string]watcherSet), ranges: adt.NewIntervalTree(), all: make(watcherSet)}
}

func (g *watcherGroup) size() int { return len(g.all) }

// interval is the watched range of w in the tree's terms: an empty end is
// "no end" for adt's affine strings.
func (w *watcher) interval() adt.Interval {
	return adt.NewStringAffineInterval(string(w.key), string(w.end))
}

func (g *watcherGroup) add(w *watcher) {
	g.all[w] = struct{}{}
	if w.end == nil {
		set := g.keys[string(w.key)]
		if set == nil {
			set = make(watcherSet)
			g.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	ivl := w.interval()
	if iv := g.ranges.Find(ivl); iv != nil {
		iv.Val.(watcherSet)[w] = struct{}{}
		return
	}
	g.ranges.Insert(ivl, watcherSet{w: {}})
}

func (g *watcherGroup) delete(w *watcher) bool {
	if _, ok := g.all[w]; !ok {
		return false
	}
	delete(g.all, w)
	if w.end == nil {
		set := g.keys[string(w.key)]
		delete(set, w)
		if len(set) == 0 {
			delete(g.keys, string(w.key))
		}
		return true
	}
	ivl := w.interval()
	if iv := g.ranges.Find(ivl); iv != nil {
		set := iv.Val.(watcherSet)
		delete(set, w)
		if len(set) == 0 {
			g.ranges.Delete(ivl)
		}
	}
	return true
}

// visit calls f on every watcher of the group whose range holds key.
func (g *watcherGroup) visit(key []byte, f func(w *watcher)) {
	for w := range g.keys[string(key)] {
		f(w)
	}
	if g.ranges.Len() == 0 {
		return
	}
	g.ranges.Visit(adt.NewStringAffinePoint(string(key)), func(iv *adt.IntervalValue) bool {
		for w := range iv.Val.(watcherSet) {
			f(w)
		}
		return true
	})
}
