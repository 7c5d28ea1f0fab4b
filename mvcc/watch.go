package mvcc

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/engine"
)

// This file holds the watch hub: the store's watchers and the delivery of
// events to them, after etcd v3.7.3's watchable store
// (server/storage/mvcc/watchable_store.go).
//
// A watcher is synced or unsynced. WriteBatch.Commit hands the changes of
// every commit to the hub (notify), which queues them, without blocking,
// on the streams of the synced watchers they match. A synced watcher
// whose stream has no room for them (see WatchStreamOptions.BufferEvents)
// becomes unsynced: it no longer costs the writer anything, and the sync
// loop catches it up later, once its stream has room again, from the
// store's revision area and from a ring of the latest committed events
// (watchers starting at an old revision begin unsynced too). A watcher is
// synced again once it has every event up to the hub's revision. So a
// writer never waits for a watcher, and a watcher sees every revision
// once, in order, whatever it falls behind by, unless the revisions it
// needs are compacted away: it then gets a compacted response.

// watchLimits bound the watch hub. They are Options.watch, so that tests
// can make them small; zero fields take the defaults below.
type watchLimits struct {
	// syncInterval is the period of the sync loop (etcd's
	// watchResyncPeriod); it also runs when a watcher needs it.
	syncInterval time.Duration
	// maxWatchersPerSync bounds the watchers one sync pass serves (etcd's).
	maxWatchersPerSync int
	// maxSyncScan bounds the revision-area entries one sync pass reads.
	maxSyncScan int
	// The ring keeps the events of the latest revisions, up to these
	// bounds (the latest revision is kept whatever its size).
	ringMaxEvents int
	ringMaxBytes  int
}

func (l *watchLimits) ensureDefaults() {
	if l.syncInterval <= 0 {
		l.syncInterval = 100 * time.Millisecond
	}
	if l.maxWatchersPerSync <= 0 {
		l.maxWatchersPerSync = 512
	}
	if l.maxSyncScan <= 0 {
		l.maxSyncScan = 10000
	}
	if l.ringMaxEvents <= 0 {
		l.ringMaxEvents = 8192
	}
	if l.ringMaxBytes <= 0 {
		l.ringMaxBytes = 8 << 20
	}
}

// watchHub holds the watchers of a Store.
type watchHub struct {
	s *Store

	// mu guards the fields below and the hub-side fields of every watcher.
	// Lock order: mu, then a WatchStream's mu.
	mu sync.Mutex
	// rev is the revision up to which commits have been notified.
	rev      int64
	synced   *groupIndex // the groups of the synced watchers
	unsynced *watcherGroup
	count    int // watchers synced or unsynced
	ring     eventRing
	streams  map[*WatchStream]struct{}
	closed   bool
	// notify scratch: the streams with events for their groups, and
	// the groups whose events did not fit
	touched  []*WatchStream
	overflow []*watchGroup

	syncc        chan struct{} // wakes the sync loop
	stopc, donec chan struct{}
	lim          watchLimits
}

func newWatchHub(s *Store, rev int64) *watchHub {
	h := &watchHub{
		s:        s,
		rev:      rev,
		synced:   newRangeIndex[*watchGroup](),
		unsynced: newWatcherGroup(),
		streams:  make(map[*WatchStream]struct{}),
		syncc:    make(chan struct{}, 1),
		stopc:    make(chan struct{}),
		donec:    make(chan struct{}),
		lim:      s.opts.watch,
	}
	h.ring.reset(rev + 1)
	go h.syncLoop()
	return h
}

// close stops the sync loop and closes every stream.
func (h *watchHub) close() {
	h.mu.Lock()
	h.closed = true
	streams := make([]*WatchStream, 0, len(h.streams))
	for ws := range h.streams {
		streams = append(streams, ws)
	}
	h.mu.Unlock()
	close(h.stopc)
	<-h.donec
	for _, ws := range streams {
		ws.Close()
	}
}

// nudge wakes the sync loop.
func (h *watchHub) nudge() {
	select {
	case h.syncc <- struct{}{}:
	default:
	}
}

// event is a watch event with its encoding as an entry of a
// WatchResponse's events (field 11): made once, when the event is, and
// shared by every watcher it goes to, so that a response is encoded by
// appending the bytes of its events (see WatchStreamOptions.EncodedHeader).
// wire is nil if the event could not be encoded; it is then encoded with
// its response.
type event struct {
	*mvccpb.Event
	wire []byte
}

// eventOverhead is about what an event costs besides its key, value and
// encoding: the event, its KeyValue and their slices.
const eventOverhead = 160

