package mvcc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

func newFanout(b *testing.B, s *Store, n int) *fanout {
	f := &fanout{reached: make(chan struct{}, 1)}
	f.target.Store(-1)
	for i := range min(n, 100) {
		ws, err := s.NewWatchStream(&WatchStreamOptions{ProgressNotifyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		f.streams = append(f.streams, ws)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for r := range ws.Chan() {
				if len(r.Events) == 0 {
					continue
				}
				if v := f.events.Add(int64(len(r.Events))); v == f.target.Load() {
					f.reached <- struct{}{}
				}
			}
		}()
		_ = i
	}
	for i := range n {
		if _, err := f.streams[i%len(f.streams)].Watch(&pb.WatchCreateRequest{Key: []byte("k")}); err != nil {
			b.Fatal(err)
		}
	}
	return f
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
// and 10k watchers of it (over at most 100 streams).
//
// "latency": each put is committed, then delivered to every watcher,
// before the next; ns/op is the time from the start of a commit to the
// last watcher's receipt.
//
// "throughput": puts are committed back to back while the watchers read;
// ns/op is per put until every watcher has every event, and commit-ns/op
// the writer's own time per put (what the fan-out costs it). Watchers
// that fall behind catch up from the ring and the store.
func BenchmarkWatchFanout(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, e engineT) {
		for _, n := range []int{1, 100, 10_000} {
			for _, mode := range []string{"latency", "throughput"} {
				b.Run(fmt.Sprintf("watchers=%d/%s", n, mode), func(b *testing.B) {
					s, _ := newTestStore(b, e, nil)
					f := newFanout(b, s, n)
					defer f.close()
					req := &pb.PutRequest{Key: []byte("k"), Value: benchValue}
					b.ResetTimer()
					start := time.Now()
					for i := range b.N {
						if _, err := s.Put(req); err != nil {
							b.Fatal(err)
						}
						if mode == "latency" {
							f.wait(b, int64(n)*int64(i+1))
						}
					}
					commit := time.Since(start)
					f.wait(b, int64(n)*int64(b.N))
					total := time.Since(start)
					b.StopTimer()
					if mode == "throughput" {
						b.ReportMetric(float64(commit.Nanoseconds())/float64(b.N), "commit-ns/op")
					}
					b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "events/s")
				})
			}
		}
	})
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
