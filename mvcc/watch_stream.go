package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Watch IDs with a meaning of their own, as in etcd's clientv3.
const (
	// AutoWatchID in a WatchCreateRequest asks the stream to pick the ID.
	AutoWatchID int64 = 0
	// InvalidWatchID is the ID of responses about no single watcher:
	// rejected creations and stream-wide progress notifications.
	InvalidWatchID int64 = -1
)

// WatchStreamOptions configure a WatchStream. A nil *WatchStreamOptions
// means all defaults.
type WatchStreamOptions struct {
	// ProgressNotifyInterval is the period of the progress notifications
	// sent to the watchers created with progress_notify (etcd's
	// --watch-progress-notify-interval), plus up to 10% of jitter; a
	// watcher that got events since the last one gets none. The default
	// value is 10 minutes, etcd's; a negative value sends none.
	ProgressNotifyInterval time.Duration
	// FragmentBytes is the size from which a response of a watcher
	// created with fragment is split into fragments (the server's
	// --max-request-bytes plus gRPC overhead, as etcd does). The default
	// value, 0, never splits.
	FragmentBytes int
	// BufferEvents bounds, per watcher, the events queued on the stream
	// and not yet received from Chan. A watcher whose events do not fit
	// falls behind (unsynced) and is caught up from the store once the
	// stream has room, so a slow reader costs memory up to this bound per
	// watcher and never holds up writers or other streams. A single
	// revision larger than the bound is still sent whole. The default
	// value is 4096.
	BufferEvents int
	// BufferBytes bounds, per watcher, the memory of the events queued
	// on the stream and not yet received (their encoding, key and value):
	// what a watcher that is never read costs, whatever the size of the
	// values. A watcher whose events do not fit falls behind as with
	// BufferEvents. A single revision larger than the bound is still
	// sent whole, and a watcher created with fragment may get a response
	// of up to two fragments (4 × FragmentBytes of memory) when it
	// catches up. The default value is 1 MiB.
	BufferBytes int
	// EncodedHeader, if set, makes the stream hand out its responses
	// encoded, on Encoded, instead of on Chan: each exactly what
	// proto.Marshal makes of the response with the header fields
	// EncodedHeader returns (called once per batch of responses) and the
	// revision. An event is encoded once, whatever number of watchers it
	// goes to.
	EncodedHeader func() WireHeader
}

const (
	defaultProgressNotifyInterval = 10 * time.Minute
	defaultBufferEvents           = 4096
	defaultBufferBytes            = 1 << 20
)

// Clone returns a copy of o; a nil o gives zero WatchStreamOptions.
func (o *WatchStreamOptions) Clone() *WatchStreamOptions {
	if o == nil {
		return &WatchStreamOptions{}
	}
	c := *o
	return &c
}

// EnsureDefaults sets the unset fields of o to their default values.
// NewWatchStream calls it on its own copy of the caller's options.
func (o *WatchStreamOptions) EnsureDefaults() {
	if o.ProgressNotifyInterval == 0 {
		o.ProgressNotifyInterval = defaultProgressNotifyInterval
	}
	if o.BufferEvents <= 0 {
		o.BufferEvents = defaultBufferEvents
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = defaultBufferBytes
	}
}

// Validate reports options that cannot work, with an error wrapping
// ErrInvalidOptions. It expects EnsureDefaults to have run.
func (o *WatchStreamOptions) Validate() error {
	if o.FragmentBytes < 0 {
		return fmt.Errorf("%w: FragmentBytes %d < 0", ErrInvalidOptions, o.FragmentBytes)
	}
	return nil
}

