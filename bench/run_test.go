package bench_test

import (
	"context"
	"testing"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/mvcc"
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
	for _, w := range bench.Presets {
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
		})
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
