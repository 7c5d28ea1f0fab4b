package mvcc

// A watchGroup is the synced watchers of one stream that watch the same
// range with the same options: they get the same events, so a commit
// queues one response entry per group on the stream, whatever the number
// of its watchers, and the stream's goroutine makes each watcher's
// response of it on the way out. The hub indexes groups, not watchers,
// for the writers: a commit costs a writer per group it touches.
//
// An entry of a group goes to the members that joined before it was
// queued (member.join <= the entry's seq) and are not cancelled. A group
// whose events do not fit in its buffer is dissolved: its watchers fall
// behind (unsynced), each with the group's entries still queued, and join
// a new group once caught up.
type watchGroup struct {
	st       *WatchStream
	key, end []byte

	noPut, noDelete, prevKV, fragment bool
	// minRev is the first revision the group wants: 0 for a shared
	// group, the start revision of a watcher starting after the hub's
	// revision (such a watcher has a group of its own).
	minRev int64
	gkey   groupKey

	// Guarded by the hub's mu: the events of the commit being notified,
	// as watcher's were (see notify).
	from, n int
	batch   []*event

	// Guarded by st.mu:
	queueUnit
	members []member // in join order
	dead    int      // cancelled members still in members
	// changed is the seq of the last join: an entry queued before it
	// does not go to every member, so events must not join it.
	changed uint64
	// dissolved is set when the group's watchers fell behind.
	dissolved bool
}

type member struct {
	w    *watcher
	join uint64 // the seq of the stream's next entry when it joined
}

// queueUnit is what a watcher or a group has queued on its stream.
type queueUnit struct {
	// queued is the cost of the unit's responses queued (events + 1 per
	// response), queuedBytes the memory of their events.
	queued, queuedBytes int
	// tail is 1 + the stream position (counted from the first entry
	// ever queued) of the unit's last queued response with events, or 0
	// (see admitLocked).
	tail int64
}

func (g *watchGroup) keyRange() ([]byte, []byte) { return g.key, g.end }

// groupKey identifies the shared groups of a stream.
type groupKey struct {
	key, end                          string
	endSet                            bool // end != nil
	noPut, noDelete, prevKV, fragment bool
}

func (w *watcher) groupKey() groupKey {
	return groupKey{key: string(w.key), end: string(w.end), endSet: w.end != nil,
		noPut: w.noPut, noDelete: w.noDelete, prevKV: w.prevKV, fragment: w.fragment}
}

// wants reports whether the group's filters let ev through.
func (g *watchGroup) wants(typ bool) bool {
	if typ {
		return !g.noPut
	}
	return !g.noDelete
}

// joinSynced makes w synced: a member of its stream's group for what it
// watches (of its own if it starts after the hub's revision). The caller
// holds the hub's mu.
func (h *watchHub) joinSynced(w *watcher) {
	w.st.mu.Lock()
	defer w.st.mu.Unlock()
	h.joinSyncedLocked(w)
}

// joinSyncedLocked is joinSynced with the stream's mu held too.
func (h *watchHub) joinSyncedLocked(w *watcher) {
	ws := w.st
	w.state = watcherSynced
	var g *watchGroup
	if w.minRev > h.rev+1 {
		g = newWatchGroup(ws, w)
		g.minRev = w.minRev
	} else {
		k := w.groupKey()
		if g = ws.groups[k]; g == nil {
			g = newWatchGroup(ws, w)
			ws.groups[k] = g
		}
	}
	if len(g.members) == 0 {
		h.synced.add(g)
	}
	g.members = append(g.members, member{w: w, join: ws.seq})
	g.changed = ws.seq
	w.g = g
	// The group's events come after the watcher's queued ones: they must
	// not join those.
	w.tail = 0
}

func newWatchGroup(ws *WatchStream, w *watcher) *watchGroup {
	return &watchGroup{st: ws, key: w.key, end: w.end, gkey: w.groupKey(),
		noPut: w.noPut, noDelete: w.noDelete, prevKV: w.prevKV, fragment: w.fragment}
}

// leaveSynced takes a synced w out of its group, because it is
// cancelled. The caller holds the hub's mu and the stream's mu.
func (h *watchHub) leaveSynced(w *watcher) {
	g := w.g
	w.g = nil
	if g == nil {
		return
	}
	g.dead++
	if g.dead == len(g.members) {
		h.dropGroup(g)
		return
	}
	if g.dead > len(g.members)/2 && !g.st.expanding(g) {
		g.compact()
	}
}

// dropGroup takes g out of the hub and off its stream. The caller holds
// the hub's mu and the stream's mu.
func (h *watchHub) dropGroup(g *watchGroup) {
	h.synced.delete(g)
	if g.st.groups[g.gkey] == g {
		delete(g.st.groups, g.gkey)
	}
	g.dissolved = true
}

// compact takes the cancelled members out, keeping the order. The caller
// holds the stream's mu, and no entry of g is half expanded.
func (g *watchGroup) compact() {
	n := 0
	for _, m := range g.members {
		if !m.w.canceled {
			g.members[n] = m
			n++
		}
	}
	clear(g.members[n:])
	g.members, g.dead = g.members[:n], 0
}

// dissolve makes every member of g unsynced, from revision first on:
// its events did not fit. The caller holds the hub's mu.
func (h *watchHub) dissolve(g *watchGroup, first int64) {
	ws := g.st
	ws.mu.Lock()
	defer ws.mu.Unlock()
	h.dropGroup(g)
	for _, m := range g.members {
		w := m.w
		if w.canceled || w.g != g {
			continue
		}
		w.g = nil
		w.minRev = max(w.minRev, first)
		w.state = watcherUnsynced
		h.unsynced.add(w)
	}
}
