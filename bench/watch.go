package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The watch workloads (KindWatch) start Config.Watchers watchers on one
// key, or on one prefix, spread over Config.WatchStreams streams, then put
// to the watched keys from Config.Clients clients at Config.Rate (the
// workload's rate by default). Every value starts with the time its put
// was issued, so each watcher times each event it receives: the latency
// from the put's issue to the event's receipt, as etcd's benchmark
// watch-latency measures it. The report has the puts as operations and
// the events in Result.Watch.
//
//	watch-fanout   watchers on /kvbench/watch/, puts to 100 keys under it, 500 puts/s
//	watch-latency  watchers on /kvbench/watch/key, puts to it, 100 puts/s

// watchPrefix is where the watch workloads write.
const watchPrefix = "/kvbench/watch/"

// drainTimeout bounds the wait, after the run, for watchers to receive the
// events of the last writes.
const drainTimeout = 5 * time.Second

// cancelTimeout bounds the cancellation of a run's watchers.
const cancelTimeout = 2 * time.Minute

// WatchResult sums up the events a run's watchers received.
type WatchResult struct {
	Watchers int `json:"watchers"`
	Streams  int `json:"streams"`
	// Events counts the events received, over all watchers; EventsSec is
	// their rate over the run.
	Events    int64   `json:"events"`
	EventsSec float64 `json:"events_per_sec"`
	// Expected is how many events the watchers should have received: each
	// acknowledged write, once per watcher of its key. Writes cut short at
	// the end of the run may have been made without being acknowledged, so
	// Events can exceed it slightly.
	Expected int64 `json:"expected"`
	// Lagging counts the watchers that had not received the last
	// acknowledged write of their keys 5 s after the run ended.
	Lagging int `json:"lagging,omitempty"`
	// Latency is from each put's issue to each watcher's receipt of its
	// event, in µs. Events of deletes are not timed.
	Latency OpResult `json:"latency"`
	// CreatedSec is the rate at which the watchers were created, each
	// stream creating its own one after the other (a creation is done
	// when its created response is received), all streams at once;
	// CanceledSec the rate at which they were cancelled after the run in
	// the same way (done when the canceled response is received).
	CreatedSec  float64 `json:"created_per_sec"`
	CanceledSec float64 `json:"canceled_per_sec,omitempty"`
	// Progress is the time each stream took, after the run, to answer a
	// RequestProgress (all streams at once), in µs; ProgressTimeouts
	// counts those that got no answer within 5 s.
	Progress         OpResult `json:"progress"`
	ProgressTimeouts int      `json:"progress_timeouts,omitempty"`
	// NotifyGaps, with Config.WatchProgressNotify, is the time between
	// each watcher's consecutive progress notifications (progress_notify,
	// etcd's --watch-progress-notify-interval) once the run's events were
	// delivered, in µs: the interval when they come on time.
	// NotifyMissing counts the watchers that got fewer than two within
	// twice the interval and 5 s.
	NotifyGaps    *OpResult `json:"notify_gaps,omitempty"`
	NotifyMissing int       `json:"notify_missing,omitempty"`
	// RSSPerWatcher is the growth of the target's resident memory while
	// the watchers were created, per watcher, in bytes (Config.RSSPid;
	// 0 when unknown).
	RSSPerWatcher int64 `json:"rss_per_watcher,omitempty"`
}

// stampValue writes t into the first 8 bytes of v.
func stampValue(v []byte, t time.Time) { binary.BigEndian.PutUint64(v, uint64(t.UnixNano())) }

// stampOf returns the time stamped in v, if v holds a plausible one.
func stampOf(v []byte, now time.Time) (time.Time, bool) {
	if len(v) < 8 {
		return time.Time{}, false
	}
	t := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	if d := now.Sub(t); d < 0 || d > time.Hour {
		return time.Time{}, false
	}
	return t, true
}

