package etcddb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func rev(main int64, tomb bool) []byte {
	b := revBytes(main)
	if tomb {
		b = append(b, 't')
	}
	return b
}

// writeTestFile writes a snapshot of n revisions and two leases.
func writeTestFile(t *testing.T, n int, m FinishMeta) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap.db")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := w.Revision(rev(int64(i+1), i%7 == 0), fmt.Appendf(nil, "value %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []uint64{5, 9} {
		if err := w.Lease(binary.BigEndian.AppendUint64(nil, id), []byte{8, byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Finish(m); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteRead(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int
		meta FinishMeta
		// wantRevs counts the records read back: n, plus a revision-only
		// record when Rev is above the last one and the compact revisions.
		wantRevs int
		wantLast int64
	}{
		{"empty", 0, FinishMeta{Rev: 1}, 0, 0},
		{"small", 10, FinishMeta{Rev: 11, FinishedCompactRev: 5, ScheduledCompactRev: 5, StorageVersion: "3.6.0"}, 10, 11},
		{"many", 3*writeTxRecords + 7, FinishMeta{Rev: 3*writeTxRecords + 8}, 3*writeTxRecords + 7, 3*writeTxRecords + 8},
		{"bump", 10, FinishMeta{Rev: 100}, 11, 100},
		{"compacted top", 10, FinishMeta{Rev: 12, FinishedCompactRev: 12}, 10, 11},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeTestFile(t, c.n, c.meta)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !HasChecksum(fi.Size()) {
				t.Fatalf("file of %d bytes has no checksum", fi.Size())
			}
			r, err := Open(path, OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			m, err := r.Meta()
			if err != nil {
				t.Fatal(err)
			}
			if m.FinishedCompactRev != c.meta.FinishedCompactRev || m.ScheduledCompactRev != c.meta.ScheduledCompactRev || m.StorageVersion != c.meta.StorageVersion {
				t.Fatalf("meta %+v, wrote %+v", m, c.meta)
			}
			n, last := 0, []byte(nil)
			err = r.ForEachRevision(func(k, v []byte) error {
				n++
				last = append(last[:0], k...)
				return nil
			})
			if err != nil || n != c.wantRevs {
				t.Fatalf("read %d revisions (%v), want %d", n, err, c.wantRevs)
			}
			if n > 0 && int64(binary.BigEndian.Uint64(last)) != c.wantLast {
				t.Fatalf("last revision %x, want %d", last, c.wantLast)
			}
			leases := 0
			if err := r.ForEachLease(func(k, v []byte) error { leases++; return nil }); err != nil || leases != 2 {
				t.Fatalf("read %d leases (%v)", leases, err)
			}
		})
	}
}

// TestOpenDamaged flips random bytes of a database without its hash (a
// member's db, read with SkipHashCheck): reading it fails or succeeds,
// and never crashes.
func TestOpenDamaged(t *testing.T) {
	path := writeTestFile(t, 2000, FinishMeta{Rev: 2001})
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig = orig[:len(orig)-32]
	rng := rand.New(rand.NewPCG(1, 2))
	damaged := filepath.Join(t.TempDir(), "db")
	failed := 0
	for i := range 300 {
		b := append([]byte(nil), orig...)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		if i%10 == 0 {
			b = b[:rng.IntN(len(b))]
		}
		if err := os.WriteFile(damaged, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(damaged, OpenOptions{SkipHashCheck: true})
		if err == nil {
			_, err = r.Meta()
			if err == nil {
				err = r.ForEachRevision(func(k, v []byte) error { return nil })
			}
			if err == nil {
				err = r.ForEachLease(func(k, v []byte) error { return nil })
			}
			r.Close()
		}
		if err != nil {
			failed++
			if !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrNotEtcd) {
				t.Fatalf("damaged file: %v, want ErrIntegrity or ErrNotEtcd", err)
			}
		}
	}
	t.Logf("%d of 300 damaged files refused", failed)
}

func TestOpenErrors(t *testing.T) {
	path := writeTestFile(t, 10, FinishMeta{Rev: 11})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), b...)
	flipped[len(b)/2] ^= 1
	// A bbolt file without etcd's buckets.
	plain := filepath.Join(dir, "plain.db")
	db, err := bolt.Open(plain, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	db.Close()
	for _, c := range []struct {
		name string
		path string
		opts OpenOptions
		want error
	}{
		{"missing hash", write("nohash", b[:len(b)-32]), OpenOptions{}, ErrMissingHash},
		{"hash mismatch", write("flipped", flipped), OpenOptions{}, ErrHashMismatch},
		{"truncated", write("truncated", b[:8192]), OpenOptions{SkipHashCheck: true}, ErrIntegrity},
		{"not bbolt", write("text", []byte("not a database at all, really")), OpenOptions{SkipHashCheck: true}, ErrNotEtcd},
		{"not etcd", plain, OpenOptions{SkipHashCheck: true}, ErrNotEtcd},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Open(c.path, c.opts)
			if err == nil {
				r.Close()
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("open: %v, want %v", err, c.want)
			}
		})
	}
	t.Run("locked", func(t *testing.T) {
		db, err := bolt.Open(plain, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := Open(plain, OpenOptions{SkipHashCheck: true, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
			t.Fatalf("open of a held database: %v, want ErrLocked", err)
		}
	})
	t.Run("exists", func(t *testing.T) {
		if _, err := Create(path); err == nil {
			t.Fatal("Create over an existing file succeeded")
		}
	})
}
