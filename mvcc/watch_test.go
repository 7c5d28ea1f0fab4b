package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/engine"
)

// collector reads a WatchStream's responses in the background.
type collector struct {
	t     testing.TB
	ws    *WatchStream
	mu    sync.Mutex
	resps []*pb.WatchResponse
	cond  *sync.Cond
	done  chan struct{}
}

func newCollector(t testing.TB, ws *WatchStream) *collector {
	c := &collector{t: t, ws: ws, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		defer close(c.done)
		for r := range ws.Chan() {
			c.mu.Lock()
			c.resps = append(c.resps, r)
			c.cond.Broadcast()
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ws.Close(); <-c.done })
	return c
}

// waitFor waits until f holds on the responses so far.
func (c *collector) waitFor(what string, f func(rs []*pb.WatchResponse) bool) []*pb.WatchResponse {
	c.t.Helper()
	rs, ok := c.waitUntil(20*time.Second, f)
	if !ok {
		c.t.Fatalf("timed out waiting for %s; got:\n%s", what, showResps(rs))
	}
	return rs
}

// waitUntil waits up to d until f holds on the responses so far.
func (c *collector) waitUntil(d time.Duration, f func(rs []*pb.WatchResponse) bool) ([]*pb.WatchResponse, bool) {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !f(c.resps) {
		if !time.Now().Before(deadline) {
			return slices.Clone(c.resps), false
		}
		c.cond.Wait()
	}
	return slices.Clone(c.resps), true
}

func (c *collector) snapshot() []*pb.WatchResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.resps)
}

// events returns the events received for watch id, in order.
func eventsOf(rs []*pb.WatchResponse, id int64) []*mvccpb.Event {
	var evs []*mvccpb.Event
	for _, r := range rs {
		if r.WatchId == id {
			evs = append(evs, r.Events...)
		}
	}
	return evs
}

// showEvent is a short form of an event: "PUT k=v@mod.create v ver [prev]".
func showEvent(ev *mvccpb.Event) string {
	s := fmt.Sprintf("%s %s=%s@%d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
	if ev.Type == mvccpb.Event_PUT {
		s += fmt.Sprintf(" c%d v%d", ev.Kv.CreateRevision, ev.Kv.Version)
		if ev.Kv.Lease != 0 {
			s += fmt.Sprintf(" l%d", ev.Kv.Lease)
		}
	}
	if ev.PrevKv != nil {
		s += fmt.Sprintf(" prev=%s@%d", ev.PrevKv.Value, ev.PrevKv.ModRevision)
	}
	return s
}

func showEvents(evs []*mvccpb.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = showEvent(ev)
	}
	return out
}

func showResp(r *pb.WatchResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id=%d rev=%d", r.WatchId, r.Header.GetRevision())
	if r.Created {
		b.WriteString(" created")
	}
	if r.Canceled {
		b.WriteString(" canceled")
	}
	if r.CompactRevision != 0 {
		fmt.Fprintf(&b, " compact=%d", r.CompactRevision)
	}
	if r.CancelReason != "" {
		fmt.Fprintf(&b, " reason=%q", r.CancelReason)
	}
	if r.Fragment {
		b.WriteString(" fragment")
	}
	if len(r.Events) > 0 {
		fmt.Fprintf(&b, " %q", showEvents(r.Events))
	}
	return b.String()
}

func showResps(rs []*pb.WatchResponse) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(showResp(r))
		b.WriteByte('\n')
	}
	return b.String()
}

func newStream(t testing.TB, s *Store, opts *WatchStreamOptions) *WatchStream {
	t.Helper()
	ws, err := s.NewWatchStream(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Close)
	return ws
}

func mustWatch(t testing.TB, ws *WatchStream, req *pb.WatchCreateRequest) int64 {
	t.Helper()
	id, err := ws.Watch(req)
	if err != nil {
		t.Fatalf("watch %v: %v", req, err)
	}
	return id
}

func watchReq(key, end string, startRev int64) *pb.WatchCreateRequest {
	r := &pb.WatchCreateRequest{Key: []byte(key), StartRevision: startRev}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return r
}

func TestWatchSmoke(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustPut(t, s, "a", "1") // 2
		ws := newStream(t, s, nil)
		c := newCollector(t, ws)
		live := mustWatch(t, ws, watchReq("a", "", 0))
		hist := mustWatch(t, ws, watchReq("a", "", 2))
		mustPut(t, s, "a", "2") // 3
		if _, err := s.DeleteRange(delReq("a", "")); err != nil {
			t.Fatal(err)
		}
		rs := c.waitFor("events", func(rs []*pb.WatchResponse) bool {
			return len(eventsOf(rs, live)) == 2 && len(eventsOf(rs, hist)) == 3
		})
		if got, want := showEvents(eventsOf(rs, live)), []string{"PUT a=2@3 c2 v2", "DELETE a=@4"}; !slices.Equal(got, want) {
			t.Fatalf("live: %q, want %q", got, want)
		}
		if got, want := showEvents(eventsOf(rs, hist)), []string{"PUT a=1@2 c2 v1", "PUT a=2@3 c2 v2", "DELETE a=@4"}; !slices.Equal(got, want) {
			t.Fatalf("hist: %q, want %q\n%s", got, want, showResps(rs))
		}
	})
}