// mem is about the memory ev holds.
func (ev *event) mem() int {
	return eventOverhead + len(ev.wire) + len(ev.Kv.Key) + len(ev.Kv.Value)
}

// eventsMem is about the memory evs hold.
func eventsMem(evs []*event) int {
	n := 0
	for _, ev := range evs {
		n += ev.mem()
	}
	return n
}

// eventWireSize is the size of ev's entry in a WatchResponse.
func eventWireSize(ev *mvccpb.Event) int {
	n := proto.Size(ev)
	return protowire.SizeTag(watchResponseEvents) + protowire.SizeVarint(uint64(n)) + n
}

// appendEventWire appends ev's entry in a WatchResponse to b.
func appendEventWire(b []byte, ev *mvccpb.Event) ([]byte, error) {
	b = protowire.AppendTag(b, watchResponseEvents, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(proto.Size(ev)))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, ev)
}

// encodeEvents encodes evs into one allocation.
func encodeEvents(evs []*event) {
	size := 0
	for _, ev := range evs {
		size += eventWireSize(ev.Event)
	}
	buf := make([]byte, 0, size)
	for i := range evs {
		start := len(buf)
		b, err := appendEventWire(buf, evs[i].Event)
		if err != nil {
			buf = buf[:start]
			continue
		}
		buf = b
		evs[i].wire = buf[start:len(buf):len(buf)]
	}
}

// changesToEvents turns committed changes into watch events: a DELETE
// carries the key and the deletion revision, as etcd's do.
func changesToEvents(changes []pendingChange) []*event {
	evs := make([]*event, len(changes))
	slab := make([]event, len(changes))
	pbs := make([]mvccpb.Event, len(changes))
	kvs := make([]mvccpb.KeyValue, len(changes))
	for i := range changes {
		p := &changes[i]
		ev := &pbs[i]
		ev.Kv = &kvs[i]
		if err := decodeKV(p.value, ev.Kv); err != nil {
			panic(err) // we encoded it
		}
		if p.tomb {
			ev.Type = mvccpb.Event_DELETE
			ev.Kv.ModRevision = p.rev.main
		}
		slab[i].Event = ev
		evs[i] = &slab[i]
	}
	encodeEvents(evs)
	return evs
}

// notify hands the changes of a commit (revisions up to rev) to the
// watchers. It is called by WriteBatch.Commit, in commit order, after the
// changes are visible to readers. It never blocks on a stream.
func (h *watchHub) notify(changes []pendingChange, rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == 0 {
		h.rev = rev
		h.ring.reset(rev + 1)
		return
	}
	evs := changesToEvents(changes)
	h.ring.add(evs, &h.lim)
	first := changes[0].rev.main
	if h.synced.size() > 0 {
		for i, ev := range evs {
			put := ev.Type == mvccpb.Event_PUT
			h.synced.visit(ev.Kv.Key, func(g *watchGroup) {
				if ev.Kv.ModRevision < g.minRev || !g.wants(put) {
					return
				}
				switch {
				case g.n == 0 && g.batch == nil:
					if len(g.st.touched) == 0 {
						h.touched = append(h.touched, g.st)
					}
					g.st.touched = append(g.st.touched, g)
					g.from, g.n = i, 1
				case g.batch == nil && g.from+g.n == i:
					g.n++ // still contiguous: no copy
				default:
					if g.batch == nil {
						g.batch = append(make([]*event, 0, g.n+1), evs[g.from:g.from+g.n]...)
					}
					g.batch = append(g.batch, ev)
				}
			})
		}
		for _, ws := range h.touched {
			h.overflow = ws.enqueueCommit(evs, rev, h.overflow)
		}
		clear(h.touched)
		h.touched = h.touched[:0]
		for _, g := range h.overflow {
			// No room: the group's watchers fall behind and catch up
			// later.
			h.dissolve(g, first)
		}
		clear(h.overflow)
		h.overflow = h.overflow[:0]
	}
	h.rev = rev
}

// register adds a new watcher, synced if it starts after the hub's
// revision. The caller holds mu and the stream's mu.
func (h *watchHub) register(w *watcher) {
	h.count++
	if w.startRev == 0 || w.startRev > h.rev {
		w.minRev = max(w.startRev, h.rev+1)
		h.joinSyncedLocked(w)
		return
	}
	w.minRev = w.startRev
	w.state = watcherUnsynced
	h.unsynced.add(w)
	h.nudge()
}

// remove takes w out of the hub. The caller holds mu and the stream's
// mu.
func (h *watchHub) remove(w *watcher) {
	switch w.state {
	case watcherSynced:
		h.leaveSynced(w)
		h.count--
	case watcherUnsynced:
		h.unsynced.delete(w)
		h.count--
	}
	w.state = watcherCanceled
}

