package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"
)

// Store is what a workload drives: an engine, an MVCC store or a cluster
// behind an adapter. Methods are called from many goroutines at once.
type Store interface {
	// Read fetches one key. A missing key is not an error.
	Read(ctx context.Context, key []byte) error
	// Write stores value under key.
	Write(ctx context.Context, key, value []byte) error
	// Scan reads up to n keys from start in key order.
	Scan(ctx context.Context, start []byte, n int) error
	// Delete removes key.
	Delete(ctx context.Context, key []byte) error
}

// BatchWriter is implemented by stores that can load many records in one
// write; Load uses it when present.
type BatchWriter interface {
	WriteBatch(ctx context.Context, keys, values [][]byte) error
}

// Config sets up a run.
type Config struct {
	// Records is how many records the load phase writes and the run phase
	// draws from.
	Records uint64
	// Keyspace shapes keys and values.
	Keyspace Keyspace
	// Clients is the number of concurrent clients. The default value is 16.
	Clients int
	// Duration bounds the run phase; Ops bounds it by operation count.
	// When both are zero the run lasts 10 seconds.
	Duration time.Duration
	Ops      uint64
	// Warmup runs the workload for this long before measuring.
	Warmup time.Duration
	// Rate limits the run to this many operations per second in total;
	// zero means as fast as possible. Under a rate, latency is measured from
	// each operation's intended start, so a stalled store is not flattered
	// by coordinated omission.
	Rate float64
	// Seed makes the run reproducible. Client i uses Seed+i.
	Seed uint64
	// Progress, if set, is called about once a second with the operations
	// done so far.
	Progress func(done uint64, elapsed time.Duration)

	// Watchers is how many watchers the watch workloads start (default
	// 100), spread over WatchStreams streams (default min(Watchers, 10)).
	// The k8s workload has one watcher per resource instead, as
	// kube-apiserver has.
	Watchers     int
	WatchStreams int
	// WatchProgressNotify, when set, is the targets' progress
	// notification interval (etcd's --watch-progress-notify-interval): the
	// watch workloads' watchers are created with progress_notify and the
	// report has the times between their notifications after the run.
	WatchProgressNotify time.Duration
	// RSSPid is the process whose resident memory the watch workloads
	// read before and after starting their watchers, to report the memory
	// per watcher: 0 is this process (where the engine, mvcc and cluster
	// modes run the store), a negative value none.
	RSSPid int
	// CompactInterval is how often the k8s workload compacts, as
	// kube-apiserver's --etcd-compaction-interval (default 5s; negative:
	// never), and how often the compact and defrag workloads pause
	// (default: once, halfway through the run).
	CompactInterval time.Duration
	// DataDir is the target's data directory, when it is on this machine:
	// pauses report its size (DU) before and after.
	DataDir string
}

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("bench: invalid config")

// EnsureDefaults sets the unset fields of c to their default values. Load,
// LoadWorkload and Run call it on their own copies of the caller's Config.
func (c *Config) EnsureDefaults() {
	if c.Clients <= 0 {
		c.Clients = 16
	}
	if c.Watchers <= 0 {
		c.Watchers = 100
	}
	if c.WatchStreams <= 0 {
		c.WatchStreams = 10
	}
	c.WatchStreams = min(c.WatchStreams, c.Watchers)
	if c.Duration == 0 && c.Ops == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Keyspace.ValueSize == 0 {
		c.Keyspace.ValueSize = 256
	}
}

// Validate reports a Config that cannot work, with an error wrapping
// ErrInvalidConfig. It expects EnsureDefaults to have run.
func (c *Config) Validate() error {
	switch {
	case c.Duration < 0:
		return fmt.Errorf("%w: Duration %s < 0", ErrInvalidConfig, c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("%w: Warmup %s < 0", ErrInvalidConfig, c.Warmup)
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 1):
		return fmt.Errorf("%w: Rate %v is not a rate", ErrInvalidConfig, c.Rate)
	case c.Keyspace.ValueSize < 0:
		return fmt.Errorf("%w: Keyspace.ValueSize %d < 0", ErrInvalidConfig, c.Keyspace.ValueSize)
	}
	return nil
}

// Histogram bounds: 1 µs to 60 s at 3 significant figures, as go-ycsb.
const (
	histMin   = 1
	histMax   = 60_000_000
	histSigFi = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigFi) }