// storedEvents reads the revision area as watch events, in revision
// order: the reference the watch tests compare with.
func storedEvents(t testing.TB, be engine.Backend, from int64, match func(key []byte) bool) []*mvccpb.Event {
	t.Helper()
	snap, err := be.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: revKey(revision{main: from}, false), UpperBound: revAreaUpper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var evs []*mvccpb.Event
	for ok := it.First(); ok; ok = it.Next() {
		rev, tomb, err := parseRevKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		ev := &mvccpb.Event{Kv: &mvccpb.KeyValue{}}
		if err := decodeKV(bytes.Clone(it.Value()), ev.Kv); err != nil {
			t.Fatal(err)
		}
		if tomb {
			ev.Type = mvccpb.Event_DELETE
			ev.Kv.ModRevision = rev.main
		}
		if match == nil || match(ev.Kv.Key) {
			evs = append(evs, ev)
		}
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// checkStream checks the invariants of a stream's responses: header
// revisions never go back (but for compacted responses, whose header
// revision is 0 as etcd's), no revision of a watcher is split across
// responses (fragments aside), a watcher's events are in revision order
// and come after its created response and before its cancel.
func checkStream(t testing.TB, rs []*pb.WatchResponse) {
	t.Helper()
	var lastHeader int64
	lastRev := map[int64]int64{}
	created := map[int64]bool{}
	canceled := map[int64]bool{}
	fragmented := false
	// The revision of each watcher's last progress notification (its own
	// or the stream's): no event of it may follow at or below it.
	watchProgress := map[int64]int64{}
	for i, r := range rs {
		if r.CompactRevision == 0 {
			if r.Header.GetRevision() < lastHeader {
				t.Fatalf("response %d: header revision %d after %d\n%s", i, r.Header.GetRevision(), lastHeader, showResps(rs))
			}
			lastHeader = r.Header.GetRevision()
		}
		progress := !r.Created && !r.Canceled && len(r.Events) == 0 && !r.Fragment
		if r.WatchId == InvalidWatchID {
			if progress {
				for id := range created {
					watchProgress[id] = r.Header.GetRevision()
				}
			}
			continue
		}
		if progress {
			watchProgress[r.WatchId] = r.Header.GetRevision()
		}
		if r.Created {
			created[r.WatchId] = true
			delete(canceled, r.WatchId) // a new watcher with the ID of a cancelled one
			delete(watchProgress, r.WatchId)
			delete(lastRev, r.WatchId)
		}
		if len(r.Events) > 0 && (!created[r.WatchId] || canceled[r.WatchId]) {
			t.Fatalf("response %d: events of watch %d outside its life\n%s", i, r.WatchId, showResps(rs))
		}
		for j, ev := range r.Events {
			rev := ev.Kv.ModRevision
			last := lastRev[r.WatchId]
			if rev < last || (rev == last && j == 0 && !fragmented) {
				t.Fatalf("response %d: watch %d revision %d after %d (split or out of order)\n%s", i, r.WatchId, rev, last, showResps(rs))
			}
			if p, ok := watchProgress[r.WatchId]; ok && rev <= p {
				t.Fatalf("response %d: watch %d event at %d after a progress notification at %d\n%s", i, r.WatchId, rev, p, showResps(rs))
			}
			if rev > r.Header.GetRevision() {
				t.Fatalf("response %d: event at %d above the header revision", i, rev)
			}
			lastRev[r.WatchId] = rev
		}
		fragmented = r.Fragment
		if r.Canceled {
			canceled[r.WatchId] = true
		}
	}
}

// smallWatchHub returns o (testOptions when nil) with the hub bounds made
// small, so that tests reach the ring's and the scan's limits.
func smallWatchHub(o *Options, ringEvents, scan int, interval time.Duration) *Options {
	if o == nil {
		o = testOptions()
	}
	o.watch = watchLimits{ringMaxEvents: ringEvents, maxSyncScan: scan, syncInterval: interval}
	return o
}

func eventsEqual(a, b []*mvccpb.Event) bool {
	return slices.EqualFunc(a, b, func(x, y *mvccpb.Event) bool { return proto.Equal(x, y) })
}

// watchHistory writes the history of the watch tables:
//
//	2 put a=1          5 txn put a=2, c=1     8 put zz=1
//	3 put ab=1         6 delete [a, b)
//	4 put b=1          7 put a=3 (lease 9)
func watchHistory(t *testing.T, s *Store) {
	t.Helper()
	mustGrant(t, s, 9, 100)
	mustPut(t, s, "a", "1")
	mustPut(t, s, "ab", "1")
	mustPut(t, s, "b", "1")
	if _, err := s.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "2"), opPut("c", "1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteRange(delReq("a", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("3"), Lease: 9}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "zz", "1")
}

func TestWatchTable(t *testing.T) {
	all := []string{
		"PUT a=1@2 c2 v1", "PUT ab=1@3 c3 v1", "PUT b=1@4 c4 v1", "PUT a=2@5 c2 v2", "PUT c=1@5 c5 v1",
		"DELETE a=@6", "DELETE ab=@6", "PUT a=3@7 c7 v1 l9", "PUT zz=1@8 c8 v1",
	}
	pick := func(idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, all[i])
		}
		return out
	}
	cases := []struct {
		name string
		req  *pb.WatchCreateRequest
		want []string
	}{
		{"key", watchReq("a", "", 2), pick(0, 3, 5, 7)},
		{"prefix", watchReq("a", "b", 2), pick(0, 1, 3, 5, 6, 7)},
		{"from key", watchReq("b", "\x00", 2), pick(2, 4, 8)},
		{"everything", watchReq("\x00", "\x00", 1), all},
		{"empty key is \\x00", watchReq("", "\x00", 1), all},
		{"empty key alone", watchReq("", "", 1), nil},
		{"from revision 5", watchReq("\x00", "\x00", 5), all[3:]},
		{"from the last revision", watchReq("\x00", "\x00", 8), all[8:]},
		{"future", watchReq("\x00", "\x00", 9), nil},
		{"missing key", watchReq("x", "", 1), nil},
		{"range end is exclusive", watchReq("ab", "b", 1), pick(1, 6)},
		{"noput", &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b"), StartRevision: 2,
			Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}}, pick(5, 6)},
		{"nodelete", &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b"), StartRevision: 2,
			Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}}, pick(0, 1, 3, 7)},
		{"both filters", &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 2,
			Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE, pb.WatchCreateRequest_NOPUT}}, nil},
		{"prev_kv", &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b"), StartRevision: 2, PrevKv: true}, []string{
			"PUT a=1@2 c2 v1", "PUT ab=1@3 c3 v1", "PUT a=2@5 c2 v2 prev=1@2",
			"DELETE a=@6 prev=2@5", "DELETE ab=@6 prev=1@3", "PUT a=3@7 c7 v1 l9"}},
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		// Historical: the watchers start after the history.
		t.Run("historical", func(t *testing.T) {
			s, _ := newTestStore(t, e, nil)
			watchHistory(t, s)
			for _, tc := range cases {
				ws := newStream(t, s, nil)
				c := newCollector(t, ws)
				id := mustWatch(t, ws, tc.req)
				rs := waitDone(t, s, ws, c, tc.req)
				checkStream(t, rs)
				if got := showEvents(eventsOf(rs, id)); !slices.Equal(got, tc.want) {
					t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
				}
			}
		})
		// Live: the watchers start before the history, from revision 0
		// (the cases with a start revision start there instead).
		t.Run("live", func(t *testing.T) {
			s, _ := newTestStore(t, e, nil)
			type live struct {
				ws *WatchStream
				c  *collector
				id int64
			}
			var ls []live
			for _, tc := range cases {
				req := proto.Clone(tc.req).(*pb.WatchCreateRequest)
				if req.StartRevision <= 2 {
					req.StartRevision = 0
				}
				ws := newStream(t, s, nil)
				c := newCollector(t, ws)
				ls = append(ls, live{ws, c, mustWatch(t, ws, req)})
			}
			watchHistory(t, s)
			for i, tc := range cases {
				rs := waitDone(t, s, ls[i].ws, ls[i].c, tc.req)
				checkStream(t, rs)
				if got := showEvents(eventsOf(rs, ls[i].id)); !slices.Equal(got, tc.want) {
					t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
				}
			}
		})
	})
}

