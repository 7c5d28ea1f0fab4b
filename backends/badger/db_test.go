package badger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
)

// TestBatchTooLarge checks that batches over badger's transaction limit,
// including range deletions over many keys, fail whole with
// ErrBatchTooLarge.
func TestBatchTooLarge(t *testing.T) {
	db, err := badger.Open(t.TempDir(), &badger.Options{MemTableSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	val := bytes.Repeat([]byte("v"), 1000) // in the LSM tree
	var batch engine.Batch
	for i := range 3000 { // 3 MB > 15% of 16 MiB
		batch.Set(fmt.Appendf(nil, "big/%05d", i), val)
	}
	if err := db.Commit(&batch, engine.Sync); !errors.Is(err, engine.ErrBatchTooLarge) {
		t.Fatalf("commit of 3 MB: %v, want ErrBatchTooLarge", err)
	}
	// In slices that fit, then one range deletion over all of them.
	const keys = 100000
	for i := range keys {
		if i%10000 == 0 {
			batch.Reset()
		}
		batch.Set(fmt.Appendf(nil, "many/%06d", i), nil)
		if i%10000 == 9999 {
			if err := db.Commit(&batch, engine.NoSync); err != nil {
				t.Fatal(err)
			}
		}
	}
	batch.Reset()
	batch.Set([]byte("marker"), []byte("1"))
	batch.DeleteRange([]byte("many/"), []byte("many0"))
	if err := db.Commit(&batch, engine.Sync); !errors.Is(err, engine.ErrBatchTooLarge) {
		t.Fatalf("range deletion over %d keys: %v, want ErrBatchTooLarge", keys, err)
	}
	snap, err := db.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if _, err := snap.Get([]byte("marker")); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("a refused batch was partly applied: Get(marker) = %v", err)
	}
	if _, err := snap.Get([]byte("many/050000")); err != nil {
		t.Errorf("a refused range deletion was partly applied: %v", err)
	}
}

// TestCloseWithOpenSnapshot checks that Close releases snapshots and
// iterators left open, reports them, and that they fail cleanly afterwards.
func TestCloseWithOpenSnapshot(t *testing.T) {
	db, err := badger.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var batch engine.Batch
	batch.Set([]byte("a"), []byte("1"))
	batch.Set([]byte("b"), []byte("2"))
	if err := db.Commit(&batch, engine.NoSync); err != nil {
		t.Fatal(err)
	}
	snap, err := db.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := snap.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !it.First() {
		t.Fatal("First found nothing")
	}
	if err := db.Close(); err == nil {
		t.Error("Close with an open snapshot returned nil")
	}
	if it.Next() || it.Valid() || it.Key() != nil {
		t.Error("iterator still positioned after Close")
	}
	if err := it.Close(); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("iterator Close after DB Close: %v, want ErrClosed", err)
	}
	if _, err := snap.Get([]byte("a")); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if _, err := snap.NewIter(nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("NewIter after Close: %v, want ErrClosed", err)
	}
	if err := snap.Close(); err != nil {
		t.Errorf("snapshot Close after DB Close: %v", err)
	}
	for name, err := range map[string]error{
		"Sync":   db.Sync(),
		"Backup": db.Backup(&bytes.Buffer{}),
		"Defrag": db.Defrag(context.Background()),
		"Stats": func() error {
			_, err := db.Stats()
			return err
		}(),
	} {
		if !errors.Is(err, engine.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConcurrentSyncCommits runs synced commits from many goroutines and
// checks they all survive a reopen.
func TestConcurrentSyncCommits(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 50
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			var batch engine.Batch
			for i := range each {
				batch.Reset()
				batch.Set(fmt.Appendf(nil, "w%02d/%03d", w, i), []byte("v"))
				if err := db.Commit(&batch, engine.Sync); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d synced commits from %d goroutines in %v", writers*each, writers, time.Since(start))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = badger.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[string]string{}
	for w := range writers {
		for i := range each {
			want[fmt.Sprintf("w%02d/%03d", w, i)] = "v"
		}
	}
	check(t, db, want)
}

// TestDefragCancelAndClose checks that Defrag returns when its context is
// cancelled or the DB is closed, and that Close waits for the work in
// progress.
func TestDefragCancelAndClose(t *testing.T) {
	db, err := badger.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var batch engine.Batch
	val := bytes.Repeat([]byte("x"), 1000)
	for i := range 20000 {
		batch.Set(fmt.Appendf(nil, "k/%06d", i), val)
		if batch.Len() == 1000 {
			if err := db.Commit(&batch, engine.NoSync); err != nil {
				t.Fatal(err)
			}
			batch.Reset()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- db.Defrag(ctx) }()
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Defrag: %v", err)
	}
	go func() { errc <- db.Defrag(context.Background()) }()
	time.Sleep(time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil && !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Defrag interrupted by Close: %v", err)
	}
}

// TestLargeValues commits the largest value the engine accepts (in the value
// log) and the largest that stays in the LSM tree, and reads them back
// before and after a reopen.
func TestLargeValues(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"max":    string(bytes.Repeat([]byte("m"), engine.MaxValueSize)),
		"inline": string(bytes.Repeat([]byte("i"), badger.DefaultValueThreshold-1)),
	}
	var batch engine.Batch
	for k, v := range want {
		batch.Set([]byte(k), []byte(v))
	}
	if err := db.Commit(&batch, engine.Sync); err != nil {
		t.Fatal(err)
	}
	check(t, db, want)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = badger.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check(t, db, want)
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db, err := badger.Engine().Open(t.TempDir(), engine.Options{Logger: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte("engine=badger")) {
		t.Errorf("nothing logged through slog: %q", buf.String())
	}
}
