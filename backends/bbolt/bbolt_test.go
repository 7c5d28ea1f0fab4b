package bbolt_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/engine/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	enginetest.Run(t, bbolt.Engine(), enginetest.Options{})
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