// waitDone waits until the stream has sent every event up to the current
// revision; a watcher starting in the future gets no progress response,
// so for it the wait is a short sleep.
func waitDone(t testing.TB, s *Store, ws *WatchStream, c *collector, req *pb.WatchCreateRequest) []*pb.WatchResponse {
	t.Helper()
	if req.StartRevision > s.Rev() {
		time.Sleep(50 * time.Millisecond)
		return c.snapshot()
	}
	return waitSynced(t, ws, c)
}

// waitSynced requests progress until the stream answers, which it does
// once every watcher is synced (none may start in the future or be
// compacted), and returns the responses up to the answer: every event up
// to the current revision.
func waitSynced(t testing.TB, ws *WatchStream, c *collector) []*pb.WatchResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := len(c.snapshot())
		ws.RequestProgress()
		rs, ok := c.waitUntil(20*time.Millisecond, func(rs []*pb.WatchResponse) bool {
			for _, r := range rs[n:] {
				if r.WatchId == InvalidWatchID && !r.Created {
					return true
				}
			}
			return false
		})
		if ok {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream never synced:\n%s", showResps(rs))
		}
	}
}

// loadWriter commits n revisions in random batches (puts, deletes of a
// prefix, txns writing several keys) and returns when done.
func loadWriter(t testing.TB, s *Store, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for s.Rev() < int64(n) {
		w, err := s.NewWriteBatch()
		if err != nil {
			t.Error(err)
			return
		}
		for range 1 + rng.IntN(6) {
			k := fmt.Sprintf("k%d/%02d", rng.IntN(4), rng.IntN(30))
			var err error
			switch r := rng.IntN(10); {
			case r < 6:
				_, err = w.Put(putReq(k, fmt.Sprint(rng.IntN(1000))))
			case r < 7:
				p := fmt.Sprintf("k%d/%d", rng.IntN(4), rng.IntN(3))
				_, err = w.DeleteRange(delReq(p, string(prefixEnd([]byte(p)))))
			default:
				var ops []*pb.RequestOp
				for j := range 2 + rng.IntN(5) {
					ops = append(ops, opPut(fmt.Sprintf("k%d/t%d", rng.IntN(4), j), "t"))
				}
				_, err = w.Txn(&pb.TxnRequest{Success: ops})
			}
			if err != nil {
				t.Error(err)
				w.Abort()
				return
			}
		}
		if err := w.Commit(0); err != nil {
			t.Error(err)
			return
		}
	}
}

