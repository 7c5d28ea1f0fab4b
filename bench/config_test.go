package bench_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/internal/optionstest"
)

func TestConfigValidate(t *testing.T) {
	optionstest.Validate(t, bench.ErrInvalidConfig, []optionstest.Case[bench.Config]{
		{Name: "defaults", Opts: bench.Config{}, OK: true},
		{Name: "by operations, at a rate", Opts: bench.Config{Ops: 100, Rate: 50, Warmup: time.Second}, OK: true},
		{Name: "negative duration", Opts: bench.Config{Duration: -time.Second}},
		{Name: "negative warmup", Opts: bench.Config{Warmup: -time.Second}},
		{Name: "negative rate", Opts: bench.Config{Rate: -1}},
		{Name: "rate not a number", Opts: bench.Config{Rate: math.NaN()}},
		{Name: "infinite rate", Opts: bench.Config{Rate: math.Inf(1)}},
		{Name: "negative value size", Opts: bench.Config{Keyspace: bench.Keyspace{ValueSize: -1}}},
	})
}

// TestRunRefusesInvalidConfig checks that Load and Run validate their
// Config before they touch the store.
func TestRunRefusesInvalidConfig(t *testing.T) {
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &bench.EngineStore{Backend: db}
	bad := bench.Config{Records: 10, Rate: -1}
	if _, err := bench.Load(context.Background(), s, bad); !errors.Is(err, bench.ErrInvalidConfig) {
		t.Fatalf("Load: %v, want ErrInvalidConfig", err)
	}
	w, err := bench.Preset("ycsb-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bench.Run(context.Background(), s, w, bad); !errors.Is(err, bench.ErrInvalidConfig) {
		t.Fatalf("Run: %v, want ErrInvalidConfig", err)
	}
}
