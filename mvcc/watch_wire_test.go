package mvcc

import (
	"bytes"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

var testWireHeader = WireHeader{ClusterID: 0xc1c1c1c1c1, MemberID: 77, RaftTerm: 3}

// streamResponses yields the responses of ws, from Chan or, for a stream
// opened with EncodedHeader, decoded from Encoded (whose headers must be
// testWireHeader's).
func streamResponses(t testing.TB, ws *WatchStream) iter.Seq[*pb.WatchResponse] {
	return func(yield func(*pb.WatchResponse) bool) {
		if ws.opts.EncodedHeader == nil {
			for r := range ws.Chan() {
				if !yield(r) {
					return
				}
			}
			return
		}
		for batch := range ws.Encoded() {
			for _, b := range batch {
				r := &pb.WatchResponse{}
				if err := proto.Unmarshal(b, r); err != nil {
					t.Errorf("decoding an encoded response: %v", err)
					return
				}
				h := r.GetHeader()
				if h.GetClusterId() != testWireHeader.ClusterID || h.GetMemberId() != testWireHeader.MemberID || h.GetRaftTerm() != testWireHeader.RaftTerm {
					t.Errorf("encoded response header %v, want %+v", h, testWireHeader)
				}
				h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
				if !yield(r) {
					return
				}
			}
		}
	}
}

// TestWatchWireEncoding checks that an encoded response is, byte for byte,
// what proto.Marshal makes of the response with its header filled in.
func TestWatchWireEncoding(t *testing.T) {
	put := &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("v1"), CreateRevision: 2, ModRevision: 5, Version: 3, Lease: 9}}
	del := &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte("b"), ModRevision: 6}}
	empty := &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("c"), CreateRevision: 7, ModRevision: 7, Version: 1}}
	big := &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: bytes.Repeat([]byte("k"), 300), Value: bytes.Repeat([]byte("v"), 70000), CreateRevision: 1 << 40, ModRevision: 1 << 40, Version: 1}}
	evs := []*event{{Event: put}, {Event: del}, {Event: empty}, {Event: big}}
	encodeEvents(evs)
	w := &watcher{}
	for _, tc := range []struct {
		name string
		e    streamEntry
		hdr  WireHeader
	}{
		{"events", streamEntry{kind: entryEvents, w: w, id: 3, rev: 6, evs: evs[:2]}, testWireHeader},
		{"one event, watch 0", streamEntry{kind: entryEvents, w: w, id: 0, rev: 7, evs: evs[2:3]}, testWireHeader},
		{"big event", streamEntry{kind: entryEvents, w: w, id: 1 << 33, rev: 1 << 40, evs: evs[3:]}, testWireHeader},
		{"zero header", streamEntry{kind: entryEvents, w: w, id: 1, rev: 6, evs: evs}, WireHeader{}},
		{"created", streamEntry{kind: entryCreated, id: 4, rev: 9}, testWireHeader},
		{"created at 0", streamEntry{kind: entryCreated, id: 0, rev: 0}, testWireHeader},
		{"canceled", streamEntry{kind: entryCanceled, id: 4, rev: 9}, testWireHeader},
		{"rejected", streamEntry{kind: entryRejected, id: InvalidWatchID, rev: 9, reason: ErrWatcherDuplicateID.Error()}, testWireHeader},
		{"rejected, no reason", streamEntry{kind: entryRejected, id: InvalidWatchID, rev: 9}, testWireHeader},
		{"compacted", streamEntry{kind: entryCompacted, id: 5, compat: 40}, testWireHeader},
		{"stream progress", streamEntry{kind: entryProgress, id: InvalidWatchID, rev: 12}, testWireHeader},
		{"watcher progress", streamEntry{kind: entryProgress, w: w, id: 2, rev: 12}, testWireHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := appendEntry([]byte("prefix"), tc.hdr, &tc.e)
			if !ok {
				t.Fatal("appendEntry did not encode it")
			}
			resp := tc.e.response()
			resp.Header.ClusterId, resp.Header.MemberId, resp.Header.RaftTerm = tc.hdr.ClusterID, tc.hdr.MemberID, tc.hdr.RaftTerm
			want, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Fatalf("encoded\n%x\nwant\n%x", got[6:], want)
			}
			ws := &WatchStream{}
			batch := ws.encodeBatch([]streamEntry{tc.e, tc.e}, tc.hdr)
			if len(batch) != 2 || !bytes.Equal(batch[0], want) || !bytes.Equal(batch[1], want) {
				t.Fatalf("encodeBatch gave %x, want twice %x", batch, want)
			}
		})
	}
}