// WatchStream is a set of watchers whose responses come out, in order, on
// one channel: what an etcd gRPC Watch stream serves. It is safe for
// concurrent use.
//
// Every response of the stream goes through Chan in the order it was
// produced, so that the server can send them as they come: the created
// response of a watcher comes before its events, its events in revision
// order, a progress notification after every event it covers, and a
// cancel response after the watcher's last event. Each response carries
// only Revision in its header; the server fills in the rest. Responses
// are the stream's to hand over, but events and their KeyValues are
// shared with other watchers and must be treated as read-only.
//
// A stream owns a goroutine that feeds Chan; Close (or the store's Close)
// stops it and closes Chan.
type WatchStream struct {
	h    *watchHub
	opts WatchStreamOptions
	out  chan *pb.WatchResponse
	enc  chan [][]byte

	// mu guards the fields below and the stream-side fields of its
	// watchers.
	mu       sync.Mutex
	watchers map[int64]*watcher
	nextID   int64
	queue    []streamEntry // queue[head:] are waiting
	head     int
	base     int64 // the position of queue[0] among every entry ever queued
	progress int64 // the position of the queued stream-wide progress, or -1
	moved    int   // the slots left in the queue by moved entries (admitLocked)
	closed   bool
	// seq numbers the entries in the order they are queued (a moved
	// entry gets a new one): the members of a group an entry goes to
	// are those that joined before it.
	seq uint64
	// groups are the stream's shared groups of synced watchers.
	groups map[groupKey]*watchGroup
	// expand is how many members of the group of queue[head] have been
	// handed their response of it (pop), while it is under way.
	expand int

	// touched lists the groups with events in the commit being
	// notified; guarded by the hub's mu.
	touched []*watchGroup

	// prev caches the events with prev_kv made last for the members of
	// a group (finish); used by the stream's goroutine only.
	prev struct {
		g   *watchGroup
		seq uint64
		n   int
		evs []*mvccpb.Event
	}

	wake      chan struct{}
	stopc     chan struct{}
	donec     chan struct{}
	closeOnce sync.Once
}

// streamEntry is a queued response; the stream's goroutine makes it a
// pb.WatchResponse, so that writers queuing events allocate nothing.
type streamEntry struct {
	kind   entryKind
	dead   bool
	w      *watcher    // the watcher it counts against (events and progress)
	g      *watchGroup // or the group it counts against, and goes to
	seq    uint64
	id     int64
	rev    int64 // header revision
	evs    []*event
	owned  bool   // evs is the entry's own, not shared with other watchers
	cost   int    // counted in its unit's queued
	bytes  int    // counted in its unit's queuedBytes: the memory of evs
	compat int64  // compact revision
	reason string // cancel reason
}

// unit is what e counts against, or nil.
func (e *streamEntry) unit() *queueUnit {
	switch {
	case e.g != nil:
		return &e.g.queueUnit
	case e.w != nil:
		return &e.w.queueUnit
	}
	return nil
}

type entryKind uint8

const (
	entryEvents entryKind = iota
	entryProgress
	entryCreated
	entryCanceled
	entryRejected
	entryCompacted
)

// response makes the pb.WatchResponse of e.
func (e *streamEntry) response() *pb.WatchResponse {
	r := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: e.rev}, WatchId: e.id}
	if len(e.evs) > 0 {
		r.Events = make([]*mvccpb.Event, len(e.evs))
		for i, ev := range e.evs {
			r.Events[i] = ev.Event
		}
	}
	switch e.kind {
	case entryCreated:
		r.Created = true
	case entryCanceled:
		r.Canceled = true
	case entryRejected:
		r.Created, r.Canceled, r.CancelReason = true, true, e.reason
	case entryCompacted:
		r.Canceled, r.CompactRevision = true, e.compat
	}
	return r
}

