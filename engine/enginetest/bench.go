package enginetest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/strata-kv/strata/engine"
)

// RunBenchmarks runs the engine benchmarks against e. Names are stable so
// that benchstat can compare engines and runs:
//
//	Put/{seq,rand}/{sync,nosync}   batches of 100 puts of 100-byte values
//	Get                            random point gets over 100k keys
//	Scan/{100,1000}                forward range scans from a random key
func RunBenchmarks(b *testing.B, e engine.Engine) {
	for _, order := range []string{"seq", "rand"} {
		for _, sync := range []bool{true, false} {
			name := fmt.Sprintf("Put/%s/%s", order, map[bool]string{true: "sync", false: "nosync"}[sync])
			b.Run(name, func(b *testing.B) { benchPut(b, e, order == "rand", sync) })
		}
	}
	const keys = 100000
	// The read benchmarks share one loaded engine. It lives in the outer
	// benchmark's directory: a sub-benchmark's TempDir is removed after its
	// first (N=1) round while the engine is still in use.
	dir := b.TempDir()
	var db engine.Backend
	load := func(b *testing.B) engine.Backend {
		if db == nil {
			var err error
			if db, err = e.Open(dir, engine.Options{}); err != nil {
				b.Fatal(err)
			}
			var batch engine.Batch
			val := make([]byte, 100)
			for i := range keys {
				batch.Set(benchKey(uint64(i)), val)
				if batch.Len() == 1000 {
					mustCommit(b, db, &batch, engine.NoSync)
					batch.Reset()
				}
			}
			if err := db.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		return db
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	b.Run("Get", func(b *testing.B) {
		db := load(b)
		snap := mustSnapshot(b, db)
		defer snap.Close()
		r := rand.New(rand.NewPCG(1, 2))
		b.ResetTimer()
		for range b.N {
			if _, err := snap.Get(benchKey(r.Uint64N(keys))); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("Scan/%d", n), func(b *testing.B) {
			db := load(b)
			snap := mustSnapshot(b, db)
			defer snap.Close()
			r := rand.New(rand.NewPCG(3, 4))
			b.ResetTimer()
			for range b.N {
				it, err := snap.NewIter(&engine.IterOptions{LowerBound: benchKey(r.Uint64N(keys - uint64(n)))})
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for ok := it.First(); ok && got < n; ok = it.Next() {
					_ = it.Value()
					got++
				}
				if err := it.Close(); err != nil || got != n {
					b.Fatalf("scanned %d keys, %v", got, err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

func openBench(b *testing.B, e engine.Engine) engine.Backend {
	db, err := e.Open(b.TempDir(), engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

func benchKey(i uint64) []byte {
	k := make([]byte, 0, 16)
	k = append(k, "bench/"...)
	return binary.BigEndian.AppendUint64(k, i)
}

func benchPut(b *testing.B, e engine.Engine, random, sync bool) {
	db := openBench(b, e)
	defer db.Close()
	const perBatch = 100
	val := make([]byte, 100)
	r := rand.New(rand.NewPCG(5, 6))
	o := engine.NoSync
	if sync {
		o = engine.Sync
	}
	var batch engine.Batch
	var seq uint64
	b.SetBytes(perBatch * (16 + 100))
	b.ResetTimer()
	for range b.N {
		batch.Reset()
		for range perBatch {
			k := seq
			seq++
			if random {
				k = r.Uint64()
			}
			batch.Set(benchKey(k), val)
		}
		if err := db.Commit(&batch, o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "puts/s")
}