func prefixMatch(p string) func([]byte) bool {
	return func(k []byte) bool { return bytes.HasPrefix(k, []byte(p)) }
}

// TestWatchUnderLoad creates watchers while a writer commits, from the
// first revision, from revisions behind the ring, and from now, on small
// rings, scans and buffers so that every path is taken (store catch-up
// in several passes, ring catch-up, falling behind), and checks that each
// watcher gets exactly the stored events, in order, whole revisions at a
// time.
func TestWatchUnderLoad(t *testing.T) {
	n := 3000
	if testing.Short() || raceEnabled {
		n = 800
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, be := newTestStore(t, e, smallWatchHub(nil, 64, 100, 20*time.Millisecond))
		type wt struct {
			ws    *WatchStream
			c     *collector
			id    int64
			from  int64
			match func([]byte) bool
		}
		var wts []wt
		add := func(buffer int, req *pb.WatchCreateRequest, match func([]byte) bool) {
			ws := newStream(t, s, &WatchStreamOptions{BufferEvents: buffer})
			c := newCollector(t, ws)
			id := mustWatch(t, ws, req)
			from := req.StartRevision
			if from == 0 {
				// From the revision after the one the created response
				// names.
				rs := c.waitFor("created", func(rs []*pb.WatchResponse) bool { return len(rs) > 0 })
				from = rs[0].Header.Revision + 1
			}
			wts = append(wts, wt{ws, c, id, from, match})
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			loadWriter(t, s, n, 1)
		}()
		rng := rand.New(rand.NewPCG(2, 2))
		for i := 0; ; i++ {
			select {
			case <-done:
			case <-time.After(time.Duration(rng.IntN(5)) * time.Millisecond):
				switch i % 4 {
				case 0:
					add(8+rng.IntN(100), watchReq("\x00", "\x00", 1), nil)
				case 1:
					p := fmt.Sprintf("k%d/", rng.IntN(4))
					add(16, watchReq(p, string(prefixEnd([]byte(p))), max(1, s.Rev()-int64(rng.IntN(300)))), prefixMatch(p))
				case 2:
					add(4096, watchReq("\x00", "\x00", 0), nil)
				case 3:
					k := fmt.Sprintf("k%d/t1", rng.IntN(4))
					add(4, watchReq(k, "", max(1, s.Rev()-int64(rng.IntN(100)))), func(b []byte) bool { return string(b) == k })
				}
				continue
			}
			break
		}
		for _, w := range wts {
			rs := waitSynced(t, w.ws, w.c)
			checkStream(t, rs)
			want := storedEvents(t, be, w.from, w.match)
			if got := eventsOf(rs, w.id); !eventsEqual(got, want) {
				t.Fatalf("watch from %d: %d events, want %d\ngot  %q\nwant %q", w.from, len(got), len(want), showEvents(got), showEvents(want))
			}
		}
		t.Logf("%d watchers, %d revisions", len(wts), s.Rev())
	})
}

