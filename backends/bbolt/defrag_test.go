package bbolt_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
)

// fill writes n keys of size bytes each and deletes all but every keep-th.
func fill(tb testing.TB, db *bbolt.DB, n, size, keep int) {
	tb.Helper()
	var b engine.Batch
	val := make([]byte, size)
	for i := range n {
		b.Set(fmt.Appendf(nil, "key/%08d", i), val)
		if b.Len() == 5000 {
			if err := db.Commit(&b, engine.NoSync); err != nil {
				tb.Fatal(err)
			}
			b.Reset()
		}
	}
	for i := range n {
		if i%keep != 0 {
			b.Delete(fmt.Appendf(nil, "key/%08d", i))
		}
		if b.Len() == 5000 {
			if err := db.Commit(&b, engine.NoSync); err != nil {
				tb.Fatal(err)
			}
			b.Reset()
		}
	}
	if err := db.Commit(&b, engine.Sync); err != nil {
		tb.Fatal(err)
	}
}

// TestDefragStats checks the sizes LastDefrag reports and that writes made
// during the copy are replayed onto the new file.
func TestDefragStats(t *testing.T) {
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fill(t, db, 50000, 512, 10)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		var b engine.Batch
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.Reset()
			b.Set(fmt.Appendf(nil, "during/%d", i), nil)
			if err := db.Commit(&b, engine.NoSync); err != nil {
				t.Error(err)
				return
			}
		}
	})
	err = db.Defrag(context.Background())
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	st := db.LastDefrag()
	t.Logf("%+v", st)
	if st.SizeAfter >= st.SizeBefore/4 || st.SizeAfter <= 0 {
		t.Errorf("size %d -> %d: want at least 4x smaller after deleting 90%%", st.SizeBefore, st.SizeAfter)
	}
	if st.WritePause > st.Duration || st.ReadPause > st.WritePause {
		t.Errorf("pauses out of order: %+v", st)
	}
}

// BenchmarkDefragPause defrags a 100k-key file (90% deleted) while a reader
// and a writer run, and reports the defrag's duration, how long writers and
// new snapshots were held back, and the slowest read seen meanwhile.
func BenchmarkDefragPause(b *testing.B) {
	for range b.N {
		b.StopTimer()
		db, err := bbolt.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		fill(b, db, 100000, 1024, 10)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var maxRead time.Duration
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				s, err := db.NewSnapshot()
				if err != nil {
					b.Error(err)
					return
				}
				s.Get([]byte("key/00000010"))
				s.Close()
				maxRead = max(maxRead, time.Since(start))
			}
		})
		wg.Go(func() {
			var bt engine.Batch
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				bt.Reset()
				bt.Set(fmt.Appendf(nil, "during/%d", i), nil)
				if err := db.Commit(&bt, engine.NoSync); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StartTimer()
		err = db.Defrag(context.Background())
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		st := db.LastDefrag()
		b.ReportMetric(float64(st.Duration.Microseconds()), "defrag-µs")
		b.ReportMetric(float64(st.WritePause.Microseconds()), "write-pause-µs")
		b.ReportMetric(float64(st.ReadPause.Microseconds()), "read-pause-µs")
		b.ReportMetric(float64(maxRead.Microseconds()), "max-read-µs")
		b.ReportMetric(float64(st.Replayed), "replayed-batches")
		db.Close()
	}
}