// NewWatchStream opens a watch stream on the store.
func (s *Store) NewWatchStream(opts *WatchStreamOptions) (*WatchStream, error) {
	opts = opts.Clone() // the caller's options are never changed
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ws := &WatchStream{
		opts:     *opts,
		progress: -1,
		out:      make(chan *pb.WatchResponse),
		enc:      make(chan [][]byte),
		watchers: make(map[int64]*watcher),
		groups:   make(map[groupKey]*watchGroup),
		wake:     make(chan struct{}, 1),
		stopc:    make(chan struct{}),
		donec:    make(chan struct{}),
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	ws.h = h
	h.streams[ws] = struct{}{}
	go ws.run()
	return ws, nil
}

// Chan returns the channel the stream's responses come out of, unless
// the stream was opened with EncodedHeader. It is closed when the stream
// is.
func (ws *WatchStream) Chan() <-chan *pb.WatchResponse { return ws.out }

// Encoded returns the channel the responses of a stream opened with
// EncodedHeader come out of, in batches, encoded; they share memory and
// must not be changed. It is closed when the stream is.
func (ws *WatchStream) Encoded() <-chan [][]byte { return ws.enc }

// Watch creates a watcher from a WatchCreateRequest, with the meaning
// etcd's gRPC layer gives its fields: an empty key is "\x00", a range_end
// of "\x00" means every key from key on, and an empty one the key alone;
// start_revision 0 watches the revisions after the current one; a
// watch_id of 0 (AutoWatchID) lets the stream pick the lowest unused ID.
//
// The created response (header revision: the current revision) is queued
// on the stream before any event of the watcher. A watcher starting at a
// compacted revision is created, then gets a compacted response.
//
// A request etcd refuses gets its refusal queued as etcd's server sends
// it (created and canceled, watch ID -1, the reason) and returns the
// error: a negative start_revision (ErrCompacted), an empty range
// (ErrEmptyWatcherRange) or a watch ID in use (ErrWatcherDuplicateID).
func (ws *WatchStream) Watch(req *pb.WatchCreateRequest) (int64, error) {
	key, end := req.GetKey(), req.GetRangeEnd()
	if len(key) == 0 {
		key = []byte{0}
	}
	switch {
	case len(end) == 0:
		end = nil
	case len(end) == 1 && end[0] == 0:
		end = []byte{}
	}
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed || h.closed {
		return InvalidWatchID, ErrClosed
	}
	var err error
	reason := ""
	id := req.GetWatchId()
	switch {
	case req.GetStartRevision() < 0:
		// etcd's gRPC layer refuses it with its own error text.
		err, reason = ErrCompacted, "etcdserver: "+ErrCompacted.Error()
	case len(end) != 0 && bytes.Compare(key, end) >= 0:
		err = ErrEmptyWatcherRange
	case id == AutoWatchID:
		for ws.watchers[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	case ws.watchers[id] != nil:
		err = ErrWatcherDuplicateID
	}
	if err != nil {
		if reason == "" {
			reason = err.Error()
		}
		ws.rejectLocked(reason)
		return InvalidWatchID, err
	}
	w := &watcher{
		st:             ws,
		id:             id,
		key:            bytes.Clone(key),
		end:            bytes.Clone(end),
		startRev:       req.GetStartRevision(),
		prevKV:         req.GetPrevKv(),
		progressNotify: req.GetProgressNotify(),
		fragment:       req.GetFragment(),
	}
	if end != nil && w.end == nil {
		w.end = []byte{}
	}
	for _, f := range req.GetFilters() {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	ws.watchers[id] = w
	ws.pushLocked(streamEntry{kind: entryCreated, id: id, rev: h.rev})
	h.register(w)
	return id, nil
}

// Reject queues a refused creation, as etcd's server answers a create
// request it does not pass on (a permission denied, for example): created
// and canceled, watch ID -1, the reason, the current revision. It keeps
// the creations' responses in request order, which clients rely on.
func (ws *WatchStream) Reject(reason string) {
	ws.h.mu.Lock()
	defer ws.h.mu.Unlock()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.closed {
		ws.rejectLocked(reason)
	}
}

func (ws *WatchStream) rejectLocked(reason string) {
	ws.pushLocked(streamEntry{kind: entryRejected, id: InvalidWatchID, rev: ws.h.rev, reason: reason})
}

// Cancel removes watcher id: the responses of it still queued are
// dropped and a cancel response is queued. An unknown ID fails with
// ErrWatcherNotExist (etcd's server then answers nothing).
func (ws *WatchStream) Cancel(id int64) error {
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.watchers[id]
	if w == nil || ws.closed {
		return ErrWatcherNotExist
	}
	w.canceled = true
	h.remove(w)
	delete(ws.watchers, id)
	for i := ws.head; i < len(ws.queue); i++ {
		if ws.queue[i].w == w {
			ws.queue[i].dead = true
		}
	}
	ws.pushLocked(streamEntry{kind: entryCanceled, id: id, rev: h.rev})
	return nil
}

// RequestProgress asks for a progress notification, as etcd's
// RequestProgressAll: if every watcher of the stream is synced (and none
// starts after the current revision), a response with watch ID -1 and the
// current revision is queued after every event up to that revision;
// otherwise, or with no watchers (or one cancelled by compaction), nothing
// is sent. A notification still queued is replaced.
func (ws *WatchStream) RequestProgress() {
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed || len(ws.watchers) == 0 {
		return
	}
	for _, w := range ws.watchers {
		if w.state != watcherSynced || h.rev < w.startRev {
			return
		}
	}
	if i := int(ws.progress - ws.base); ws.progress >= 0 && i >= ws.head && i < len(ws.queue) {
		ws.queue[i].dead = true
	}
	ws.progress = ws.base + int64(len(ws.queue))
	ws.pushLocked(streamEntry{kind: entryProgress, id: InvalidWatchID, rev: h.rev})
}

// Close removes every watcher, stops the stream's goroutine and closes
// Chan. Responses not yet received are dropped. Close is idempotent.
func (ws *WatchStream) Close() {
	ws.closeOnce.Do(func() {
		close(ws.stopc)
		<-ws.donec
		h := ws.h
		h.mu.Lock()
		ws.mu.Lock()
		for _, w := range ws.watchers {
			w.canceled = true
			h.remove(w)
		}
		ws.watchers = nil
		clear(ws.queue)
		ws.queue, ws.head, ws.progress = nil, 0, -1
		ws.closed = true
		delete(h.streams, ws)
		ws.mu.Unlock()
		h.mu.Unlock()
		close(ws.out)
		close(ws.enc)
	})
}

// pushLocked queues e. The caller holds mu.
func (ws *WatchStream) pushLocked(e streamEntry) {
	if ws.closed {
		return
	}
	e.seq = ws.seq
	ws.seq++
	ws.queue = append(ws.queue, e)
	ws.wakeUp()
}

// wakeUp wakes the stream's goroutine.
func (ws *WatchStream) wakeUp() {
	select {
	case ws.wake <- struct{}{}:
	default:
	}
}

// chunkEvents and chunkBytes bound a response the stream makes of
// several revisions (catching up, or joining queued events): a quarter
// of the buffer, so that a stream with room takes at least two.
func (ws *WatchStream) chunkEvents() int { return max(1, ws.opts.BufferEvents/4) }

// chunkBytes is larger for a watcher created with fragment: its
// responses are split on the way out, so it gets responses of about two
// fragments, as etcd's (whose catch-up responses hold up to 1000
// revisions). An event's memory is about twice its wire size (its
// encoding and its decoded value).
func (ws *WatchStream) chunkBytes(fragment bool) int {
	n := max(1, ws.opts.BufferBytes/4)
	if fragment && ws.opts.FragmentBytes > 0 {
		n = max(n, 4*ws.opts.FragmentBytes)
	}
	return n
}

// hasRoom reports whether w has room for catching up: half of its buffer
// is free, in events and in bytes.
func (ws *WatchStream) hasRoom(w *watcher) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return !ws.closed && ws.halfFree(&w.queueUnit)
}

// halfFree reports whether half of u's buffer is free. The caller holds
// mu.
func (ws *WatchStream) halfFree(u *queueUnit) bool {
	return u.queued <= ws.opts.BufferEvents/2 && u.queuedBytes <= ws.opts.BufferBytes/2
}

// enqueueEvents queues events of w under header revision rev if they fit
// in w's buffer (or the buffer is empty). The caller holds the hub's mu.
func (ws *WatchStream) enqueueEvents(w *watcher, evs []*event, rev int64) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ok := ws.admitLocked(&w.queueUnit, w, nil, w.fragment, evs, rev)
	ws.wakeUp()
	return ok
}

// enqueueCommit queues the events of a commit (evs, up to revision rev)
// for the groups in ws.touched, an entry each, under one lock, and
// returns overflow with the groups whose events did not fit appended.
// The caller holds the hub's mu.
func (ws *WatchStream) enqueueCommit(evs []*event, rev int64, overflow []*watchGroup) []*watchGroup {
	ws.mu.Lock()
	for _, g := range ws.touched {
		batch := g.batch
		if batch == nil {
			batch = evs[g.from : g.from+g.n : g.from+g.n]
		}
		g.batch, g.from, g.n = nil, 0, 0
		if !ws.admitLocked(&g.queueUnit, nil, g, g.fragment, batch, rev) {
			overflow = append(overflow, g)
		}
	}
	ws.mu.Unlock()
	clear(ws.touched)
	ws.touched = ws.touched[:0]
	ws.wakeUp()
	return overflow
}

// admitLocked queues events of watcher w, or of group g, if they fit in
// the buffer of u, theirs.
//
// While u's last response with events is still waiting, the new events
// join it (up to chunkEvents events in all), and the response moves to
// the end of the queue, where a response of these events would have
// gone: a stream that falls behind sends fewer, larger responses, each of
// whole revisions in order, and header revisions still never go down
// along the stream. It never moves past a notification that covers its
// events: a stream-wide progress notification (ws.progress) or one of a
// watcher (which clears the tail of the watcher and of its group); nor
// does a group's response take events once a watcher joined the group
// after it (it does not go to that watcher). The caller holds mu.
func (ws *WatchStream) admitLocked(u *queueUnit, w *watcher, g *watchGroup, fragment bool, evs []*event, rev int64) bool {
	if ws.closed {
		return true // dropped: the stream is going away
	}
	cost, bytes := len(evs)+1, eventsMem(evs)
	if u.queued > 0 && (u.queued+cost > ws.opts.BufferEvents || u.queuedBytes+bytes > ws.opts.BufferBytes) {
		return false
	}
	id := int64(0)
	if w != nil {
		id = w.id
	}
	if pos := u.tail - 1; pos >= 0 && pos > ws.progress {
		if i := int(pos - ws.base); i >= ws.head && i < len(ws.queue) {
			if old := &ws.queue[i]; old.kind == entryEvents && !old.dead && old.w == w && old.g == g &&
				(g == nil || g.changed <= old.seq) && !(i == ws.head && ws.expand > 0) &&
				len(old.evs)+len(evs) <= ws.chunkEvents() && old.bytes+bytes <= ws.chunkBytes(fragment) {
				merged := old.evs
				if !old.owned {
					merged = append(make([]*event, 0, 2*(len(old.evs)+len(evs))), old.evs...)
				}
				merged = append(merged, evs...)
				u.queued += len(evs)
				u.queuedBytes += bytes
				if i == len(ws.queue)-1 {
					old.evs, old.owned, old.rev = merged, true, rev
					old.cost += len(evs)
					old.bytes += bytes
					return true
				}
				cost, bytes = old.cost+len(evs), old.bytes+bytes
				*old = streamEntry{kind: entryEvents, dead: true} // a moved entry
				ws.moved++
				u.tail = ws.base + int64(len(ws.queue)) + 1
				ws.pushLocked(streamEntry{kind: entryEvents, w: w, g: g, id: id, rev: rev, evs: merged, owned: true, cost: cost, bytes: bytes})
				if ws.moved > 1024 && ws.moved > (len(ws.queue)-ws.head)/2 {
					ws.dropMovedLocked()
				}
				return true
			}
		}
	}
	u.queued += cost
	u.queuedBytes += bytes
	u.tail = ws.base + int64(len(ws.queue)) + 1
	ws.pushLocked(streamEntry{kind: entryEvents, w: w, g: g, id: id, rev: rev, evs: evs, cost: cost, bytes: bytes})
	return true
}

// moved reports whether e is the slot left by a moved entry.
func (e *streamEntry) moved() bool {
	return e.dead && e.kind == entryEvents && e.w == nil && e.g == nil
}

// dropMovedLocked takes the slots left by moved entries out of the queue,
// and renumbers what points into it. The caller holds mu.
func (ws *WatchStream) dropMovedLocked() {
	n := ws.head
	for i := ws.head; i < len(ws.queue); i++ {
		e := ws.queue[i]
		if e.moved() {
			continue
		}
		pos, to := ws.base+int64(i), ws.base+int64(n)
		if pos == ws.progress {
			ws.progress = to
		}
		if u := e.unit(); u != nil && u.tail == pos+1 {
			u.tail = to + 1
		}
		ws.queue[n] = e
		n++
	}
	clear(ws.queue[n:])
	ws.queue = ws.queue[:n]
	ws.moved = 0
}

// enqueueCompacted queues the compacted response of w. The caller holds
// the hub's mu.
func (ws *WatchStream) enqueueCompacted(w *watcher, compactRev int64) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.pushLocked(streamEntry{kind: entryCompacted, id: w.id, compat: compactRev})
}