// TestWatchSlowReader checks that a stream nobody reads neither holds up
// writers nor a stream that is read, and that it gets every event, in
// order, once it is read.
func TestWatchSlowReader(t *testing.T) {
	n := 2000
	if testing.Short() || raceEnabled {
		n = 600
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, be := newTestStore(t, e, smallWatchHub(nil, 128, 200, 10*time.Millisecond))
		slow := newStream(t, s, &WatchStreamOptions{BufferEvents: 32})
		slowAll := mustWatch(t, slow, watchReq("\x00", "\x00", 0))
		slowKey := mustWatch(t, slow, watchReq("k0/00", "", 0))
		fast := newStream(t, s, nil)
		fc := newCollector(t, fast)
		fastID := mustWatch(t, fast, watchReq("\x00", "\x00", 0))
		start := time.Now()
		loadWriter(t, s, n, 3)
		took := time.Since(start)
		rs := waitSynced(t, fast, fc)
		if got, want := eventsOf(rs, fastID), storedEvents(t, be, 2, nil); !eventsEqual(got, want) {
			t.Fatalf("fast reader: %d events, want %d", len(got), len(want))
		}
		s.hub.mu.Lock()
		unsynced := s.hub.unsynced.size()
		s.hub.mu.Unlock()
		if unsynced == 0 {
			t.Fatalf("the slow stream's watchers are all synced")
		}
		t.Logf("%d revisions in %v with a stuck stream", s.Rev(), took)
		// Now read the slow stream.
		sc := newCollector(t, slow)
		rs = waitSynced(t, slow, sc)
		checkStream(t, rs)
		if got, want := eventsOf(rs, slowAll), storedEvents(t, be, 2, nil); !eventsEqual(got, want) {
			t.Fatalf("slow reader: %d events, want %d", len(got), len(want))
		}
		if got, want := eventsOf(rs, slowKey), storedEvents(t, be, 2, func(k []byte) bool { return string(k) == "k0/00" }); !eventsEqual(got, want) {
			t.Fatalf("slow reader, one key: %d events, want %d", len(got), len(want))
		}
	})
}

func TestWatchCompacted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, be := newTestStore(t, e, smallWatchHub(nil, 16, 100, 10*time.Millisecond))
		for i := range 20 {
			mustPut(t, s, "a", fmt.Sprint(i)) // 2..21
		}
		if _, err := s.Compact(&pb.CompactionRequest{Revision: 10, Physical: true}); err != nil {
			t.Fatal(err)
		}
		ws := newStream(t, s, nil)
		c := newCollector(t, ws)
		// Below the compact revision: created, then compacted.
		id := mustWatch(t, ws, watchReq("a", "", 9))
		rs := c.waitFor("compacted", func(rs []*pb.WatchResponse) bool { return len(rs) == 2 })
		if got := showResps(rs); got != fmt.Sprintf("id=%d rev=21 created\nid=%d rev=0 canceled compact=10\n", id, id) {
			t.Fatalf("got\n%s", got)
		}
		// The compacted watcher stays until cancelled: no progress.
		ws.RequestProgress()
		// At the compact revision: the events from it on.
		id2 := mustWatch(t, ws, watchReq("a", "", 10))
		rs = c.waitFor("events", func(rs []*pb.WatchResponse) bool { return len(eventsOf(rs, id2)) == 12 })
		for _, r := range rs {
			if r.WatchId == InvalidWatchID {
				t.Fatalf("progress with a compacted watcher: %s", showResps(rs))
			}
		}
		if err := ws.Cancel(id); err != nil {
			t.Fatal(err)
		}
		rs = c.waitFor("cancel", func(rs []*pb.WatchResponse) bool { return rs[len(rs)-1].Canceled })
		if got := showResp(rs[len(rs)-1]); got != fmt.Sprintf("id=%d rev=21 canceled", id) {
			t.Fatalf("cancel response: %s", got)
		}

		// A watcher that falls behind past a compaction is compacted.
		slow := newStream(t, s, &WatchStreamOptions{BufferEvents: 4})
		sid := mustWatch(t, slow, watchReq("\x00", "\x00", 0))
		for i := range 50 {
			mustPut(t, s, "b", fmt.Sprint(i)) // 22..71
		}
		want := storedEvents(t, be, 22, nil)
		if _, err := s.Compact(&pb.CompactionRequest{Revision: 60, Physical: true}); err != nil {
			t.Fatal(err)
		}
		sc := newCollector(t, slow)
		rs = sc.waitFor("compacted", func(rs []*pb.WatchResponse) bool { return len(rs) > 0 && rs[len(rs)-1].CompactRevision != 0 })
		checkStream(t, rs)
		last := rs[len(rs)-1]
		if last.WatchId != sid || last.CompactRevision != 60 || !last.Canceled {
			t.Fatalf("last response %s", showResp(last))
		}
		got := eventsOf(rs, sid)
		if len(got) == 0 || len(got) >= 38 || !eventsEqual(got, want[:len(got)]) {
			t.Fatalf("events before the compaction: %q", showEvents(got))
		}
	})
}

