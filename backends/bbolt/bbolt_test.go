package bbolt_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/engine/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance runs the engine suite with the default options (most
// commits stay pending until the batch interval), with pending writes
// flushed every few operations (reads merge the file and pending writes
// at every stage, snapshots held across flushes), and with every commit
// written at once.
func TestConformance(t *testing.T) {
	t.Run("default", func(t *testing.T) { enginetest.Run(t, bbolt.Engine(), enginetest.Options{}) })
	for _, tc := range []struct {
		name string
		opts bbolt.Options
	}{
		{"batch-limit=5", bbolt.Options{BatchLimit: 5, BatchInterval: time.Millisecond}},
		{"batch-limit=1000", bbolt.Options{BatchLimit: 1000, BatchInterval: time.Hour}},
		{"no-batch", bbolt.Options{BatchInterval: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := bbolt.Engine()
			e.Open = func(dir string, o engine.Options) (engine.Backend, error) {
				opts := tc.opts
				opts.NoSync, opts.Mlock = o.NoSync, o.Mlock
				return bbolt.Open(dir, &opts)
			}
			enginetest.Run(t, e, enginetest.Options{})
		})
	}
}

func BenchmarkEngine(b *testing.B) { enginetest.RunBenchmarks(b, bbolt.Engine()) }

// TestVerifyFile: a whole file and a missing one pass; the damaged ones
// are in cmd/strata's TestEngineVerifyAtStart (bbolt leaves a goroutine
// behind when a read-write open meets them).
func TestVerifyFile(t *testing.T) {
	dir := t.TempDir()
	if err := bbolt.VerifyFile(filepath.Join(dir, "data.db")); err != nil {
		t.Fatalf("missing file: %v", err)
	}
	db, err := bbolt.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b engine.Batch
	for i := range 2000 {
		b.Set(fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte("v"), 100))
	}
	if err := db.Commit(&b, engine.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bbolt.VerifyFile(filepath.Join(dir, "data.db")); err != nil {
		t.Fatal(err)
	}
}