// popBatch is the most responses the stream's goroutine takes at once,
// and popBytes about the most bytes of events (the first response is
// taken whatever its size): what a stream holds on its way out, a batch
// being sent and the next one, stays small whatever the stream's
// backlog. 32, not 64: with 100k watchers on 1000 streams the member's
// peak live heap was 111-113 MB against 111-139 (median 127), its peak
// RSS 255-270 MiB against 268-320 (median 300); it costs
// BenchmarkWatchFanout 10k watchers on 100 streams 4-15% per put in
// latency mode, and nothing in throughput mode.
const (
	popBatch = 32
	popBytes = 64 << 10
)

// expanding reports whether the entry of g at the head of the queue is
// half handed out. The caller holds mu.
func (ws *WatchStream) expanding(g *watchGroup) bool {
	return ws.expand > 0 && ws.head < len(ws.queue) && ws.queue[ws.head].g == g
}

// expandLocked appends the responses of the group entry e (queue[head])
// for its members to out, from member ws.expand on, within popBatch and
// popBytes, and reports whether every member has its response. The
// caller holds mu.
func (ws *WatchStream) expandLocked(e *streamEntry, out []streamEntry, size *int) ([]streamEntry, bool) {
	members := e.g.members
	for ws.expand < len(members) {
		m := members[ws.expand]
		if m.join > e.seq {
			break // joined after e, as every member after it
		}
		if len(out) >= popBatch || *size >= popBytes {
			return out, false
		}
		ws.expand++
		w := m.w
		if w.canceled {
			continue
		}
		w.sentEvents = true
		out = append(out, streamEntry{kind: entryEvents, w: w, g: e.g, seq: e.seq, id: w.id, rev: e.rev, evs: e.evs})
		*size += e.bytes
	}
	ws.expand = 0
	return out, true
}

