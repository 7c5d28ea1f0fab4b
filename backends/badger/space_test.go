//go:build linux

package badger_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/tmpfstest"
)

// TestDiskFull fills a small disk (a tmpfs) through commits, with values
// in the LSM tree and in the value log. Badger writes through
// memory-mapped files, where a page the disk cannot back kills the process
// with SIGBUS; the store must instead refuse the commit that would not fit
// with an error wrapping syscall.ENOSPC, go on serving reads, close
// cleanly (its memtable flush fits) and take commits again once space is
// freed.
func TestDiskFull(t *testing.T) {
	mnt := tmpfstest.Mount(t, 64<<20)
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "db")
	// Small memtables keep the space badger reserves small; values of
	// 15% of them (600 KiB) or more go to the value log.
	opts := &badger.Options{MemTableSize: 4 << 20, ValueLogFileSize: engine.MaxValueSize}
	db, err := badger.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()

	// Batches of 32 values of 8 KiB, one of 1 MiB in every eighth, until
	// one is refused; then batches of one ever smaller value, until even
	// a value of one byte is refused.
	committed := map[string][]byte{}
	batches := 0
	for _, size := range []int{32 << 10, 8 << 10, 1 << 10, 64, 1} {
		var full error
		for full == nil {
			if batches++; batches == 10000 {
				t.Fatalf("%d batches committed on a disk of 64 MiB", batches)
			}
			var b engine.Batch
			pending := map[string][]byte{}
			for j := range max(1, size>>10) {
				v := make([]byte, min(size, 8<<10))
				if size == 32<<10 && j == 0 && batches%8 == 0 {
					v = make([]byte, 1<<20) // into the value log
				}
				rand.Read(v)
				k := fmt.Sprintf("k/%05d/%02d", batches, j)
				b.Set([]byte(k), v)
				pending[k] = v
			}
			if full = db.Commit(&b, engine.NoSync); full == nil {
				for k, v := range pending {
					committed[k] = v
				}
			}
		}
		if !errors.Is(full, syscall.ENOSPC) {
			t.Fatalf("commit on a full disk: %v, want an error wrapping ENOSPC", full)
		}
		t.Logf("%d keys committed before: %v", len(committed), full)
	}
	var b engine.Batch
	b.Set([]byte("small"), []byte("v"))
	if err := db.Commit(&b, engine.Sync); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("small commit on the full disk: %v, want an error wrapping ENOSPC", err)
	}
	checkKeys(t, db, committed)

	// Closing flushes the memtables into tables: the space kept for that
	// must be enough.
	if err := db.Close(); err != nil {
		t.Fatalf("close on the full disk: %v", err)
	}
	if db, err = badger.Open(dir, opts); err != nil {
		t.Fatalf("reopen on the full disk: %v", err)
	}
	checkKeys(t, db, committed)

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(&b, engine.Sync); err != nil {
		t.Fatalf("commit after space was freed: %v", err)
	}
}

// checkKeys checks that db holds exactly the keys of want under "k/" with
// their values.
func checkKeys(t *testing.T, db engine.Backend, want map[string][]byte) {
	t.Helper()
	snap, err := db.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: []byte("k/"), UpperBound: []byte("k0")})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		v, ok := want[string(it.Key())]
		if !ok {
			t.Fatalf("unexpected key %q", it.Key())
		}
		if string(it.Value()) != string(v) {
			t.Fatalf("key %q has another value", it.Key())
		}
		n++
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("%d keys read, want %d", n, len(want))
	}
}
