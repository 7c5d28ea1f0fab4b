package bench

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Pause is one compaction or defragmentation made during a run, and what
// the run's operations saw meanwhile.
type Pause struct {
	// Kind is "compact" or "defrag".
	Kind string `json:"kind"`
	// Target is what was defragmented: a member's endpoint, or "engine".
	Target string `json:"target,omitempty"`
	// Revision is the revision compacted at.
	Revision int64 `json:"revision,omitempty"`
	// At is when the call was made, from the start of the run; Took is how
	// long it took to return.
	At   time.Duration `json:"at_ns"`
	Took time.Duration `json:"took_ns"`
	// WorstOp is the highest latency, in µs, of the operations under way
	// at any time during the call.
	WorstOp int64 `json:"worst_op_us"`
	// Ops is how many operations finished during the call, OpsSec their
	// rate.
	Ops    int64   `json:"ops"`
	OpsSec float64 `json:"ops_per_sec"`
	// Before and After are the target's space just before the call and
	// just after it returned.
	Before Disk `json:"before"`
	After  Disk `json:"after"`
	// Error is the call's error, if it failed.
	Error string `json:"error,omitempty"`
}

// pauseTracker times a run's operations against the pauses made during
// it. Safe for concurrent use.
type pauseTracker struct {
	// active counts the pauses under way; lastEnd is when the latest one
	// ended (UnixNano). An operation that began after lastEnd while no
	// pause is under way, as most do, takes no lock.
	active  atomic.Int32
	lastEnd atomic.Int64

	mu      sync.Mutex
	windows []*pauseWindow // in start order; guarded by mu
}

type pauseWindow struct {
	p          Pause
	start, end int64 // UnixNano; end is 0 while under way
}

func newPauseTracker() *pauseTracker { return &pauseTracker{} }

// begin starts a pause. Operations ending from now on see it.
func (t *pauseTracker) begin(p Pause) *pauseWindow {
	t.active.Add(1)
	w := &pauseWindow{p: p, start: time.Now().UnixNano()}
	t.mu.Lock()
	t.windows = append(t.windows, w)
	t.mu.Unlock()
	return w
}

// end ends pause w.
func (t *pauseTracker) end(w *pauseWindow, err error) {
	now := time.Now().UnixNano()
	t.mu.Lock()
	w.end = now
	if err != nil {
		w.p.Error = err.Error()
	}
	t.mu.Unlock()
	t.lastEnd.Store(now)
	t.active.Add(-1)
}

// observe accounts for an operation that ran from began to ended.
func (t *pauseTracker) observe(began, ended time.Time) {
	b := began.UnixNano()
	if t.active.Load() == 0 && b > t.lastEnd.Load() {
		return
	}
	e := ended.UnixNano()
	lat := (e - b) / 1000
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.windows) - 1; i >= 0; i-- {
		w := t.windows[i]
		wEnd := w.end
		if wEnd == 0 {
			wEnd = math.MaxInt64
		}
		if wEnd < b {
			break // this one and every earlier one ended before the operation began
		}
		if e >= w.start {
			w.p.WorstOp = max(w.p.WorstOp, lat)
			if e <= wEnd {
				w.p.Ops++
			}
		}
	}
}

// measure makes call as pause p, with the target's space measured (on s
// and in dir) before and after it, outside the pause.
func (t *pauseTracker) measure(ctx context.Context, s Store, dir string, p Pause, call func() error) {
	p.Before = MeasureDisk(ctx, s, dir)
	w := t.begin(p)
	err := call()
	t.end(w, err)
	after := MeasureDisk(ctx, s, dir)
	t.mu.Lock()
	w.p.After = after
	t.mu.Unlock()
}

// report returns the pauses of a run that started at start and lasted
// elapsed with ops operations, and the throughput outside them.
func (t *pauseTracker) report(start time.Time, ops int64, elapsed time.Duration) ([]Pause, float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Pause
	outOps, outTime := ops, elapsed
	for _, w := range t.windows {
		p := w.p
		p.At = time.Duration(w.start - start.UnixNano())
		p.Took = time.Duration(w.end - w.start)
		if p.Took > 0 {
			p.OpsSec = float64(p.Ops) / p.Took.Seconds()
		}
		outOps -= p.Ops
		outTime -= p.Took
		out = append(out, p)
	}
	var rate float64
	if outTime > 0 {
		rate = float64(max(outOps, 0)) / outTime.Seconds()
	}
	return out, rate
}

// pauser makes the pauses of the compact and defrag workloads: once
// halfway through the run, or every cfg.CompactInterval.
type pauser struct {
	s               Store
	compact, defrag bool
	cfg             Config
	track           *pauseTracker
}

// loop is the phase's side work.
func (p *pauser) loop(ctx context.Context, stop <-chan struct{}, st *phaseStatus) {
	if iv := p.cfg.CompactInterval; iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				// A pause may outlast the interval: never start one
				// once the run is over.
				select {
				case <-stop:
					return
				default:
				}
				p.pause(ctx)
			}
		}
	}
	if d := p.cfg.Duration; d > 0 {
		t := time.NewTimer(time.Until(st.start.Add(d / 2)))
		defer t.Stop()
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	} else {
		// Bounded by operations: halfway is when half are done.
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for st.done.Last() < p.cfg.Ops/2 {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
	p.pause(ctx)
}

// pause compacts the store at its current revision and/or defragments
// each of its members in turn.
func (p *pauser) pause(ctx context.Context) {
	dir := p.cfg.DataDir
	if es, ok := p.s.(EtcdStore); ok && (p.compact || p.defrag) {
		rev, err := currentRev(ctx, es)
		p.track.measure(ctx, p.s, dir, Pause{Kind: "compact", Revision: rev}, func() error {
			if err != nil {
				return err
			}
			return es.Compact(ctx, rev, true)
		})
	}
	if d, ok := p.s.(Defragger); ok && p.defrag {
		for _, target := range d.DefragTargets() {
			p.track.measure(ctx, p.s, dir, Pause{Kind: "defrag", Target: target}, func() error {
				return d.Defrag(ctx, target)
			})
		}
	}
}