// pop appends up to popBatch live responses taken off the queue to out,
// and stops after popBytes of events.
func (ws *WatchStream) pop(out []streamEntry) []streamEntry {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	size := 0
	for ws.head < len(ws.queue) && len(out) < popBatch && size < popBytes {
		if e := &ws.queue[ws.head]; e.g != nil && !e.dead {
			var done bool
			if out, done = ws.expandLocked(e, out, &size); !done {
				break
			}
		}
		if ws.base+int64(ws.head) == ws.progress {
			ws.progress = -1
		}
		e := ws.queue[ws.head]
		ws.queue[ws.head] = streamEntry{}
		ws.head++
		if ws.head == len(ws.queue) {
			ws.base += int64(ws.head)
			ws.queue, ws.head = ws.queue[:0], 0
			if cap(ws.queue) > 4096 {
				ws.queue = nil // a backlog is gone: give its memory back
			}
		} else if ws.head >= 1024 && ws.head > len(ws.queue)/2 {
			n := copy(ws.queue, ws.queue[ws.head:])
			clear(ws.queue[n:])
			ws.base += int64(ws.head)
			ws.queue, ws.head = ws.queue[:n], 0
		}
		if u := e.unit(); u != nil {
			wasFull := !ws.halfFree(u)
			u.queued -= e.cost
			u.queuedBytes -= e.bytes
			if e.g == nil && ((wasFull && ws.halfFree(u)) || (e.cost > 0 && u.queued == 0)) {
				ws.h.nudge() // it may be waiting to catch up
			}
		}
		if g := e.g; g != nil {
			if g.dead > len(g.members)/2 && !g.dissolved {
				g.compact()
			}
			continue
		}
		if w := e.w; w != nil {
			if e.kind == entryProgress {
				w.progressPending = false
			}
			if len(e.evs) > 0 {
				w.sentEvents = true
			}
		}
		if e.moved() {
			ws.moved--
		}
		if !e.dead {
			out = append(out, e)
			size += e.bytes
		}
	}
	return out
}

