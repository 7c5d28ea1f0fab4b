package enginetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/strata-kv/strata/engine"
)

// testBulkLoad checks an engine's bulk loader (engine.BulkLoader), and the
// SortedWriter on engines without one: sorted keys, including values as
// large as allowed, are loaded, readable, durable across a reopen and
// writable after; a key out of order is refused; an aborted load does not
// keep Close waiting.
func (s *suite) testBulkLoad(t *testing.T) {
	dir := t.TempDir()
	b := s.open(t, dir)
	w, err := engine.NewSortedWriter(b)
	if err != nil {
		t.Fatal(err)
	}
	m := model{}
	key := make([]byte, 0, 16)
	for i := range 50000 {
		key = fmt.Appendf(key[:0], "k%08d", i)
		value := fmt.Appendf(nil, "value %d", i)
		switch i {
		case 100:
			value = make([]byte, 2<<20) // past badger's value threshold
		case 101:
			value = nil
		}
		if err := w.Set(key, value); err != nil { // key is reused: the loader copies
			t.Fatalf("set %s: %v", key, err)
		}
		m[string(key)] = string(value)
	}
	if err := w.Set([]byte("k00000001"), []byte("x")); !errors.Is(err, engine.ErrLoadOrder) {
		t.Fatalf("set out of order: %v, want ErrLoadOrder", err)
	}
	if err := w.Set([]byte("k99999999"), make([]byte, engine.MaxValueSize+1)); !errors.Is(err, engine.ErrValueTooLarge) {
		t.Fatalf("set of a value too large: %v, want ErrValueTooLarge", err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Set([]byte("k99999999"), nil); !errors.Is(err, engine.ErrLoadEnded) {
		t.Fatalf("set after finish: %v, want ErrLoadEnded", err)
	}
	if err := w.Finish(); !errors.Is(err, engine.ErrLoadEnded) {
		t.Fatalf("second finish: %v, want ErrLoadEnded", err)
	}
	checkModel(t, b, m)
	var batch engine.Batch
	batch.Set([]byte("after"), []byte("load"))
	batch.Delete([]byte("k00000002"))
	mustCommit(t, b, &batch, engine.Sync)
	m.apply(&batch)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = s.open(t, dir)
	checkModel(t, b, m)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// An aborted load, and one left unfinished: Close does not hang.
	for _, abort := range []bool{true, false} {
		b := s.open(t, t.TempDir())
		w, err := engine.NewSortedWriter(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			if err := w.Set(fmt.Appendf(nil, "k%08d", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		if abort {
			w.Abort()
			if err := w.Set([]byte("k99999999"), nil); !errors.Is(err, engine.ErrLoadEnded) {
				t.Fatalf("set after abort: %v, want ErrLoadEnded", err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
