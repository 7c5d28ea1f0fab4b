package bbolt

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/strata-kv/strata/engine"
)

func commitKV(t *testing.T, d *DB, kvs ...string) {
	t.Helper()
	var b engine.Batch
	for i := 0; i+1 < len(kvs); i += 2 {
		b.Set([]byte(kvs[i]), []byte(kvs[i+1]))
	}
	if err := d.Commit(&b, nil); err != nil {
		t.Fatal(err)
	}
}

func mustSnapshot(t *testing.T, d *DB) *snapshot {
	t.Helper()
	s, err := d.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s.(*snapshot)
}

// TestSharedRead checks that the snapshots taken between two commits share
// one read transaction, that a commit ends the sharing (a snapshot taken
// after it sees it, one taken before does not), and that the shared
// transaction ends with its last snapshot.
func TestSharedRead(t *testing.T) {
	d, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	commitKV(t, d, "a", "1")

	s1, s2 := mustSnapshot(t, d), mustSnapshot(t, d)
	if s1.shared == nil || s1.tx != s2.tx {
		t.Fatalf("two snapshots without a write between them: shared %v, same transaction %v", s1.shared != nil, s1.tx == s2.tx)
	}
	commitKV(t, d, "a", "2")
	s3 := mustSnapshot(t, d)
	if s3.tx == s1.tx {
		t.Fatal("a snapshot taken after a commit shares the transaction of one taken before it")
	}
	for _, c := range []struct {
		s    *snapshot
		want string
	}{{s1, "1"}, {s2, "1"}, {s3, "2"}} {
		if v, err := c.s.Get([]byte("a")); err != nil || string(v) != c.want {
			t.Errorf("a = %q, %v; want %q", v, err, c.want)
		}
	}
	old := s1.shared
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != engine.ErrClosed {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if old.refs != 1 {
		t.Errorf("the old transaction has %d references with one snapshot open, want 1", old.refs)
	}
	if v, err := s2.Get([]byte("a")); err != nil || string(v) != "1" {
		t.Errorf("a = %q, %v after the other snapshot's Close; want 1", v, err)
	}
	s2.Close()
	if old.refs != 0 || old.tx.DB() != nil {
		t.Errorf("the old transaction is still open (%d references) after its last snapshot's Close", old.refs)
	}
	s3.Close()
}

// TestSharedReadRemap grows the file past its memory map while a shared
// snapshot is open and readers keep taking snapshots: bbolt's remap waits
// for every read transaction, so a shared one held until the next write
// would deadlock the commit. The commit must finish once the snapshots
// open before it are closed.
func TestSharedReadRemap(t *testing.T) {
	d, err := Open(t.TempDir(), &Options{InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	commitKV(t, d, "a", "1")
	held := mustSnapshot(t, d)

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := d.NewSnapshot()
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Get([]byte("a")); err != nil {
					t.Error(err)
				}
				s.Close()
			}
		})
	}
	done := make(chan error, 1)
	go func() {
		// 8 MiB of values: the file outgrows the 1 MiB map.
		var b engine.Batch
		val := bytes.Repeat([]byte("v"), 4096)
		for i := range 2048 {
			b.Set(fmt.Appendf(nil, "k%05d", i), val)
		}
		done <- d.Commit(&b, nil)
	}()
	time.Sleep(100 * time.Millisecond)
	held.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the commit that grows the map did not finish: deadlocked on a shared read transaction")
	}
	close(stop)
	readers.Wait()
	s := mustSnapshot(t, d)
	defer s.Close()
	if v, err := s.Get([]byte("k02047")); err != nil || len(v) != 4096 {
		t.Fatalf("k02047: %d bytes, %v", len(v), err)
	}
}
