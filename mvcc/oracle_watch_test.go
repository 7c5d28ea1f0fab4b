package mvcc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	emvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"google.golang.org/protobuf/proto"
)

// watchPair is one watch made on etcd's watchable store and on the
// Store, each on a stream of its own.
type watchPair struct {
	req *pb.WatchCreateRequest

	ws  *WatchStream
	c   *collector
	id  int64
	err error

	ews   emvcc.WatchStream
	eerr  error
	emu   sync.Mutex
	eresp []emvcc.WatchResponse
	edone chan struct{}
}

// newWatchPair makes a random watch on both stores.
func (d *diffRun) newWatchPair() *watchPair {
	g := d.g
	req := &pb.WatchCreateRequest{Key: g.key()}
	req.RangeEnd = g.rangeEnd(req.Key)
	if g.chance(0.05) {
		req.Key = nil
	}
	switch {
	case g.chance(0.3):
	case g.compactRev > 1 && g.chance(0.2):
		req.StartRevision = 1 + g.rng.Int64N(g.compactRev) // at or below the compact revision
	default:
		req.StartRevision = max(1, g.revAround())
	}
	if g.chance(0.1) {
		req.Filters = append(req.Filters, pb.WatchCreateRequest_NOPUT)
	}
	if g.chance(0.1) {
		req.Filters = append(req.Filters, pb.WatchCreateRequest_NODELETE)
	}
	req.PrevKv = g.chance(0.4)
	p := &watchPair{req: req, edone: make(chan struct{})}

	// Small buffers, so that watchers fall behind now and then.
	ws, err := d.s.NewWatchStream(&WatchStreamOptions{BufferEvents: 2 + g.rng.IntN(30), ProgressNotifyInterval: -1})
	if err != nil {
		d.fail("NewWatchStream: %v", err)
	}
	p.ws, p.c = ws, newCollector(d.t, ws)
	p.id, p.err = ws.Watch(req)

	// etcd's gRPC layer turns the request into these arguments.
	key, end := req.Key, req.RangeEnd
	if len(key) == 0 {
		key = []byte{0}
	}
	switch {
	case len(end) == 0:
		end = nil
	case len(end) == 1 && end[0] == 0:
		end = []byte{}
	}
	var fcs []emvcc.FilterFunc
	for _, f := range req.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			fcs = append(fcs, func(e *mvccpb.Event) bool { return e.Type == mvccpb.Event_PUT })
		case pb.WatchCreateRequest_NODELETE:
			fcs = append(fcs, func(e *mvccpb.Event) bool { return e.Type == mvccpb.Event_DELETE })
		}
	}
	p.ews = d.o.wkv.NewWatchStream()
	go func() {
		defer close(p.edone)
		for r := range p.ews.Chan() {
			p.emu.Lock()
			p.eresp = append(p.eresp, r)
			p.emu.Unlock()
		}
	}()
	_, p.eerr = p.ews.Watch(context.Background(), 0, key, end, req.StartRevision, fcs...)
	if !sameErr(p.eerr, p.err) {
		d.fail("watch %v: etcd error %v, ours %v", req, p.eerr, p.err)
	}
	d.trace("watch %v -> %d %v", req, p.id, p.err)
	return p
}

func (p *watchPair) etcdResponses() []emvcc.WatchResponse {
	p.emu.Lock()
	defer p.emu.Unlock()
	return append([]emvcc.WatchResponse(nil), p.eresp...)
}