// compacted cancels an unsynced watcher whose next revision is compacted,
// as etcd does: a response with the compact revision (and revision 0 in
// its header, as etcd's), and the watcher stays on its stream until
// cancelled. The caller holds mu.
func (h *watchHub) compacted(w *watcher, compactRev int64) {
	h.unsynced.delete(w)
	h.count--
	w.state = watcherCompacted
	w.st.enqueueCompacted(w, compactRev)
}

// catchUp queues evs (the watcher's events of revisions w.minRev..upTo,
// in order) on w's stream in chunks of whole revisions, and advances
// w.minRev past what it queued. It reports whether everything was queued.
// The caller holds mu.
func (h *watchHub) catchUp(w *watcher, evs []*event, upTo int64) bool {
	limit, limitBytes := w.st.chunkEvents(), w.st.chunkBytes(w.fragment)
	for len(evs) > 0 {
		n, size := 0, 0
		for n < len(evs) {
			// Take the whole revision at evs[n].
			r := evs[n].Kv.ModRevision
			m, add := n+1, evs[n].mem()
			for m < len(evs) && evs[m].Kv.ModRevision == r {
				add += evs[m].mem()
				m++
			}
			if n > 0 && (m > limit || size+add > limitBytes) {
				break
			}
			n, size = m, size+add
		}
		if !w.st.enqueueEvents(w, evs[:n:n], h.rev) {
			w.minRev = evs[0].Kv.ModRevision
			return false
		}
		evs = evs[n:]
	}
	w.minRev = upTo + 1
	return true
}

// syncFromRing catches an unsynced watcher up from the ring, to the hub's
// revision, and makes it synced if all went out. w.minRev must be in the
// ring. The caller holds mu.
func (h *watchHub) syncFromRing(w *watcher) bool {
	var evs []*event
	for _, rr := range h.ring.from(w.minRev) {
		for _, ev := range rr.evs {
			if w.contains(ev.Kv.Key) && w.wants(ev.Event) {
				evs = append(evs, ev)
			}
		}
	}
	if !h.catchUp(w, evs, h.rev) {
		return false
	}
	h.unsynced.delete(w)
	h.joinSynced(w)
	return true
}

func (h *watchHub) syncLoop() {
	defer close(h.donec)
	t := time.NewTimer(h.lim.syncInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stopc:
			return
		case <-t.C:
		case <-h.syncc:
		}
		more, err := h.syncOnce()
		if err != nil {
			h.s.opts.Logger.Warn("mvcc: watch sync failed", "error", err)
		}
		t.Stop()
		select {
		case <-t.C:
		default:
		}
		if more {
			h.nudge() // yield to stop, then go on
		}
		t.Reset(h.lim.syncInterval)
	}
}

// syncOnce is one pass of the sync loop over up to lim.maxWatchersPerSync
// unsynced watchers whose streams have room: compacted ones are cancelled,
// those within the ring are caught up from it, and the others read the
// revision area (at most lim.maxSyncScan entries, without holding mu) and
// then the ring. It reports whether another pass should follow at once.
func (h *watchHub) syncOnce() (more bool, err error) {
	h.mu.Lock()
	compactRev := h.s.state.Load().compactRev
	var scan []*watcher
	chosen, progressed := 0, false
	for w := range h.unsynced.all {
		if chosen >= h.lim.maxWatchersPerSync {
			more = true
			break
		}
		if w.minRev < compactRev {
			h.compacted(w, compactRev)
			continue
		}
		if !w.st.hasRoom(w) {
			continue
		}
		chosen++
		if w.minRev >= h.ring.first {
			before := w.minRev
			h.syncFromRing(w)
			progressed = progressed || w.minRev != before || w.state == watcherSynced
			continue
		}
		scan = append(scan, w)
	}
	upTo := h.ring.first - 1
	h.mu.Unlock()
	if len(scan) == 0 {
		return more || (progressed && h.unsyncedLeft()), nil
	}

	byWatcher, end, compactRev, err := h.scanStore(scan, upTo)
	if err != nil {
		return false, err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range scan {
		if w.state != watcherUnsynced {
			continue // cancelled meanwhile
		}
		if w.minRev < compactRev {
			h.compacted(w, compactRev)
			continue
		}
		if w.minRev > end {
			continue
		}
		before := w.minRev
		if h.catchUp(w, byWatcher[w], end) && w.minRev >= h.ring.first {
			h.syncFromRing(w)
		}
		// Only a watcher that moved on counts: one whose first response
		// does not fit must not make the loop spin.
		progressed = progressed || w.minRev != before || w.state == watcherSynced
	}
	return more || (progressed && h.unsynced.size() > 0), nil
}

func (h *watchHub) unsyncedLeft() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unsynced.size() > 0
}

