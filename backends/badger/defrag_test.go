package badger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
)

// TestDefragValueLog checks that Defrag gives back value log space: the
// conformance suite's defrag test uses values small enough to stay in the
// LSM tree.
func TestDefragValueLog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 160 MiB")
	}
	db, err := badger.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	const n = 160
	val := make([]byte, 1<<20) // at the value threshold: in the value log
	r := rand.New(rand.NewPCG(1, 2))
	key := func(i int) []byte { return fmt.Appendf(nil, "vlog/%05d", i) }
	var batch engine.Batch
	for i := range n {
		for j := range val {
			val[j] = byte(r.Uint32())
		}
		val[0] = byte(i) // told apart below
		batch.Set(key(i), val)
		if batch.Len() == 8 {
			if err := db.Commit(&batch, engine.NoSync); err != nil {
				t.Fatal(err)
			}
			batch.Reset()
		}
	}
	batch.Reset()
	for i := range n {
		if i%16 != 0 {
			batch.Delete(key(i))
		}
	}
	if err := db.Commit(&batch, engine.Sync); err != nil {
		t.Fatal(err)
	}
	before, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Defrag(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("size %d before defrag, %d after", before.Size, after.Size)
	if after.Size >= before.Size/2 {
		t.Errorf("defrag did not reclaim value log space: size %d before, %d after", before.Size, after.Size)
	}

	snap, err := db.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for ok := it.First(); ok; ok = it.Next() {
		i := got * 16
		if string(it.Key()) != string(key(i)) || len(it.Value()) != len(val) || it.Value()[0] != byte(i) {
			t.Fatalf("entry %d: key %q, %d byte value starting %d", got, it.Key(), len(it.Value()), it.Value()[0])
		}
		got++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if want := n / 16; got != want {
		t.Fatalf("%d keys left, want %d", got, want)
	}
}
