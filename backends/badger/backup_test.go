package badger_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
)

// TestBackupRestoreDetails checks what the conformance suite does not:
// empty values, deleted and overwritten keys and value log values survive a
// restore and a reopen of the restored store (which flushes its memtable),
// and damaged streams are refused without leaving files behind.
func TestBackupRestoreDetails(t *testing.T) {
	db, err := badger.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	big := bytes.Repeat([]byte("v"), 1<<20) // in the value log
	mid := bytes.Repeat([]byte("m"), 10<<10)
	want := map[string]string{}
	var batch engine.Batch
	for i := range 200 {
		k := fmt.Sprintf("k/%03d", i)
		switch i % 4 {
		case 0:
			batch.Set([]byte(k), nil)
			want[k] = ""
		case 1:
			v := mid
			if i < 20 {
				v = big
			}
			batch.Set([]byte(k), v)
			want[k] = string(v)
		default:
			batch.Set([]byte(k), []byte("old"))
			want[k] = "old"
		}
	}
	if err := db.Commit(&batch, engine.Sync); err != nil {
		t.Fatal(err)
	}
	batch.Reset()
	for i := range 200 {
		k := fmt.Sprintf("k/%03d", i)
		switch i % 4 {
		case 2:
			batch.Delete([]byte(k))
			delete(want, k)
		case 3:
			batch.Set([]byte(k), []byte("new"))
			want[k] = "new"
		}
	}
	batch.DeleteRange([]byte("k/190"), []byte("k/195"))
	for i := 190; i < 195; i++ {
		delete(want, fmt.Sprintf("k/%03d", i))
	}
	if err := db.Commit(&batch, engine.Sync); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := db.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	stream := buf.Bytes()

	dir := filepath.Join(t.TempDir(), "restored")
	if err := badger.Restore(dir, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // as restored, then after a reopen
		rdb, err := badger.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		check(t, rdb, want)
		if round == 0 {
			// Writes after a restore win over restored versions.
			var b engine.Batch
			b.Set([]byte("k/003"), []byte("after"))
			b.Delete([]byte("k/000"))
			if err := rdb.Commit(&b, engine.Sync); err != nil {
				t.Fatal(err)
			}
			want["k/003"] = "after"
			delete(want, "k/000")
		}
		if err := rdb.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// Damaged streams.
	header := len("strata-backup/1 badger\n")
	for _, tc := range []struct {
		name   string
		stream []byte
	}{
		{"truncated in a frame", stream[:len(stream)/2]},
		{"end frame missing", stream[:len(stream)-8]},
		{"header only", stream[:header]},
		{"flipped byte", func() []byte {
			s := bytes.Clone(stream)
			s[header+100] ^= 1
			return s
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := badger.Restore(dir, bytes.NewReader(tc.stream))
			if err == nil {
				t.Fatal("restore succeeded")
			}
			t.Log(err)
			ents, rerr := os.ReadDir(dir)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if len(ents) != 0 {
				t.Errorf("failed restore left %d files", len(ents))
			}
		})
	}
}

// check compares the whole keyspace of db with want, through an iterator
// and through Get.
func check(t *testing.T, db *badger.DB, want map[string]string) {
	t.Helper()
	snap, err := db.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		w, found := want[string(it.Key())]
		if !found || w != string(it.Value()) {
			t.Errorf("key %q: %d byte value, want present=%v with %d bytes", it.Key(), len(it.Value()), found, len(w))
		}
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("%d keys, want %d", n, len(want))
	}
	for k, w := range want {
		v, err := snap.Get([]byte(k))
		if err != nil || string(v) != w {
			t.Errorf("Get(%q): %d bytes, %v; want %d bytes", k, len(v), err, len(w))
		}
	}
	for _, k := range []string{"k/002", "k/192"} {
		if _, ok := want[k]; ok {
			continue
		}
		if _, err := snap.Get([]byte(k)); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("Get(%q) of a deleted key: %v", k, err)
		}
	}
}
