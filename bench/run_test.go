package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/server"
)

// TestRunPresetsOnEngine loads a small keyspace into a real engine and runs
// every preset for a fixed number of operations.
func TestRunPresetsOnEngine(t *testing.T) {
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &bench.EngineStore{Backend: db}
	cfg := bench.Config{Records: 2000, Clients: 4, Ops: 2000, Seed: 7, Keyspace: bench.Keyspace{ValueSize: 100}}
	ctx := context.Background()
	if _, err := bench.Load(ctx, s, cfg); err != nil {
		t.Fatal(err)
	}
	for _, w := range bench.Presets() {
		if w.NeedsEtcd() {
			continue // see TestEtcdWorkloadsOnCluster
		}
		t.Run(w.Name, func(t *testing.T) {
			res, err := bench.Run(ctx, s, w, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 {
				t.Fatalf("%d errors, first: %s", res.Errors, res.FirstError)
			}
			if res.Ops != int64(cfg.Ops) {
				t.Fatalf("ran %d ops, want %d", res.Ops, cfg.Ops)
			}
			var perOp int64
			for _, o := range res.PerOp {
				perOp += o.Count
				if o.P50 > o.P99 || o.P99 > o.Max || o.Count == 0 {
					t.Errorf("%s: inconsistent summary %+v", o.Op, o)
				}
			}
			var series int64
			for _, n := range res.Series {
				series += n
			}
			if perOp != res.Ops || series != res.Ops {
				t.Fatalf("per-op counts %d and series %d do not add up to %d", perOp, series, res.Ops)
			}
			if w.Defrag {
				// Halfway through: one defrag of the engine, no compaction
				// (an engine keeps no revisions).
				if len(res.Pauses) != 1 || res.Pauses[0].Kind != "defrag" || res.Pauses[0].Error != "" ||
					res.Pauses[0].Before.EngineSize <= 0 || res.Pauses[0].After.EngineSize <= 0 {
					t.Fatalf("pauses %+v, want one defrag with sizes", res.Pauses)
				}
			}
		})
	}
}

// TestEtcdWorkloadsNeedEtcd checks that the workloads that need etcd's
// requests refuse a plain engine.
func TestEtcdWorkloadsNeedEtcd(t *testing.T) {
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range []string{"k8s", "watch-latency", "compact"} {
		w, _ := bench.Preset(name)
		if _, err := bench.Run(context.Background(), &bench.EngineStore{Backend: db}, w, bench.Config{Ops: 10}); err == nil ||
			!strings.Contains(err.Error(), "needs etcd") {
			t.Errorf("%s on an engine: %v", name, err)
		}
	}
}

// TestRunOnMVCCStore runs a YCSB mix through the MVCC store.
func TestRunOnMVCCStore(t *testing.T) {
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := mvcc.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &bench.MVCCStore{Store: st}
	cfg := bench.Config{Records: 1000, Clients: 4, Ops: 1000, Seed: 3, Keyspace: bench.Keyspace{ValueSize: 64}}
	ctx := context.Background()
	if _, err := bench.Load(ctx, s, cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ycsb-a", "ycsb-e", "delete"} {
		w, _ := bench.Preset(name)
		res, err := bench.Run(ctx, s, w, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Ops != int64(cfg.Ops) {
			t.Fatalf("%s: %d ops, %d errors (%s)", name, res.Ops, res.Errors, res.FirstError)
		}
	}
	if st.Rev() < 1000 {
		t.Fatalf("store at revision %d after loading 1000 records", st.Rev())
	}
}

// TestRunOnCluster starts a one-member Strata cluster and drives it over
// gRPC with clientv3, as kvbench's cluster mode does.
func TestRunOnCluster(t *testing.T) {
	c, err := bench.StartCluster(t.TempDir(), 1, bbolt.Engine())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := bench.NewClientStore(c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := bench.Config{Records: 500, Clients: 8, Ops: 500, Seed: 5, Keyspace: bench.Keyspace{ValueSize: 64}}
	ctx := context.Background()
	if _, err := bench.Load(ctx, s, cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ycsb-a", "ycsb-e"} {
		w, _ := bench.Preset(name)
		res, err := bench.Run(ctx, s, w, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors != 0 || res.Ops != int64(cfg.Ops) {
			t.Fatalf("%s: %d ops, %d errors (%s)", name, res.Ops, res.Errors, res.FirstError)
		}
	}
	if c.DU() <= 0 {
		t.Fatalf("cluster data dir size %d", c.DU())
	}
}

// TestEtcdWorkloadsOnCluster runs each workload that needs etcd's requests
// briefly against a one-member Strata cluster, as kvbench's cluster mode
// does, and checks what each reports besides its operations.
func TestEtcdWorkloadsOnCluster(t *testing.T) {
	dir := t.TempDir()
	const notify = 100 * time.Millisecond
	c, err := bench.StartCluster(dir, 1, bbolt.Engine(), func(c *server.Config) { c.WatchProgressNotifyInterval = notify })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := bench.NewClientStore(c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cfg := bench.Config{Records: 300, Clients: 4, Duration: 700 * time.Millisecond, Seed: 9,
		Keyspace: bench.Keyspace{ValueSize: 64}, Watchers: 6, WatchStreams: 2, WatchProgressNotify: notify,
		CompactInterval: 200 * time.Millisecond, DataDir: c.Dir()}
	for _, name := range []string{"k8s", "watch-fanout", "watch-latency", "compact", "defrag"} {
		t.Run(name, func(t *testing.T) {
			w, err := bench.Preset(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bench.LoadWorkload(ctx, s, w, cfg); err != nil {
				t.Fatal(err)
			}
			cfg := cfg
			if name == "compact" || name == "defrag" {
				cfg.CompactInterval = 0 // once, halfway
			}
			res, err := bench.Run(ctx, s, w, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Ops == 0 {
				t.Fatalf("%d ops, %d errors (%s)", res.Ops, res.Errors, res.FirstError)
			}
			if w.Kind != bench.KindMix {
				wr := res.Watch
				if wr == nil || wr.Events == 0 || wr.Events < wr.Expected || wr.Lagging != 0 || wr.Latency.Count == 0 {
					t.Fatalf("watch result %+v", wr)
				}
			}
			kinds := map[string]int{}
			for _, p := range res.Pauses {
				kinds[p.Kind]++
				if p.Error != "" {
					t.Errorf("pause %+v failed", p)
				}
				if p.Before.EngineSize <= 0 || p.After.DU <= 0 || p.Took <= 0 {
					t.Errorf("pause %+v lacks sizes or duration", p)
				}
			}
			switch name {
			case "k8s":
				// The first turn of the compactor only takes note of the
				// revision.
				if kinds["compact"] < 1 || res.Counts["list pages"] == 0 || res.Watch.Watchers != 4 {
					t.Fatalf("pauses %v, counts %v, %d watchers", kinds, res.Counts, res.Watch.Watchers)
				}
			case "watch-fanout", "watch-latency":
				wr := res.Watch
				if wr.Watchers != 6 || wr.Streams != 2 || wr.Expected != res.Ops*6 {
					t.Fatalf("watch result %+v for %d puts", wr, res.Ops)
				}
				checkWatchRates(t, wr, notify)
			case "compact":
				if kinds["compact"] != 1 || len(res.Pauses) != 1 {
					t.Fatalf("pauses %+v", res.Pauses)
				}
			case "defrag":
				if kinds["compact"] != 1 || kinds["defrag"] != 1 || res.Pauses[1].Target != c.Endpoints()[0] {
					t.Fatalf("pauses %+v", res.Pauses)
				}
			}
		})
	}
}

// checkWatchRates checks the creation and cancellation rates and, when
// the watchers asked for them, the progress notifications of a watch
// workload's result.
func checkWatchRates(t *testing.T, wr *bench.WatchResult, notify time.Duration) {
	t.Helper()
	if wr.CreatedSec <= 0 || wr.CanceledSec <= 0 || wr.Progress.Count != int64(wr.Streams) || wr.ProgressTimeouts != 0 {
		t.Fatalf("created %.0f/s, canceled %.0f/s, progress %+v (%d without)", wr.CreatedSec, wr.CanceledSec, wr.Progress, wr.ProgressTimeouts)
	}
	if notify == 0 {
		if wr.NotifyGaps != nil {
			t.Fatalf("notification gaps %+v measured without progress_notify", wr.NotifyGaps)
		}
		return
	}
	// Each watcher got two notifications at least: one gap each. The
	// gaps are the interval, give or take jitter and the machine's load.
	if g := wr.NotifyGaps; g == nil || wr.NotifyMissing != 0 || g.Count < int64(wr.Watchers) || g.P50 < notify.Microseconds()/2 {
		t.Fatalf("notification gaps %+v, %d watchers without", wr.NotifyGaps, wr.NotifyMissing)
	}
}

// TestWatchRatesOnMVCCStore runs the watch workloads on the MVCC store in
// process, with and without progress notifications.
func TestWatchRatesOnMVCCStore(t *testing.T) {
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := mvcc.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for _, notify := range []time.Duration{0, 50 * time.Millisecond} {
		s := &bench.MVCCStore{Store: st, ProgressNotifyInterval: notify}
		cfg := bench.Config{Records: 100, Clients: 2, Duration: 300 * time.Millisecond, Seed: 4,
			Keyspace: bench.Keyspace{ValueSize: 64}, Watchers: 40, WatchStreams: 3, WatchProgressNotify: notify}
		for _, name := range []string{"watch-fanout", "watch-latency"} {
			w, _ := bench.Preset(name)
			res, err := bench.Run(ctx, s, w, cfg)
			if err != nil {
				t.Fatal(err)
			}
			wr := res.Watch
			if wr == nil || wr.Lagging != 0 || wr.Events < wr.Expected || wr.Watchers != 40 {
				t.Fatalf("%s: watch result %+v", name, wr)
			}
			checkWatchRates(t, wr, notify)
		}
	}
}
