package mvcc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fanout is n watchers of one key, spread over up to 100 streams, each
// read by a goroutine counting events.
type fanout struct {
	streams []*WatchStream
	events  atomic.Int64
	target  atomic.Int64
	reached chan struct{}
	wg      sync.WaitGroup
}

func newFanout(b *testing.B, s *Store, n, streams int, encoded bool) *fanout {
	f := &fanout{reached: make(chan struct{}, 1)}
	f.target.Store(-1)
	for range min(n, streams) {
		opts := &WatchStreamOptions{ProgressNotifyInterval: -1}
		if encoded {
			opts.EncodedHeader = func() WireHeader { return testWireHeader }
		}
		ws, err := s.NewWatchStream(opts)
		if err != nil {
			b.Fatal(err)
		}
		f.streams = append(f.streams, ws)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			count := func(n int) {
				if n == 0 {
					return
				}
				if v := f.events.Add(int64(n)); v == f.target.Load() {
					f.reached <- struct{}{}
				}
			}
			if !encoded {
				// What the server did before Encoded: a response per
				// watcher, each marshalled with its header.
				for r := range ws.Chan() {
					r.Header.ClusterId, r.Header.MemberId, r.Header.RaftTerm = testWireHeader.ClusterID, testWireHeader.MemberID, testWireHeader.RaftTerm
					if _, err := proto.Marshal(r); err != nil {
						b.Error(err)
					}
					count(len(r.Events))
				}
				return
			}
			for batch := range ws.Encoded() {
				for _, r := range batch {
					count(countWireEvents(b, r))
				}
			}
		}()
	}
	for i := range n {
		if _, err := f.streams[i%len(f.streams)].Watch(&pb.WatchCreateRequest{Key: []byte("k")}); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// countWireEvents counts the events of an encoded WatchResponse.
func countWireEvents(b *testing.B, r []byte) int {
	n := 0
	for len(r) > 0 {
		num, typ, l := protowire.ConsumeTag(r)
		if l < 0 {
			b.Error(protowire.ParseError(l))
			return n
		}
		m := protowire.ConsumeFieldValue(num, typ, r[l:])
		if m < 0 {
			b.Error(protowire.ParseError(m))
			return n
		}
		if num == watchResponseEvents {
			n++
		}
		r = r[l+m:]
	}
	return n
}

// wait waits until the watchers have received want events in all.
func (f *fanout) wait(b *testing.B, want int64) {
	f.target.Store(want)
	if f.events.Load() >= want {
		select {
		case <-f.reached:
		default:
		}
		return
	}
	select {
	case <-f.reached:
	case <-time.After(time.Minute):
		b.Fatalf("%d events received, want %d", f.events.Load(), want)
	}
}

func (f *fanout) close() {
	for _, ws := range f.streams {
		ws.Close()
	}
	f.wg.Wait()
}

// BenchmarkWatchFanout measures the delivery of puts on one key to 1, 100
// and 10k watchers of it, over at most 100 streams (and 10k watchers on
// one stream), as responses (Chan) each marshalled, or encoded (Encoded,
// what the server sends: an event encoded once for all its watchers). The
// fan-out does not depend on the engine: it runs on the first one.
//
// "latency": each put is committed, then delivered to every watcher,
// before the next; ns/op is the time from the start of a commit to the
// last watcher's receipt.
//
// "throughput": puts are committed back to back while the watchers read;
// ns/op is per put until every watcher has every event, and commit-ns/op
// the writer's own time per put (what the fan-out costs it). Watchers
// that fall behind get larger responses, or catch up from the ring and
// the store.
func BenchmarkWatchFanout(b *testing.B) {
	e := testEngines(b)[0]
	b.Run(e.Name, func(b *testing.B) {
		for _, c := range []struct{ watchers, streams int }{{1, 1}, {100, 100}, {10_000, 100}, {10_000, 1}} {
			for _, out := range []string{"marshal", "encoded"} {
				for _, mode := range []string{"latency", "throughput"} {
					name := fmt.Sprintf("watchers=%d/streams=%d/%s/%s", c.watchers, c.streams, out, mode)
					b.Run(name, func(b *testing.B) {
						benchFanout(b, e, c.watchers, c.streams, out == "encoded", mode == "latency")
					})
				}
			}
		}
	})
}

func benchFanout(b *testing.B, e engineT, watchers, streams int, encoded, latency bool) {
	s, _ := newTestStore(b, e, nil)
	f := newFanout(b, s, watchers, streams, encoded)
	defer f.close()
	req := &pb.PutRequest{Key: []byte("k"), Value: benchValue}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := s.Put(req); err != nil {
			b.Fatal(err)
		}
		if latency {
			f.wait(b, int64(watchers)*int64(i+1))
		}
	}
	commit := time.Since(start)
	f.wait(b, int64(watchers)*int64(b.N))
	total := time.Since(start)
	b.StopTimer()
	if !latency {
		b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N), "commit-ns/op")
	}
	b.ReportMetric(float64(watchers)*float64(b.N)/total.Seconds(), "events/s")
}

// BenchmarkLease measures lease operations, one batch each: a grant, and
// a grant, a put attached to it and its revoke (three commits).
func BenchmarkLease(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, e engineT) {
		b.Run("grant", func(b *testing.B) {
			s, _ := newTestStore(b, e, nil)
			b.ResetTimer()
			for i := range b.N {
				mustGrant(b, s, int64(i+1), 60)
			}
		})
		b.Run("grant-attach-revoke", func(b *testing.B) {
			s, _ := newTestStore(b, e, nil)
			b.ResetTimer()
			for i := range b.N {
				id := int64(i + 1)
				mustGrant(b, s, id, 60)
				if _, err := s.Put(&pb.PutRequest{Key: benchKey(i % benchKeys), Value: benchValue, Lease: id}); err != nil {
					b.Fatal(err)
				}
				if _, err := revoke(s, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkWatchCreateCancel measures a watcher's creation and its
// cancellation on a stream that already has watchers on the same key (as
// kvbench's creation and cancellation rates), each request answered
// before the next is made: ns/op is per watcher.
func BenchmarkWatchCreateCancel(b *testing.B) {
	e := testEngines(b)[0]
	for _, others := range []int{0, 100, 10_000} {
		for _, op := range []string{"create", "cancel"} {
			b.Run(fmt.Sprintf("%s/others=%d/%s", e.Name, others, op), func(b *testing.B) {
				s, _ := newTestStore(b, e, nil)
				ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1, EncodedHeader: func() WireHeader { return testWireHeader }})
				if err != nil {
					b.Fatal(err)
				}
				defer ws.Close()
				answered := make(chan struct{}, 1)
				go func() {
					for batch := range ws.Encoded() {
						for range batch {
							answered <- struct{}{}
						}
					}
				}()
				req := &pb.WatchCreateRequest{Key: []byte("k")}
				watch := func() int64 {
					id, err := ws.Watch(req)
					if err != nil {
						b.Fatal(err)
					}
					<-answered
					return id
				}
				for range others {
					watch()
				}
				b.ReportAllocs()
				if op == "create" {
					b.ResetTimer()
					for range b.N {
						watch()
					}
					return
				}
				b.StopTimer()
				ids := make([]int64, b.N)
				for i := range ids {
					ids[i] = watch()
				}
				b.StartTimer()
				for _, id := range ids {
					if err := ws.Cancel(id); err != nil {
						b.Fatal(err)
					}
					<-answered
				}
			})
		}
	}
}