// maxInt64 keeps the highest value it is given. Safe for concurrent use.
type maxInt64 struct{ v atomic.Int64 }

func (m *maxInt64) raise(v int64) {
	for {
		cur := m.v.Load()
		if v <= cur || m.v.CompareAndSwap(cur, v) {
			return
		}
	}
}

func (m *maxInt64) Load() int64 { return m.v.Load() }

// watchSpec is one watcher to start.
type watchSpec struct {
	key, end       []byte
	prevKV         bool
	progressNotify bool
	// onEvent, if set, sees every event the watcher receives.
	onEvent func(*mvccpb.Event)
}

// watchSet is the watchers of a run.
type watchSet struct {
	streams  []WatchStream
	watchers []*watchRecv
	stopped  bool
	created  time.Duration // the time startWatchers took to create them
	canceled time.Duration // the time cancelAll took, if it ran
}

// watchRecv is one watcher's tally. hist is written by the watcher's
// callback only, and read once the streams are closed.
type watchRecv struct {
	id      int64 // its ID on its stream
	hist    *hdrhistogram.Histogram
	events  atomic.Int64
	lastRev atomic.Int64

	// notified counts its progress notifications; notifies has their
	// times, in order, under mu.
	notified atomic.Int64
	mu       sync.Mutex
	notifies []time.Time
}

// startWatchers opens streams streams on s and starts the watchers of
// specs on them, round robin, each stream creating its own at the same
// time as the others.
func startWatchers(ctx context.Context, s EtcdStore, streams int, specs []watchSpec) (*watchSet, error) {
	set := &watchSet{}
	for range max(1, min(streams, len(specs))) {
		st, err := s.NewWatchStream(ctx)
		if err != nil {
			set.stop()
			return nil, err
		}
		set.streams = append(set.streams, st)
	}
	set.watchers = make([]*watchRecv, len(specs))
	for i := range specs {
		set.watchers[i] = &watchRecv{hist: newHist()}
	}
	start := time.Now()
	errs := make([]error, len(set.streams))
	var wg sync.WaitGroup
	for j, st := range set.streams {
		wg.Go(func() {
			for i := j; i < len(specs); i += len(set.streams) {
				sp := specs[i]
				req := &pb.WatchCreateRequest{Key: sp.key, RangeEnd: sp.end, PrevKv: sp.prevKV, ProgressNotify: sp.progressNotify}
				id, err := st.Watch(ctx, req, set.watchers[i].receive(sp.onEvent))
				if err != nil {
					errs[j] = err
					return
				}
				set.watchers[i].id = id
			}
		})
	}
	wg.Wait()
	set.created = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		set.stop()
		return nil, err
	}
	return set, nil
}

func (w *watchRecv) receive(onEvent func(*mvccpb.Event)) func(*pb.WatchResponse) {
	return func(resp *pb.WatchResponse) {
		now := time.Now()
		evs := resp.Events
		if len(evs) == 0 {
			if isProgressNotify(resp) {
				w.mu.Lock()
				w.notifies = append(w.notifies, now)
				w.mu.Unlock()
				w.notified.Add(1)
			}
			return
		}
		for _, ev := range evs {
			if ev.Type == mvccpb.PUT {
				if t, ok := stampOf(ev.Kv.GetValue(), now); ok {
					w.hist.RecordValue(min(max(now.Sub(t).Microseconds(), histMin), histMax))
				}
			}
			if onEvent != nil {
				onEvent(ev)
			}
		}
		w.events.Add(int64(len(evs)))
		w.lastRev.Store(evs[len(evs)-1].Kv.GetModRevision())
	}
}

// drain waits until every watcher i has received revision want(i), for
// up to timeout, and returns how many had not.
func (set *watchSet) drain(ctx context.Context, want func(i int) int64, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		lagging := 0
		for i, w := range set.watchers {
			if w.lastRev.Load() < want(i) {
				lagging++
			}
		}
		if lagging == 0 || time.Now().After(deadline) {
			return lagging
		}
		select {
		case <-ctx.Done():
			return lagging
		case <-t.C:
		}
	}
}