func TestWatchProgress(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		mustPut(t, s, "a", "1") // 2
		ws := newStream(t, s, &WatchStreamOptions{BufferEvents: 2})
		c := newCollector(t, ws)
		// No watchers: no answer (the next response is the created one).
		ws.RequestProgress()
		id := mustWatch(t, ws, watchReq("a", "", 0))
		ws.RequestProgress()
		rs := c.waitFor("progress", func(rs []*pb.WatchResponse) bool { return len(rs) == 2 })
		if got := showResps(rs); got != fmt.Sprintf("id=%d rev=2 created\nid=-1 rev=2\n", id) {
			t.Fatalf("got\n%s", got)
		}
		// A watcher starting in the future: no answer until it is reached.
		fut := mustWatch(t, ws, watchReq("b", "", 4))
		ws.RequestProgress()
		mustPut(t, s, "a", "2") // 3
		ws.RequestProgress()
		mustPut(t, s, "b", "1") // 4
		ws.RequestProgress()
		rs = c.waitFor("progress", func(rs []*pb.WatchResponse) bool { return len(rs) == 6 })
		want := fmt.Sprintf("id=%d rev=2 created\nid=-1 rev=2\nid=%d rev=2 created\nid=%d rev=3 [\"PUT a=2@3 c2 v2\"]\nid=%d rev=4 [\"PUT b=1@4 c4 v1\"]\nid=-1 rev=4\n", id, fut, id, fut)
		if got := showResps(rs); got != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
		// An unsynced watcher: no answer, until it has caught up.
		ws2 := newStream(t, s, &WatchStreamOptions{BufferEvents: 2})
		mustWatch(t, ws2, watchReq("\x00", "\x00", 0))
		for i := range 20 {
			mustPut(t, s, "c", fmt.Sprint(i))
		}
		ws2.RequestProgress()
		c2 := newCollector(t, ws2)
		rs = waitSynced(t, ws2, c2)
		for i, r := range rs[:len(rs)-1] {
			if r.WatchId == InvalidWatchID {
				t.Fatalf("progress %d while unsynced:\n%s", i, showResps(rs))
			}
		}
		if last := rs[len(rs)-1]; last.Header.Revision != s.Rev() || len(eventsOf(rs, 0)) != 20 {
			t.Fatalf("progress at %d with %d events, want %d and 20", last.Header.Revision, len(eventsOf(rs, 0)), s.Rev())
		}

		// Periodic progress: for progress_notify watchers that got no
		// events since the last one.
		ws3 := newStream(t, s, &WatchStreamOptions{ProgressNotifyInterval: 20 * time.Millisecond})
		c3 := newCollector(t, ws3)
		pn := mustWatch(t, ws3, &pb.WatchCreateRequest{Key: []byte("p"), ProgressNotify: true})
		quiet := mustWatch(t, ws3, watchReq("q", "", 0))
		rs = c3.waitFor("periodic progress", func(rs []*pb.WatchResponse) bool { return len(rs) >= 4 })
		for _, r := range rs[2:] {
			if r.WatchId != pn || len(r.Events) != 0 || r.Header.Revision != s.Rev() || r.Created || r.Canceled {
				t.Fatalf("periodic progress: %s", showResps(rs))
			}
		}
		_ = quiet
		// With no progress notify at all.
		ws4 := newStream(t, s, &WatchStreamOptions{ProgressNotifyInterval: -1})
		c4 := newCollector(t, ws4)
		mustWatch(t, ws4, &pb.WatchCreateRequest{Key: []byte("p"), ProgressNotify: true})
		time.Sleep(50 * time.Millisecond)
		if rs := c4.snapshot(); len(rs) != 1 {
			t.Fatalf("progress without an interval:\n%s", showResps(rs))
		}
	})
}