// OpResult summarises one operation kind of a run. Latencies are in
// microseconds.
type OpResult struct {
	Op     string  `json:"op"`
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	OpsSec float64 `json:"ops_per_sec"`
	Mean   float64 `json:"mean_us"`
	P50    int64   `json:"p50_us"`
	P90    int64   `json:"p90_us"`
	P99    int64   `json:"p99_us"`
	P999   int64   `json:"p999_us"`
	Max    int64   `json:"max_us"`
	// Hist is the full latency histogram, for CDF plots and merging.
	Hist *hdrhistogram.Snapshot `json:"hist,omitempty"`
}

// Result is the outcome of a run phase.
type Result struct {
	Workload string        `json:"workload"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Ops      int64         `json:"ops"`
	Errors   int64         `json:"errors"`
	OpsSec   float64       `json:"ops_per_sec"`
	// PerOp holds one entry per operation kind the workload issued.
	PerOp []OpResult `json:"per_op"`
	// Total merges every operation kind.
	Total OpResult `json:"total"`
	// Series is the number of operations finished in each second.
	Series []int64 `json:"ops_per_second_series"`
	// FirstError is an example error, if any operation failed.
	FirstError string `json:"first_error,omitempty"`

	// Watch sums up the events the run's watchers received (watch and
	// k8s workloads).
	Watch *WatchResult `json:"watch,omitempty"`
	// Pauses are the compactions and defragmentations made during the run.
	Pauses []Pause `json:"pauses,omitempty"`
	// OpsSecOutsidePauses is the throughput while no pause was under way,
	// to set each pause's against.
	OpsSecOutsidePauses float64 `json:"ops_per_sec_outside_pauses,omitempty"`
	// Counts are the workload's own tallies: the k8s workload's CAS
	// conflicts, list pages and relists, for example.
	Counts map[string]int64 `json:"counts,omitempty"`
}

// Load writes cfg.Records records with cfg.Clients clients, in batches of up
// to 1000 when the store is a BatchWriter.
func Load(ctx context.Context, s Store, cfg Config) (time.Duration, error) {
	cfg.EnsureDefaults() // cfg is Load's own copy
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	ks := cfg.Keyspace
	return load(ctx, s, cfg, func(n uint64, r *rand.Rand) ([]byte, []byte) {
		return ks.Key(nil, n), ks.Value(nil, r)
	})
}

// LoadWorkload writes what workload w runs on (see Workload.LoadKey):
// cfg.Records records of its keyspace, or of the k8s workload's objects,
// or nothing.
func LoadWorkload(ctx context.Context, s Store, w Workload, cfg Config) (time.Duration, error) {
	cfg.EnsureDefaults() // cfg is LoadWorkload's own copy
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	switch w.LoadKey() {
	case "":
		return 0, nil
	case "k8s":
		return load(ctx, s, cfg, func(n uint64, r *rand.Rand) ([]byte, []byte) {
			res, key := k8sRecord(n)
			return key, k8sValue(res, r, time.Now())
		})
	}
	cfg.Keyspace.Hashed = w.HashedKeys
	return Load(ctx, s, cfg)
}

// load writes records 0 to cfg.Records-1, as record makes them.
func load(ctx context.Context, s Store, cfg Config, record func(n uint64, r *rand.Rand) (key, value []byte)) (time.Duration, error) {
	start := time.Now()
	next := NewCounter(0)
	bw, batched := s.(BatchWriter)
	const batch = 1000
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Clients)
	for c := range cfg.Clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
			var keys, vals [][]byte
			for ctx.Err() == nil {
				n := next.Add()
				if n >= cfg.Records {
					break
				}
				k, v := record(n, r)
				if !batched {
					if err := s.Write(ctx, k, v); err != nil {
						errc <- fmt.Errorf("bench: load record %d: %w", n, err)
						return
					}
					continue
				}
				keys, vals = append(keys, k), append(vals, v)
				if len(keys) == batch {
					if err := bw.WriteBatch(ctx, keys, vals); err != nil {
						errc <- fmt.Errorf("bench: load: %w", err)
						return
					}
					keys, vals = keys[:0], vals[:0]
				}
			}
			if len(keys) > 0 {
				if err := bw.WriteBatch(ctx, keys, vals); err != nil {
					errc <- fmt.Errorf("bench: load: %w", err)
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, err
	}
	return time.Since(start), ctx.Err()
}

// Run runs workload w against s (loaded by LoadWorkload) and measures it.
func Run(ctx context.Context, s Store, w Workload, cfg Config) (*Result, error) {
	cfg.EnsureDefaults() // cfg is Run's own copy
	if cfg.Rate == 0 {
		cfg.Rate = w.Rate
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	var es EtcdStore
	if w.NeedsEtcd() {
		var ok bool
		if es, ok = s.(EtcdStore); !ok {
			return nil, fmt.Errorf("bench: workload %s needs etcd's requests (transactions, watches, compaction): "+
				"the mvcc, cluster or endpoints mode", w.Name)
		}
	}
	if w.Defrag {
		if d, ok := s.(Defragger); !ok || len(d.DefragTargets()) == 0 {
			return nil, fmt.Errorf("bench: workload %s: the target cannot defragment", w.Name)
		}
	}
	var (
		res *Result
		err error
	)
	switch w.Kind {
	case KindK8s:
		res, err = runK8s(ctx, es, cfg)
	case KindWatch:
		res, err = runWatch(ctx, es, w, cfg)
	default:
		res, err = runMix(ctx, s, w, cfg)
	}
	if err != nil {
		return nil, err
	}
	res.Workload = w.Name
	return res, nil
}

// runMix runs a KindMix workload, with its pauses if it has any.
func runMix(ctx context.Context, s Store, w Workload, cfg Config) (*Result, error) {
	expectedInserts := uint64(0)
	if cfg.Ops > 0 {
		expectedInserts = uint64(float64(cfg.Ops) * (w.Insert / sum(w.proportions())) * 2)
	} else if w.Insert > 0 {
		expectedInserts = max(cfg.Records, 100000)
	}
	ch, err := newChooser(w, cfg.Records, expectedInserts)
	if err != nil {
		return nil, err
	}
	cfg.Keyspace.Hashed = w.HashedKeys
	ks := cfg.Keyspace
	ph := phase{
		ops: opNames[:],
		client: func(_ int, r *rand.Rand) opFunc {
			var key, val []byte
			return func(ctx context.Context) (int, error) {
				op := ch.op(r)
				return int(op), doOp(ctx, s, ch, ks, op, r, &key, &val)
			}
		},
	}
	if err := warmup(ctx, ph, cfg); err != nil {
		return nil, err
	}
	if w.Compact || w.Defrag {
		p := &pauser{s: s, compact: w.Compact, defrag: w.Defrag, cfg: cfg, track: newPauseTracker()}
		ph.track, ph.side = p.track, p.loop
	}
	return runPhase(ctx, ph, cfg)
}

// warmup runs ph for cfg.Warmup, unmeasured and without its side work.
func warmup(ctx context.Context, ph phase, cfg Config) error {
	if cfg.Warmup <= 0 {
		return nil
	}
	wcfg := cfg
	wcfg.Duration, wcfg.Ops, wcfg.Progress = cfg.Warmup, 0, nil
	ph.side, ph.track = nil, nil
	if _, err := runPhase(ctx, ph, wcfg); err != nil {
		return fmt.Errorf("bench: warmup: %w", err)
	}
	return nil
}

func sum(p [numOps]float64) float64 {
	t := 0.0
	for _, v := range p {
		t += v
	}
	return t
}

// opFunc issues one operation for one client and returns which of its
// phase's operation kinds it was.
type opFunc func(ctx context.Context) (op int, err error)

// phase is what runPhase drives.
type phase struct {
	// ops names the operation kinds, by the index opFunc returns.
	ops []string
	// client returns the opFunc of client c, which only it calls.
	client func(c int, r *rand.Rand) opFunc
	// side, if set, runs beside the clients until stop is closed, when
	// they are done; runPhase waits for it to return. ctx is the run's,
	// not cancelled when the phase ends.
	side func(ctx context.Context, stop <-chan struct{}, st *phaseStatus)
	// track, if set, times the operations against the pauses side makes.
	track *pauseTracker
}

// phaseStatus is what side work can see of a phase under way.
type phaseStatus struct {
	start time.Time
	done  *Counter // operations finished
}

type clientStats struct {
	hists  []*hdrhistogram.Histogram
	errs   []int64
	first  error
	series []int64
}

func runPhase(ctx context.Context, ph phase, cfg Config) (*Result, error) {
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	// Operations get their own context, not the run's deadline: one in
	// flight when the run ends completes as usual. With the deadline it
	// would fail, and the server's copy of the deadline (sent as a rounded
	// grpc-timeout) can fire first, so the failure would read "request
	// timed out" before the client's own context ended.
	opCtx, cancelOps := context.WithCancel(outer)
	defer cancelOps()
	var limiter *rate.Limiter
	if cfg.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	var issued Counter
	var done Counter
	start := time.Now()
	stats := make([]*clientStats, cfg.Clients)
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		st := &clientStats{hists: make([]*hdrhistogram.Histogram, len(ph.ops)), errs: make([]int64, len(ph.ops))}
		for i := range st.hists {
			st.hists[i] = newHist()
		}
		stats[c] = st
		wg.Go(func() {
			r := rand.New(rand.NewPCG(cfg.Seed+uint64(c), 0x5eed))
			do := ph.client(c, r)
			wait := time.NewTimer(time.Hour)
			defer wait.Stop()
			for {
				if cfg.Ops > 0 && issued.Add() >= cfg.Ops {
					return
				}
				began := time.Now()
				if limiter != nil {
					res := limiter.Reserve()
					d := res.Delay()
					began = began.Add(d) // intended start
					wait.Reset(d)
					select {
					case <-ctx.Done():
						res.Cancel()
						return
					case <-wait.C:
					}
				} else if ctx.Err() != nil {
					return
				}
				op, err := do(opCtx)
				if err != nil && opCtx.Err() != nil {
					return // the run was cancelled under this operation
				}
				ended := time.Now()
				if ph.track != nil {
					ph.track.observe(began, ended)
				}
				lat := ended.Sub(began).Microseconds()
				st.hists[op].RecordValue(min(max(lat, histMin), histMax))
				if err != nil {
					st.errs[op]++
					if st.first == nil {
						st.first = fmt.Errorf("%s: %w", ph.ops[op], err)
					}
				}
				sec := int(ended.Sub(start) / time.Second)
				for len(st.series) <= sec {
					st.series = append(st.series, 0)
				}
				st.series[sec]++
				done.Add()
			}
		})
	}
	stop := make(chan struct{})
	var swg sync.WaitGroup
	if cfg.Progress != nil {
		swg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					cfg.Progress(done.Last(), time.Since(start))
				}
			}
		})
	}
	if ph.side != nil {
		swg.Go(func() { ph.side(outer, stop, &phaseStatus{start: start, done: &done}) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	swg.Wait()
	res := summarize(stats, ph.ops, elapsed)
	if ph.track != nil {
		res.Pauses, res.OpsSecOutsidePauses = ph.track.report(start, res.Ops, elapsed)
	}
	return res, nil
}

func doOp(ctx context.Context, s Store, ch *chooser, ks Keyspace, op Op, r *rand.Rand, key, val *[]byte) error {
	switch op {
	case OpInsert:
		n := ch.inserts.Add()
		*key = ks.Key(*key, n)
		*val = ks.Value(*val, r)
		err := s.Write(ctx, *key, *val)
		if err == nil {
			ch.inserts.Ack(n)
		}
		return err
	}
	*key = ks.Key(*key, ch.record(r))
	switch op {
	case OpRead:
		return s.Read(ctx, *key)
	case OpUpdate:
		*val = ks.Value(*val, r)
		return s.Write(ctx, *key, *val)
	case OpScan:
		return s.Scan(ctx, *key, ch.scanLength(r))
	case OpReadModifyWrite:
		if err := s.Read(ctx, *key); err != nil {
			return err
		}
		*val = ks.Value(*val, r)
		return s.Write(ctx, *key, *val)
	case OpDelete:
		return s.Delete(ctx, *key)
	}
	return fmt.Errorf("bench: unknown op %v", op)
}

func summarize(stats []*clientStats, names []string, elapsed time.Duration) *Result {
	res := &Result{Elapsed: elapsed}
	total := newHist()
	var totalErrs int64
	for op, name := range names {
		h := newHist()
		var errs int64
		for _, st := range stats {
			h.Merge(st.hists[op])
			errs += st.errs[op]
		}
		if h.TotalCount() == 0 {
			continue
		}
		total.Merge(h)
		totalErrs += errs
		res.PerOp = append(res.PerOp, opResult(name, h, errs, elapsed))
	}
	for _, st := range stats {
		if st.first != nil && res.FirstError == "" {
			res.FirstError = st.first.Error()
		}
		for i, n := range st.series {
			for len(res.Series) <= i {
				res.Series = append(res.Series, 0)
			}
			res.Series[i] += n
		}
	}
	res.Total = opResult("total", total, totalErrs, elapsed)
	res.Ops, res.Errors, res.OpsSec = res.Total.Count, totalErrs, res.Total.OpsSec
	return res
}

func opResult(name string, h *hdrhistogram.Histogram, errs int64, elapsed time.Duration) OpResult {
	return OpResult{
		Op:     name,
		Count:  h.TotalCount(),
		Errors: errs,
		OpsSec: float64(h.TotalCount()) / elapsed.Seconds(),
		Mean:   h.Mean(),
		P50:    h.ValueAtQuantile(50),
		P90:    h.ValueAtQuantile(90),
		P99:    h.ValueAtQuantile(99),
		P999:   h.ValueAtQuantile(99.9),
		Max:    h.Max(),
		Hist:   h.Export(),
	}
}