// run feeds Chan from the queue.
func (ws *WatchStream) run() {
	defer close(ws.donec)
	var tick <-chan time.Time
	batch := make([]streamEntry, 0, popBatch)
	if d := ws.opts.ProgressNotifyInterval; d > 0 {
		t := time.NewTicker(d + rand.N(d/10+1))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			ws.progressTick()
		default:
		}
		batch = ws.pop(batch[:0])
		if len(batch) == 0 {
			select {
			case <-ws.wake:
			case <-tick:
				ws.progressTick()
			case <-ws.stopc:
				return
			}
			continue
		}
		if hdr := ws.opts.EncodedHeader; hdr != nil {
			select {
			case ws.enc <- ws.encodeBatch(batch, hdr()):
			case <-ws.stopc:
				return
			}
		} else {
			for i := range batch {
				for _, resp := range ws.finish(&batch[i]) {
					select {
					case ws.out <- resp:
					case <-ws.stopc:
						return
					}
				}
			}
		}
		clear(batch)
	}
}

// progressTick queues the periodic progress notifications: one for each
// synced watcher with progress_notify that got no events since the last
// tick, as etcd's server does.
func (ws *WatchStream) progressTick() {
	h := ws.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, w := range ws.watchers {
		if !w.progressNotify {
			continue
		}
		sent := w.sentEvents
		w.sentEvents = false
		if sent || w.progressPending || w.state != watcherSynced || h.rev < w.startRev {
			continue
		}
		w.progressPending = true
		w.tail = 0 // later events come after the notification
		if w.g != nil {
			w.g.tail = 0
		}
		ws.pushLocked(streamEntry{kind: entryProgress, w: w, id: w.id, rev: h.rev})
	}
}