// TestWatchAtomic checks that a revision's events come in one response,
// even when they exceed the buffer, live and caught up, and that
// fragments split them only for the watchers that asked.
func TestWatchAtomic(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, be := newTestStore(t, e, nil)
		ws := newStream(t, s, &WatchStreamOptions{BufferEvents: 8, FragmentBytes: 1000})
		c := newCollector(t, ws)
		live := mustWatch(t, ws, watchReq("t/", "t0", 0))
		frag := mustWatch(t, ws, &pb.WatchCreateRequest{Key: []byte("t/"), RangeEnd: []byte("t0"), Fragment: true})
		var ops []*pb.RequestOp
		for i := range 40 {
			ops = append(ops, opPut(fmt.Sprintf("t/%02d", i), strings.Repeat("v", 50)))
		}
		for range 3 {
			if _, err := s.Txn(&pb.TxnRequest{Success: ops}); err != nil {
				t.Fatal(err)
			}
		}
		hist := mustWatch(t, ws, watchReq("t/", "t0", 1))
		rs := waitSynced(t, ws, c)
		checkStream(t, rs)
		want := storedEvents(t, be, 1, nil)
		for _, id := range []int64{live, hist, frag} {
			if got := eventsOf(rs, id); !eventsEqual(got, want) {
				t.Fatalf("watch %d: %d events, want %d", id, len(got), len(want))
			}
		}
		frags := 0
		for _, r := range rs {
			switch {
			case r.WatchId == frag && len(r.Events) > 0:
				if size := proto.Size(r); size >= 1000 && len(r.Events) > 1 {
					t.Fatalf("fragment of %d bytes", size)
				}
				if r.Fragment {
					frags++
				}
			case len(r.Events) > 0 && len(r.Events) != 40:
				t.Fatalf("watch %d: a response of %d events", r.WatchId, len(r.Events))
			}
		}
		if frags < 3 {
			t.Fatalf("%d fragments", frags)
		}
	})
}

// TestWatchRestart watches, after a restart, from revisions written
// before it.
func TestWatchRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		dir := t.TempDir()
		be := openBackendNoCleanup(t, e, dir)
		defer func() { be.Close() }()
		s, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		writeHistory(t, s, true)
		compactRev := s.CompactRev()
		s.Close()
		s, err = Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ws := newStream(t, s, nil)
		c := newCollector(t, ws)
		id := mustWatch(t, ws, watchReq("\x00", "\x00", compactRev))
		old := mustWatch(t, ws, watchReq("\x00", "\x00", compactRev-1))
		rs := c.waitFor("compacted", func(rs []*pb.WatchResponse) bool { return len(rs) >= 3 })
		checkStream(t, rs)
		if got := eventsOf(rs, old); len(got) != 0 {
			t.Fatalf("events below the compact revision")
		}
		if err := ws.Cancel(old); err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, "after", "1")
		rs = waitSynced(t, ws, c)
		if got, want := eventsOf(rs, id), storedEvents(t, be, compactRev, nil); !eventsEqual(got, want) || len(got) == 0 {
			t.Fatalf("after restart: %d events, want %d", len(got), len(want))
		}
	})
}

func TestWatchIDs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, nil)
		ws := newStream(t, s, nil)
		c := newCollector(t, ws)
		a := mustWatch(t, ws, watchReq("a", "", 0))
		b := mustWatch(t, ws, &pb.WatchCreateRequest{Key: []byte("b"), WatchId: 2})
		x := mustWatch(t, ws, watchReq("c", "", 0))
		y := mustWatch(t, ws, watchReq("c", "", 0))
		if a != 0 || b != 2 || x != 1 || y != 3 {
			t.Fatalf("IDs %d %d %d %d, want 0 2 1 3", a, b, x, y)
		}
		for _, tc := range []struct {
			req  *pb.WatchCreateRequest
			want error
		}{
			{&pb.WatchCreateRequest{Key: []byte("d"), WatchId: 2}, ErrWatcherDuplicateID},
			{&pb.WatchCreateRequest{Key: []byte("d"), StartRevision: -1}, ErrCompacted},
			{&pb.WatchCreateRequest{Key: []byte("d"), RangeEnd: []byte("c")}, ErrEmptyWatcherRange},
			{&pb.WatchCreateRequest{Key: []byte("d"), RangeEnd: []byte("d")}, ErrEmptyWatcherRange},
		} {
			if id, err := ws.Watch(tc.req); err != tc.want || id != InvalidWatchID {
				t.Fatalf("%v: %d %v, want %v", tc.req, id, err, tc.want)
			}
		}
		ws.Reject("etcdserver: permission denied")
		if err := ws.Cancel(7); err != ErrWatcherNotExist {
			t.Fatalf("cancel of an unknown ID: %v", err)
		}
		if err := ws.Cancel(x); err != nil {
			t.Fatal(err)
		}
		if err := ws.Cancel(x); err != ErrWatcherNotExist {
			t.Fatalf("second cancel: %v", err)
		}
		z := mustWatch(t, ws, watchReq("z", "", 0))
		if z != 4 {
			t.Fatalf("next auto ID %d, want 4", z)
		}
		rs := c.waitFor("responses", func(rs []*pb.WatchResponse) bool { return len(rs) == 11 })
		want := `id=0 rev=1 created
id=2 rev=1 created
id=1 rev=1 created
id=3 rev=1 created
id=-1 rev=1 created canceled reason="mvcc: duplicate watch ID provided on the WatchStream"
id=-1 rev=1 created canceled reason="etcdserver: mvcc: required revision has been compacted"
id=-1 rev=1 created canceled reason="mvcc: watcher range is empty"
id=-1 rev=1 created canceled reason="mvcc: watcher range is empty"
id=-1 rev=1 created canceled reason="etcdserver: permission denied"
id=1 rev=1 canceled
id=4 rev=1 created
`
		if got := showResps(rs); got != want {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
		// Close ends the stream, and the store's Close every stream.
		ws2 := newStream(t, s, nil)
		mustWatch(t, ws2, watchReq("a", "", 0))
		s.Close()
		for range ws.Chan() {
		}
		for range ws2.Chan() {
		}
		if _, err := s.NewWatchStream(nil); err != ErrClosed {
			t.Fatalf("stream on a closed store: %v", err)
		}
		if _, err := ws2.Watch(watchReq("a", "", 0)); err != ErrClosed {
			t.Fatalf("watch on a closed stream: %v", err)
		}
	})
}