// TestWatchStreamJoinsQueuedEvents checks that the events of a watcher
// whose last response is still queued join it, move with it to the end of
// the queue, and never move past a progress notification.
func TestWatchStreamJoinsQueuedEvents(t *testing.T) {
	s, _ := newTestStore(t, testEngines(t)[0], nil)
	ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// Nothing reads yet: the stream's goroutine holds the first response
	// and the others stay queued.
	a, _ := ws.Watch(&pb.WatchCreateRequest{Key: []byte("k")})
	// The goroutine pops a batch of responses at once: let it take the
	// created response alone before anything else is queued, so that it
	// holds exactly one response while the others stay queued.
	for deadline := time.Now().Add(10 * time.Second); ; {
		ws.mu.Lock()
		empty := ws.head == len(ws.queue)
		ws.mu.Unlock()
		if empty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream's goroutine never took the created response")
		}
		time.Sleep(time.Millisecond)
	}
	r1 := mustPut(t, s, "k", "1")
	r2 := mustPut(t, s, "k", "2")
	// Another group (a filter): a watcher joining a's group would stop
	// a's queued response from taking later events, which it does not
	// get.
	b, _ := ws.Watch(&pb.WatchCreateRequest{Key: []byte("k"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}})
	r3 := mustPut(t, s, "k", "3")
	ws.RequestProgress()
	r4 := mustPut(t, s, "k", "4")
	ws.mu.Lock()
	queued := 0
	for _, e := range ws.queue[ws.head:] {
		switch {
		case e.dead:
		case e.g != nil: // a response for each member
			for _, m := range e.g.members {
				if m.join <= e.seq && !m.w.canceled {
					queued++
				}
			}
		default:
			queued++
		}
	}
	ws.mu.Unlock()
	var rs []*pb.WatchResponse
	for len(rs) < queued+1 {
		select {
		case r := <-ws.Chan():
			rs = append(rs, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out; got\n%s", showResps(rs))
		}
	}
	select {
	case r := <-ws.Chan():
		rs = append(rs, r)
		t.Fatalf("one response too many\n%s", showResps(rs))
	case <-time.After(50 * time.Millisecond):
	}
	checkStream(t, rs)
	revs := func(id int64) (out [][]int64) {
		for _, r := range rs {
			if r.WatchId == id && len(r.Events) > 0 {
				var rr []int64
				for _, ev := range r.Events {
					rr = append(rr, ev.Kv.ModRevision)
				}
				out = append(out, rr)
			}
		}
		return out
	}
	if got, want := revs(a), [][]int64{{r1, r2, r3}, {r4}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("watch %d got responses of revisions %v, want %v\n%s", a, got, want, showResps(rs))
	}
	if got, want := revs(b), [][]int64{{r3}, {r4}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("watch %d got responses of revisions %v, want %v\n%s", b, got, want, showResps(rs))
	}
}

// TestWatchLaggingMemory measures the memory a watcher that reads nothing
// holds while writes go on: its stream's queue is bounded by BufferEvents
// per watcher, whatever the number of writes, and the writer is never
// held up.
func TestWatchLaggingMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's memory makes the measure meaningless")
	}
	const watchers, streams, puts, buffer = 400, 4, 6000, 1024
	// A small ring: the events it holds are the store's, not the
	// watchers'.
	s, _ := newTestStore(t, testEngines(t)[0], smallWatchHub(nil, 64, 0, 0))
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wss []*WatchStream
	for range streams {
		ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1, BufferEvents: buffer})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		wss = append(wss, ws)
	}
	for i := range watchers {
		if _, err := wss[i%streams].Watch(&pb.WatchCreateRequest{Key: []byte("k/"), RangeEnd: []byte("k0")}); err != nil {
			t.Fatal(err)
		}
	}
	value := bytes.Repeat([]byte("v"), 256)
	start := time.Now()
	for i := range puts {
		if _, err := s.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "k/%d", i%100), Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	perWatcher := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / watchers
	t.Logf("%d puts in %v; %d watchers reading nothing hold %d B each (BufferEvents %d)", puts, took, watchers, perWatcher, buffer)
	// Each holds at most buffer event pointers, its responses and its
	// share of the events (shared by all watchers).
	if limit := int64(buffer * 16); perWatcher > limit {
		t.Errorf("a lagging watcher holds %d B, want at most %d", perWatcher, limit)
	}
	h := s.hub
	h.mu.Lock()
	unsynced := h.unsynced.size()
	h.mu.Unlock()
	if unsynced != watchers {
		t.Errorf("%d watchers unsynced, want all %d", unsynced, watchers)
	}
}