// scanStore reads the events of the watchers ws from the revision area,
// from their lowest minRev (or the compact revision) to upTo, stopping at
// a revision boundary after lim.maxSyncScan entries. It returns each
// watcher's events from its minRev on, the last revision read, and the
// compact revision, read after the engine snapshot was taken (so no
// revision at or above it is missing from the snapshot).
func (h *watchHub) scanStore(ws []*watcher, upTo int64) (map[*watcher][]*event, int64, int64, error) {
	snap, err := h.s.be.NewSnapshot()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: watch sync: %w", err)
	}
	defer snap.Close()
	compactRev := h.s.state.Load().compactRev
	g := newWatcherGroup()
	from := upTo + 1
	for _, w := range ws {
		if w.minRev >= compactRev {
			from = min(from, w.minRev)
			g.add(w)
		}
	}
	out := make(map[*watcher][]*event)
	if from > upTo {
		return out, upTo, compactRev, nil
	}
	it, err := snap.NewIter(&engine.IterOptions{
		LowerBound: revKey(revision{main: from}, false),
		UpperBound: revKey(revision{main: upTo + 1}, false),
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: watch sync: %w", err)
	}
	defer it.Close()
	end, n := upTo, 0
	last := int64(-1)
	for ok := it.First(); ok; ok = it.Next() {
		rev, tomb, err := parseRevKey(it.Key())
		if err != nil {
			return nil, 0, 0, err
		}
		if n >= h.lim.maxSyncScan && rev.main != last {
			end = last
			break
		}
		n++
		last = rev.main
		key, err := decodeKVKey(it.Value())
		if err != nil {
			return nil, 0, 0, err
		}
		var ev *event
		g.visit(key, func(w *watcher) {
			if rev.main < w.minRev {
				return
			}
			if ev == nil {
				ev = &event{Event: &mvccpb.Event{Kv: &mvccpb.KeyValue{}}}
				if err := decodeKV(bytes.Clone(it.Value()), ev.Kv); err != nil {
					panic(err) // decodeKVKey decoded it
				}
				if tomb {
					ev.Type = mvccpb.Event_DELETE
					ev.Kv.ModRevision = rev.main
				}
				if b, err := appendEventWire(nil, ev.Event); err == nil {
					ev.wire = b
				}
			}
			if w.wants(ev.Event) {
				out[w] = append(out[w], ev)
			}
		})
	}
	if err := it.Error(); err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: watch sync: %w", err)
	}
	return out, end, compactRev, nil
}

// eventRing holds the events of the latest revisions, contiguous up to
// the hub's revision: revisions first..hub.rev.
type eventRing struct {
	revs   []ringRev // revs[head:] are held
	head   int
	first  int64 // first revision held; hub.rev+1 when empty
	events int
	bytes  int
}

type ringRev struct {
	rev  int64
	evs  []*event
	size int
}

func (r *eventRing) reset(next int64) {
	clear(r.revs)
	*r = eventRing{revs: r.revs[:0], first: next}
}

// add appends the events of a commit, in revision order, and drops the
// oldest revisions beyond lim's bounds.
func (r *eventRing) add(evs []*event, lim *watchLimits) {
	for i := 0; i < len(evs); {
		rev := evs[i].Kv.ModRevision
		j, size := i, 0
		for ; j < len(evs) && evs[j].Kv.ModRevision == rev; j++ {
			size += 64 + len(evs[j].Kv.Key) + len(evs[j].Kv.Value) + len(evs[j].wire)
		}
		r.revs = append(r.revs, ringRev{rev: rev, evs: evs[i:j:j], size: size})
		r.events += j - i
		r.bytes += size
		i = j
	}
	for len(r.revs)-r.head > 1 && (r.events > lim.ringMaxEvents || r.bytes > lim.ringMaxBytes) {
		old := &r.revs[r.head]
		r.events -= len(old.evs)
		r.bytes -= old.size
		*old = ringRev{}
		r.head++
	}
	if r.head > 1024 && r.head > len(r.revs)/2 {
		n := copy(r.revs, r.revs[r.head:])
		clear(r.revs[n:])
		r.revs = r.revs[:n]
		r.head = 0
	}
	r.first = r.revs[r.head].rev
}

// from returns the revisions held from rev on.
func (r *eventRing) from(rev int64) []ringRev {
	held := r.revs[r.head:]
	i := int(rev - r.first)
	if i <= 0 {
		return held
	}
	if i >= len(held) {
		return nil
	}
	return held[i:]
}
