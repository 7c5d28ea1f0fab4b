package bench_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/bench"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  bench.Config
		ok   bool
	}{
		{"defaults", bench.Config{}, true},
		{"by operations, at a rate", bench.Config{Ops: 100, Rate: 50, Warmup: time.Second}, true},
		{"negative duration", bench.Config{Duration: -time.Second}, false},
		{"negative warmup", bench.Config{Warmup: -time.Second}, false},
		{"negative rate", bench.Config{Rate: -1}, false},
		{"rate not a number", bench.Config{Rate: math.NaN()}, false},
		{"infinite rate", bench.Config{Rate: math.Inf(1)}, false},
		{"negative value size", bench.Config{Keyspace: bench.Keyspace{ValueSize: -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.EnsureDefaults()
			err := c.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, bench.ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig", err)
			}
		})
	}
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