// TestWatchLaggingMemoryBytes is the same with large values: a watcher
// that reads nothing holds at most BufferBytes of events (plus the
// revision that did not fit), whatever their number, so the store's heap
// stays bounded however many large values are written past it.
func TestWatchLaggingMemoryBytes(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's memory makes the measure meaningless")
	}
	const watchers, puts, valueSize, buffer = 10, 400, 64 << 10, 1 << 20
	o := smallWatchHub(nil, 64, 0, 0)
	o.watch.ringMaxBytes = 1 << 20
	s, _ := newTestStore(t, testEngines(t)[0], o)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1, BufferBytes: buffer})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for range watchers {
		// Each with prev_kv, as the apiserver's.
		if _, err := ws.Watch(&pb.WatchCreateRequest{Key: []byte("k/"), RangeEnd: []byte("k0"), PrevKv: true}); err != nil {
			t.Fatal(err)
		}
	}
	value := bytes.Repeat([]byte("v"), valueSize)
	peak := int64(0)
	for i := range puts {
		if _, err := s.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "k/%d", i%50), Value: value}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			var m runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m)
			peak = max(peak, int64(m.HeapAlloc)-int64(before.HeapAlloc))
		}
	}
	ws.mu.Lock()
	for _, w := range ws.watchers {
		if w.queuedBytes > buffer+valueSize*4 {
			t.Errorf("watch %d holds %d B of events, want at most %d", w.id, w.queuedBytes, buffer+valueSize*4)
		}
	}
	ws.mu.Unlock()
	t.Logf("%d puts of %d KiB under %d watchers reading nothing: heap growth at most %d KiB (BufferBytes %d KiB)",
		puts, valueSize>>10, watchers, peak>>10, buffer>>10)
	// The queued events (shared by the watchers: about BufferBytes), the
	// ring (1 MiB), the response on its way out and the engine's caches;
	// the values written are 25 MiB, twice that as events (about 57 MiB
	// held when the buffer is bounded in events only).
	if limit := int64(16 << 20); peak > limit {
		t.Errorf("heap grew by %d MiB, want at most %d MiB", peak>>20, limit>>20)
	}
}

// TestWatchStreamMovesMany moves many responses to the end of a queue
// nobody reads, so that the slots they leave are taken out, with
// progress requests in between, and checks what comes out.
func TestWatchStreamMovesMany(t *testing.T) {
	const watchers, puts = 40, 150
	s, _ := newTestStore(t, testEngines(t)[0], nil)
	ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for range watchers {
		if _, err := ws.Watch(&pb.WatchCreateRequest{Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
	}
	first := s.Rev() + 1
	for i := range puts {
		mustPut(t, s, "k", "v")
		if i%37 == 0 {
			ws.RequestProgress()
		}
	}
	var rs []*pb.WatchResponse
	got := map[int64]int{}
	total := 0
	for total < watchers*puts {
		select {
		case r := <-ws.Chan():
			rs = append(rs, r)
			for _, ev := range r.Events {
				if want := first + int64(got[r.WatchId]); ev.Kv.ModRevision != want {
					t.Fatalf("watch %d: event at %d, want %d", r.WatchId, ev.Kv.ModRevision, want)
				}
				got[r.WatchId]++
				total++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out with %d events of %d", total, watchers*puts)
		}
	}
	checkStream(t, rs)
	if len(rs) >= watchers*puts/2 {
		t.Errorf("%d responses for %d events: the queued ones were not joined", len(rs), watchers*puts)
	}
}

// TestWatchGroupSharesEntries checks that the watchers of a stream on the
// same range share one queued entry per commit, that a watcher joining
// the group gets none of the events queued before it, and that a
// cancelled one gets none after its cancellation.
func TestWatchGroupSharesEntries(t *testing.T) {
	s, _ := newTestStore(t, testEngines(t)[0], nil)
	ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var ids []int64
	for range 3 {
		id, _ := ws.Watch(&pb.WatchCreateRequest{Key: []byte("k")})
		ids = append(ids, id)
	}
	r1 := mustPut(t, s, "k", "1")
	late, _ := ws.Watch(&pb.WatchCreateRequest{Key: []byte("k")})
	r2 := mustPut(t, s, "k", "2")
	if err := ws.Cancel(ids[0]); err != nil {
		t.Fatal(err)
	}
	r3 := mustPut(t, s, "k", "3")
	ws.mu.Lock()
	groups, entries := len(ws.groups), 0
	for _, e := range ws.queue[ws.head:] {
		if e.g != nil && !e.dead {
			entries++
		}
	}
	ws.mu.Unlock()
	if groups != 1 {
		t.Errorf("%d groups, want 1", groups)
	}
	got := map[int64][]int64{}
	for done := false; !done; {
		select {
		case r := <-ws.Chan():
			for _, ev := range r.Events {
				got[r.WatchId] = append(got[r.WatchId], ev.Kv.ModRevision)
			}
		case <-time.After(300 * time.Millisecond):
			done = true
		}
	}
	want := map[int64][]int64{ids[1]: {r1, r2, r3}, ids[2]: {r1, r2, r3}, late: {r2, r3}}
	for id, revs := range want {
		if !slices.Equal(got[id], revs) {
			t.Errorf("watch %d got revisions %v, want %v", id, got[id], revs)
		}
	}
	// The cancelled watcher's queued responses are dropped; it never
	// gets r3.
	if c := got[ids[0]]; len(c) > 2 || !slices.Equal(c, []int64{r1, r2}[:len(c)]) {
		t.Errorf("cancelled watch %d got revisions %v, want a prefix of %v", ids[0], c, []int64{r1, r2})
	}
	t.Logf("%d group entries queued for 3 commits", entries)
}
