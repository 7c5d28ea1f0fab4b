package badger_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
)

// TestRangeDeleteIsSerialized checks that a range deletion behaves as if
// applied at its place in the commit order, even when a concurrent commit
// writes into the range while the deletion reads it. Writer B commits pairs
// {c=i, r/i}; writer A deletes [c, r0), which covers both. In any serial
// order either both of a pair survive A or neither does, so a snapshot that
// holds r/i must hold c >= i.
func TestRangeDeleteIsSerialized(t *testing.T) {
	db, err := badger.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rounds := 2000
	if raceEnabled {
		rounds = 300
	}
	// B commits when A hands it a token, twice per round, so that it runs
	// alongside A's commits without piling up keys for A to scan.
	tokens := make(chan struct{}, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		var b engine.Batch
		i := 0
		for range tokens {
			i++
			b.Reset()
			b.Set([]byte("c"), strconv.AppendInt(nil, int64(i), 10))
			b.Set(fmt.Appendf(nil, "r/%08d", i), nil)
			if err := db.Commit(&b, engine.NoSync); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer func() {
		close(tokens)
		wg.Wait()
	}()
	var b engine.Batch
	for n := range rounds {
		for range 2 {
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
		b.Reset()
		b.DeleteRange([]byte("c"), []byte("r0"))
		if err := db.Commit(&b, engine.NoSync); err != nil {
			t.Fatal(err)
		}
		snap, err := db.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		c := -1
		if v, err := snap.Get([]byte("c")); err == nil {
			c, _ = strconv.Atoi(string(v))
		}
		it, err := snap.NewIter(&engine.IterOptions{LowerBound: []byte("r/"), UpperBound: []byte("r0")})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			var j int
			fmt.Sscanf(string(it.Key()), "r/%d", &j)
			if j > c {
				t.Fatalf("round %d: %s survived a range deletion that removed c (c=%d)", n, it.Key(), c)
			}
		}
		it.Close()
		snap.Close()
	}
}