// sync waits until both watchers have sent every event up to the current
// revision, or were compacted.
func (p *watchPair) sync(d *diffRun) {
	d.t.Helper()
	if p.err != nil || p.req.StartRevision > d.s.Rev() {
		return // nothing to send, or a watcher that cannot answer yet
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rs := p.c.snapshot()
		if compactedAt(rs, p.id) != 0 {
			break
		}
		n := len(rs)
		p.ws.RequestProgress()
		_, ok := p.c.waitUntil(20*time.Millisecond, func(rs []*pb.WatchResponse) bool {
			for _, r := range rs[n:] {
				if r.WatchId == InvalidWatchID || r.CompactRevision != 0 {
					return true
				}
			}
			return false
		})
		if ok {
			break
		}
		if time.Now().After(deadline) {
			d.fail("watch %v never synced:\n%s", p.req, showResps(p.c.snapshot()))
		}
	}
	for {
		rs := p.etcdResponses()
		done := false
		for _, r := range rs {
			done = done || r.CompactRevision != 0
		}
		if !done && p.ews.RequestProgressAll() {
			// The progress response is sent without blocking: wait for it.
			for i := 0; i < 200 && !done; i++ {
				for _, r := range p.etcdResponses()[len(rs):] {
					done = done || r.WatchID == -1
				}
				time.Sleep(time.Millisecond)
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			d.fail("etcd watch %v never synced", p.req)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func compactedAt(rs []*pb.WatchResponse, id int64) int64 {
	for _, r := range rs {
		if r.WatchId == id && r.CompactRevision != 0 {
			return r.CompactRevision
		}
	}
	return 0
}

// compare checks that both watchers sent the same events (prev_kv as
// etcd's server reads it, at the event's revision - 1) and were compacted
// at the same revision, if at all.
func (p *watchPair) compare(d *diffRun) {
	d.t.Helper()
	if p.err != nil {
		return
	}
	rs := p.c.snapshot()
	got := eventsOf(rs, p.id)
	var want []*mvccpb.Event
	var ecompact int64
	for _, r := range p.etcdResponses() {
		want = append(want, r.Events...)
		if r.CompactRevision != 0 {
			ecompact = r.CompactRevision
		}
	}
	if c := compactedAt(rs, p.id); c != ecompact {
		d.fail("watch %v: compacted at %d, etcd at %d\n%s", p.req, c, ecompact, showResps(rs))
	}
	if len(got) != len(want) {
		d.fail("watch %v: %d events, etcd %d\nours %q\netcd %q", p.req, len(got), len(want), showEvents(got), showEvents(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || !proto.Equal(g.Kv, w.Kv) {
			d.fail("watch %v: event %d %s, etcd %s", p.req, i, showEvent(g), showEvent(w))
		}
		if !p.req.PrevKv {
			if g.PrevKv != nil {
				d.fail("watch %v: prev_kv without asking", p.req)
			}
			continue
		}
		// etcd's server: no prev_kv for a creation, nor if compacted.
		if w.Type == mvccpb.Event_PUT && w.Kv.CreateRevision == w.Kv.ModRevision {
			if g.PrevKv != nil {
				d.fail("watch %v: prev_kv on a creation: %s", p.req, showEvent(g))
			}
			continue
		}
		rr, err := d.o.kv.Range(context.Background(), w.Kv.Key, nil, emvcc.RangeOptions{Rev: w.Kv.ModRevision - 1})
		if err != nil {
			continue // compacted since: either answer is etcd's
		}
		var prev *mvccpb.KeyValue
		if len(rr.KVs) > 0 {
			prev = rr.KVs[0]
		}
		if !proto.Equal(g.PrevKv, prev) {
			d.fail("watch %v: event %d prev_kv %v, etcd %v", p.req, i, g.PrevKv, prev)
		}
	}
}

func (p *watchPair) close() {
	p.ws.Close()
	p.ews.Close()
	<-p.edone
}

// watchDiffSeqs returns the number of random sequences per engine of
// TestDifferentialWatch.
func watchDiffSeqs(t *testing.T) int {
	if v := os.Getenv("STRATA_MVCC_DIFF_WATCH_SEQS"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatalf("STRATA_MVCC_DIFF_WATCH_SEQS: %v", err)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		return 8
	}
	return 40
}

// TestDifferentialWatch applies random request sequences (leases
// included) to etcd's watchable store and to the Store, as
// TestDifferential does, with random watchers created along the way on
// both, and compares the events every watcher got, and whether and where
// it was compacted. Both stores' watchers are brought in sync before each
// compaction, so that which watchers a compaction catches does not
// depend on timing. STRATA_MVCC_DIFF_WATCH_SEQS sets the number of
// sequences per engine (8 with -short or -race, 40 by default).
func TestDifferentialWatch(t *testing.T) {
	seqs := watchDiffSeqs(t)
	var seed0 uint64
	if v := os.Getenv("STRATA_MVCC_DIFF_SEED"); v != "" {
		fmt.Sscan(v, &seed0)
	}
	forEachEngine(t, func(t *testing.T, e engineT) {
		dir := tmpfsDir(t)
		odir := tmpfsDir(t)
		be := openBackendNoCleanup(t, e, filepath.Join(dir, "db"))
		defer be.Close()
		watches, events, compacted := 0, 0, 0
		for i := range seqs {
			seed := seed0 + uint64(i)
			rng := rand.New(rand.NewPCG(seed, 0x3a7c4))
			wipe(t, be)
			batchLimit := 1 + rng.IntN(5)
			s, err := Open(be, &Options{CompactionBatchLimit: batchLimit, CompactionSleepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			for id := range oracleLeases {
				mustGrant(t, s, id, 3600)
			}
			o := newOracle(t, odir, batchLimit, true)
			d := &diffRun{t: t, g: &reqGen{rng: rng, rev: 1}, o: o, s: s, label: fmt.Sprintf("watch seed %d", seed), noCompact: true}
			var pairs []*watchPair
			syncAll := func() {
				for _, p := range pairs {
					p.sync(d)
				}
			}
			for range 10 + rng.IntN(40) {
				d.syncGen()
				switch k := rng.IntN(100); {
				case k < 25:
					pairs = append(pairs, d.newWatchPair())
				case k < 31:
					syncAll()
					req := &pb.CompactionRequest{Revision: d.g.revAround(), Physical: true}
					or, oerr := d.o.compact(req)
					r, err := d.s.Compact(req)
					d.check("compact", req, or, oerr, r, err)
					if err == nil {
						d.g.compactRev = req.Revision
					}
				default:
					d.step()
				}
			}
			syncAll()
			for _, p := range pairs {
				p.compare(d)
				events += len(eventsOf(p.c.snapshot(), p.id))
				if compactedAt(p.c.snapshot(), p.id) != 0 {
					compacted++
				}
				p.close()
			}
			watches += len(pairs)
			d.checkAll()
			s.Close()
			o.close()
		}
		t.Logf("%d sequences, %d watchers (%d compacted), %d events compared", seqs, watches, compacted, events)
	})
}
