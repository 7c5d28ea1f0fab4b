package badger

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-kv/strata/engine"
)

// TestSyncGroupSharesRounds checks that concurrent callers share sync rounds
// and that the round a caller waits for covers what it did before calling:
// each caller "commits" (bumps committed) and then syncs; a round records
// how many commits it saw when it started.
func TestSyncGroupSharesRounds(t *testing.T) {
	var g syncGroup
	var rounds, committed, synced atomic.Int64
	const callers = 64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			time.Sleep(time.Duration(i%8) * time.Millisecond)
			mine := committed.Add(1)
			err := g.do(func() error {
				seen := committed.Load()
				rounds.Add(1)
				time.Sleep(2 * time.Millisecond)
				synced.Store(seen) // rounds run one at a time
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			if s := synced.Load(); s < mine {
				t.Errorf("caller %d: commit %d returned from a sync covering %d", i, mine, s)
			}
		})
	}
	wg.Wait()
	if n := rounds.Load(); n >= callers/2 {
		t.Errorf("%d rounds for %d concurrent callers: syncs are not shared", n, callers)
	} else {
		t.Logf("%d rounds for %d callers", n, callers)
	}
}

func TestSyncGroupError(t *testing.T) {
	var g syncGroup
	boom := errors.New("boom")
	if err := g.do(func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("do = %v, want %v", err, boom)
	}
	if err := g.do(func() error { return nil }); err != nil {
		t.Fatalf("do after a failed round = %v", err)
	}
	func() {
		defer func() { recover() }()
		g.do(func() error { panic("sync panicked") })
	}()
	if err := g.do(func() error { return nil }); err != nil {
		t.Fatalf("do after a panicked round = %v", err)
	}
}

// TestSyncCoversImmutableMemtables checks that a sync round fsyncs the
// write-ahead logs of full memtables waiting for their flush, which badger's
// DB.Sync skips.
func TestSyncCoversImmutableMemtables(t *testing.T) {
	dir := t.TempDir()
	// Small memtables rotate after a few hundred KiB of writes.
	d, err := Open(dir, &Options{MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	mems := func() []uint64 {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, e := range ents {
			if n, ok := fileNumber(e.Name(), memExt); ok {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	first := mems()
	if len(first) != 1 {
		t.Fatalf("WAL files after open: %v", first)
	}
	var batch engine.Batch
	val := make([]byte, 1000)
	for i := 0; slices.Max(mems()) == first[0]; i++ {
		if i == 10000 {
			t.Fatal("memtable never rotated")
		}
		batch.Reset()
		for j := range 10 {
			batch.Set(fmt.Appendf(nil, "k/%06d/%d", i, j), val)
		}
		if err := d.Commit(&batch, engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// The first WAL is either synced as immutable or already flushed and
	// deleted; the newest one is badger's to sync.
	now := mems()
	newest := slices.Max(now)
	for _, n := range now {
		_, synced := d.durable.synced[n]
		if n != newest && !synced {
			t.Errorf("immutable WAL %d not synced (files %v, synced %v)", n, now, d.durable.synced)
		}
		if n == newest && synced {
			t.Errorf("active WAL %d recorded as synced immutable", n)
		}
	}
	if _, ok := d.durable.names[fmt.Sprintf("%05d%s", newest, memExt)]; !ok {
		t.Errorf("directory not synced after WAL %d was created", newest)
	}
}