// requestProgress asks every stream at once for a progress notification
// and returns the times they took to answer, and how many did not within
// timeout.
func (set *watchSet) requestProgress(ctx context.Context, timeout time.Duration) (*hdrhistogram.Histogram, int) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	took := make([]time.Duration, len(set.streams))
	var wg sync.WaitGroup
	for i, st := range set.streams {
		wg.Go(func() {
			start := time.Now()
			if err := st.RequestProgress(ctx); err != nil {
				took[i] = -1
				return
			}
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	h := newHist()
	timeouts := 0
	for _, d := range took {
		if d < 0 {
			timeouts++
			continue
		}
		h.RecordValue(min(max(d.Microseconds(), histMin), histMax))
	}
	return h, timeouts
}

// notifyGaps waits, from now, until every watcher has received two
// progress notifications, for up to timeout, and returns the times
// between consecutive ones received meanwhile and how many watchers got
// fewer than two.
func (set *watchSet) notifyGaps(ctx context.Context, timeout time.Duration) (*hdrhistogram.Histogram, int) {
	mark := time.Now()
	base := make([]int64, len(set.watchers))
	for i, w := range set.watchers {
		base[i] = w.notified.Load()
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for time.Since(mark) < timeout && ctx.Err() == nil {
		done := true
		for i, w := range set.watchers {
			if w.notified.Load()-base[i] < 2 {
				done = false
				break
			}
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	h := newHist()
	missing := 0
	for _, w := range set.watchers {
		w.mu.Lock()
		var after []time.Time
		for _, at := range w.notifies {
			if !at.Before(mark) {
				after = append(after, at)
			}
		}
		w.mu.Unlock()
		if len(after) < 2 {
			missing++
		}
		for k := 1; k < len(after); k++ {
			h.RecordValue(min(max(after[k].Sub(after[k-1]).Microseconds(), histMin), histMax))
		}
	}
	return h, missing
}

// cancelAll cancels every watcher, each stream its own one after the
// other, all streams at once, and records the time it took.
func (set *watchSet) cancelAll(ctx context.Context) error {
	start := time.Now()
	errs := make([]error, len(set.streams))
	var wg sync.WaitGroup
	for j, st := range set.streams {
		wg.Go(func() {
			for i := j; i < len(set.watchers); i += len(set.streams) {
				if err := st.Cancel(ctx, set.watchers[i].id); err != nil {
					errs[j] = fmt.Errorf("bench: cancel watcher %d: %w", set.watchers[i].id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	set.canceled = time.Since(start)
	return errors.Join(errs...)
}

// stop closes the streams: no callback runs once it returns.
func (set *watchSet) stop() {
	if set.stopped {
		return
	}
	set.stopped = true
	for _, st := range set.streams {
		st.Close()
	}
}

// result stops the watchers and sums up what they received over a run
// of elapsed.
func (set *watchSet) result(elapsed time.Duration, expected int64, lagging int) *WatchResult {
	set.stop()
	h := newHist()
	var events int64
	for _, w := range set.watchers {
		h.Merge(w.hist)
		events += w.events.Load()
	}
	created, canceled := 0.0, 0.0
	if set.created > 0 {
		created = float64(len(set.watchers)) / set.created.Seconds()
	}
	if set.canceled > 0 {
		canceled = float64(len(set.watchers)) / set.canceled.Seconds()
	}
	return &WatchResult{
		CreatedSec:  created,
		CanceledSec: canceled,
		Watchers:    len(set.watchers),
		Streams:     len(set.streams),
		Events:      events,
		EventsSec:   float64(events) / elapsed.Seconds(),
		Expected:    expected,
		Lagging:     lagging,
		Latency:     opResult("watch", h, 0, elapsed),
	}
}

// watchWriters is the put side of a watch workload.
type watchWriters struct {
	s     EtcdStore
	keys  [][]byte
	size  int
	acked atomic.Int64
	rev   maxInt64 // highest revision acknowledged
}

func (ww *watchWriters) phase() phase {
	return phase{
		ops: []string{"put"},
		client: func(_ int, r *rand.Rand) opFunc {
			return func(ctx context.Context) (int, error) {
				key := ww.keys[r.IntN(len(ww.keys))]
				v := make([]byte, ww.size) // the store may keep it
				fillValue(v[8:], r)
				stampValue(v, time.Now())
				resp, err := ww.s.Put(ctx, &pb.PutRequest{Key: key, Value: v})
				if err != nil {
					return 0, err
				}
				ww.acked.Add(1)
				ww.rev.raise(resp.GetHeader().GetRevision())
				return 0, nil
			}
		},
	}
}

// runWatch runs a KindWatch workload.
func runWatch(ctx context.Context, s EtcdStore, w Workload, cfg Config) (*Result, error) {
	spec := watchSpec{key: []byte(watchPrefix + "key")}
	keys := [][]byte{spec.key}
	if w.WatchKeys > 1 {
		spec = watchSpec{key: []byte(watchPrefix), end: prefixEnd([]byte(watchPrefix))}
		keys = keys[:0]
		for i := range w.WatchKeys {
			keys = append(keys, fmt.Appendf(nil, "%skey-%06d", watchPrefix, i))
		}
	}
	size := max(cfg.Keyspace.ValueSize, 8)
	if err := warmup(ctx, (&watchWriters{s: s, keys: keys, size: size}).phase(), cfg); err != nil {
		return nil, err
	}
	spec.progressNotify = cfg.WatchProgressNotify > 0
	specs := make([]watchSpec, cfg.Watchers)
	for i := range specs {
		specs[i] = spec
	}
	rssBefore := readRSS(cfg.RSSPid)
	set, err := startWatchers(ctx, s, cfg.WatchStreams, specs)
	if err != nil {
		return nil, err
	}
	defer set.stop()
	var rssPerWatcher int64
	if rssAfter := readRSS(cfg.RSSPid); rssBefore > 0 && rssAfter > 0 {
		rssPerWatcher = (rssAfter - rssBefore) / int64(len(specs))
	}
	ww := &watchWriters{s: s, keys: keys, size: size}
	res, err := runPhase(ctx, ww.phase(), cfg)
	if err != nil {
		return nil, err
	}
	lagging := set.drain(ctx, func(int) int64 { return ww.rev.Load() }, drainTimeout)
	progress, timeouts := set.requestProgress(ctx, drainTimeout)
	var gaps *hdrhistogram.Histogram
	missing := 0
	if cfg.WatchProgressNotify > 0 {
		gaps, missing = set.notifyGaps(ctx, 2*cfg.WatchProgressNotify+drainTimeout)
	}
	cctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	err = set.cancelAll(cctx)
	cancel()
	if err != nil {
		return nil, err
	}
	res.Watch = set.result(res.Elapsed, ww.acked.Load()*int64(len(specs)), lagging)
	res.Watch.RSSPerWatcher = rssPerWatcher
	res.Watch.Progress, res.Watch.ProgressTimeouts = opResult("progress", progress, 0, res.Elapsed), timeouts
	if gaps != nil {
		g := opResult("notify", gaps, 0, res.Elapsed)
		res.Watch.NotifyGaps, res.Watch.NotifyMissing = &g, missing
	}
	return res, nil
}

// readRSS returns the resident memory of process pid (0: this one) in
// bytes, or 0 for a negative pid or when it cannot be read.
func readRSS(pid int) int64 {
	if pid < 0 {
		return 0
	}
	n, err := ReadRSS(pid)
	if err != nil {
		return 0
	}
	return n
}