// TestWatchChaos runs stream operations (watch, cancel, progress
// requests, close) from several goroutines against a writer that also
// compacts and revokes leases, with readers that stop and go. It checks
// each stream's invariants, that the store closes without leaving a
// goroutine behind, and that nothing deadlocks.
func TestWatchChaos(t *testing.T) {
	d := 2 * time.Second
	if testing.Short() || raceEnabled {
		d = 700 * time.Millisecond
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, _ := newTestStore(t, e, smallWatchHub(&Options{CompactionBatchLimit: 10, CompactionSleepInterval: -1}, 32, 50, 5*time.Millisecond))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the writer
			defer wg.Done()
			rng := rand.New(rand.NewPCG(9, 9))
			lease := int64(0)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				w, err := s.NewWriteBatch()
				if err != nil {
					t.Error(err)
					return
				}
				if i%7 == 0 {
					if lease != 0 {
						w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: lease})
					}
					lease++
					w.LeaseGrant(&pb.LeaseGrantRequest{ID: lease, TTL: 5})
				}
				for range 1 + rng.IntN(4) {
					w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "c/%d", rng.IntN(20)), Value: []byte("v"), Lease: lease * int64(rng.IntN(2))})
				}
				if i%50 == 49 {
					w.Compact(&pb.CompactionRequest{Revision: w.Rev() - int64(rng.IntN(30))})
				}
				if err := w.Commit(0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		type stream struct {
			ws   *WatchStream
			mu   sync.Mutex
			rs   []*pb.WatchResponse
			done chan struct{}
		}
		var smu sync.Mutex
		var streams []*stream
		for g := range 3 {
			wg.Add(1)
			go func() { // stream users
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 3))
				var mine []*stream
				for {
					select {
					case <-stop:
						return
					default:
					}
					switch r := rng.IntN(20); {
					case r == 0 || len(mine) == 0:
						opts := &WatchStreamOptions{BufferEvents: 1 + rng.IntN(20), ProgressNotifyInterval: 3 * time.Millisecond, FragmentBytes: 100}
						if rng.IntN(2) == 0 {
							opts.EncodedHeader = func() WireHeader { return testWireHeader }
						}
						ws, err := s.NewWatchStream(opts)
						if err != nil {
							t.Error(err)
							return
						}
						st := &stream{ws: ws, done: make(chan struct{})}
						go func() { // a reader that pauses
							defer close(st.done)
							for r := range streamResponses(t, ws) {
								st.mu.Lock()
								st.rs = append(st.rs, r)
								st.mu.Unlock()
								if rng := len(r.Events); rng%3 == 0 {
									time.Sleep(time.Millisecond)
								}
							}
						}()
						mine = append(mine, st)
						smu.Lock()
						streams = append(streams, st)
						smu.Unlock()
					case r == 1:
						i := rng.IntN(len(mine))
						mine[i].ws.Close()
						mine = slices.Delete(mine, i, i+1)
					case r < 10:
						mine[rng.IntN(len(mine))].ws.Watch(&pb.WatchCreateRequest{
							Key: []byte("c/"), RangeEnd: []byte("c0"), StartRevision: max(0, s.Rev()-int64(rng.IntN(60))),
							PrevKv: rng.IntN(2) == 0, Fragment: rng.IntN(2) == 0, ProgressNotify: rng.IntN(2) == 0,
						})
					case r < 14:
						mine[rng.IntN(len(mine))].ws.Cancel(int64(rng.IntN(5)))
					default:
						mine[rng.IntN(len(mine))].ws.RequestProgress()
					}
					time.Sleep(100 * time.Microsecond)
				}
			}()
		}
		time.Sleep(d)
		close(stop)
		wg.Wait()
		s.Close() // closes every stream
		smu.Lock()
		defer smu.Unlock()
		for _, st := range streams {
			<-st.done
			checkStream(t, st.rs)
		}
		t.Logf("%d streams, %d revisions", len(streams), s.Rev())
	})
}