// finish completes a response on its way out: the previous values of a
// prev_kv watcher, read at each event's revision - 1 (left out when
// compacted, as etcd does), and fragments.
func (ws *WatchStream) finish(e *streamEntry) []*pb.WatchResponse {
	resp, w := e.response(), e.w
	if w == nil || len(resp.Events) == 0 {
		return []*pb.WatchResponse{resp}
	}
	if w.prevKV {
		if c := &ws.prev; e.g != nil && c.g == e.g && c.seq == e.seq && c.n == len(e.evs) {
			resp.Events = c.evs // the previous member's, of the same entry
		} else {
			resp.Events = ws.withPrevKV(resp.Events)
			if e.g != nil {
				c.g, c.seq, c.n, c.evs = e.g, e.seq, len(e.evs), resp.Events
			}
		}
	}
	if w.fragment && ws.opts.FragmentBytes > 0 {
		return fragment(resp, ws.opts.FragmentBytes)
	}
	return []*pb.WatchResponse{resp}
}

func (ws *WatchStream) withPrevKV(evs []*mvccpb.Event) []*mvccpb.Event {
	v, err := ws.h.s.View()
	if err != nil {
		return evs
	}
	defer v.Close()
	out := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		out[i] = ev
		rev := ev.Kv.ModRevision - 1
		if (ev.Type == mvccpb.Event_PUT && ev.Kv.CreateRevision == ev.Kv.ModRevision) || rev < 1 {
			continue // a creation: nothing before it
		}
		r, err := v.Range(context.Background(), &pb.RangeRequest{Key: ev.Kv.Key, Revision: rev})
		if err == nil && len(r.Kvs) > 0 {
			out[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv, PrevKv: r.Kvs[0]}
		}
	}
	return out
}

// fragment splits resp as etcd's server does (sendFragments): when it is
// at least max bytes and holds two events or more, into responses of
// events whose encoding stays below max (at least one event each), all
// with Fragment set but the last.
func fragment(resp *pb.WatchResponse, max int) []*pb.WatchResponse {
	if len(resp.Events) < 2 || proto.Size(resp) < max {
		return []*pb.WatchResponse{resp}
	}
	newFrag := func() *pb.WatchResponse {
		return &pb.WatchResponse{
			Header: &pb.ResponseHeader{Revision: resp.Header.GetRevision()}, WatchId: resp.WatchId,
			Created: resp.Created, Canceled: resp.Canceled, CompactRevision: resp.CompactRevision,
			CancelReason: resp.CancelReason, Fragment: true,
		}
	}
	base := proto.Size(newFrag())
	var out []*pb.WatchResponse
	evs := resp.Events
	for len(evs) > 0 {
		cur := newFrag()
		size := base
		n := 0
		for n < len(evs) {
			s := proto.Size(evs[n])
			size += 1 + protowire.SizeVarint(uint64(s)) + s
			if n > 0 && size >= max {
				break
			}
			n++
		}
		cur.Events = evs[:n:n]
		evs = evs[n:]
		out = append(out, cur)
	}
	out[len(out)-1].Fragment = false
	return out
}
