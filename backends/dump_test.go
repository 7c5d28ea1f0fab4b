package backends_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
)

func fill(t *testing.T, be engine.Backend, n int) {
	t.Helper()
	var b engine.Batch
	for i := range n {
		b.Set([]byte(fmt.Sprintf("k\x00%05d", i)), bytes.Repeat([]byte{byte(i)}, i%300))
	}
	b.Set([]byte{0xff, 0xff}, nil)
	if err := be.Commit(&b, engine.Sync); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, name string) engine.Backend {
	t.Helper()
	be, err := backends.Registry().Open(name, t.TempDir(), engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// TestDumpLoadCopy moves a keyspace between every pair of engines, by a
// dump stream and by Copy, and checks that a truncated or damaged dump is
// refused.
func TestDumpLoadCopy(t *testing.T) {
	names := backends.Registry().Names()
	for _, from := range names {
		src := open(t, from)
		fill(t, src, 500)
		var dump bytes.Buffer
		if err := engine.Dump(&dump, src); err != nil {
			t.Fatal(err)
		}
		for _, to := range names {
			t.Run(from+"-"+to, func(t *testing.T) {
				dst := open(t, to)
				n, err := engine.Load(dst, bytes.NewReader(dump.Bytes()))
				if err != nil || n != 501 {
					t.Fatalf("Load: %d keys, %v", n, err)
				}
				if eq, at, err := engine.Equal(src, dst); !eq || err != nil {
					t.Fatalf("after Load: differ at %q (%v)", at, err)
				}
				dst2 := open(t, to)
				if n, err := engine.Copy(dst2, src); err != nil || n != 501 {
					t.Fatalf("Copy: %d keys, %v", n, err)
				}
				if eq, at, err := engine.Equal(src, dst2); !eq || err != nil {
					t.Fatalf("after Copy: differ at %q (%v)", at, err)
				}
			})
		}
	}
	src := open(t, "bbolt")
	fill(t, src, 50)
	var dump bytes.Buffer
	if err := engine.Dump(&dump, src); err != nil {
		t.Fatal(err)
	}
	d := dump.Bytes()
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"other format", []byte("strata-backup/1 bbolt\n"), engine.ErrBackupMismatch},
		{"empty", nil, engine.ErrCorruptDump},
		{"truncated in records", d[:len(d)/2], engine.ErrCorruptDump},
		{"truncated in trailer", d[:len(d)-3], engine.ErrCorruptDump},
		{"flipped byte", flip(d, len(d)/3), engine.ErrCorruptDump},
		{"flipped count", flip(d, len(d)-6), engine.ErrCorruptDump},
		{"flipped checksum", flip(d, len(d)-1), engine.ErrCorruptDump},
	} {
		if _, err := engine.Load(open(t, "pebble"), bytes.NewReader(c.data)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x40
	return b
}

// FuzzLoad feeds Load arbitrary streams: it fails or loads, never panics.
func FuzzLoad(f *testing.F) {
	be, err := backends.Registry().Open("pebble", f.TempDir(), engine.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer be.Close()
	var b engine.Batch
	b.Set([]byte("a"), []byte("1"))
	b.Set([]byte("b"), nil)
	if err := be.Commit(&b, engine.Sync); err != nil {
		f.Fatal(err)
	}
	var dump bytes.Buffer
	if err := engine.Dump(&dump, be); err != nil {
		f.Fatal(err)
	}
	f.Add(dump.Bytes())
	f.Add([]byte("strata-dump/1\n\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dst, err := backends.Registry().Open("pebble", t.TempDir(), engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		engine.Load(dst, bytes.NewReader(data))
	})
}

// BenchmarkSnapshotStream compares, per engine, the engine's own backup
// stream and its restore with an engine dump (what raft snapshots are
// now) and its load, on 100k 100-byte values.
func BenchmarkSnapshotStream(b *testing.B) {
	for _, name := range backends.Registry().Names() {
		be, err := backends.Registry().Open(name, b.TempDir(), engine.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var batch engine.Batch
		for i := range 100_000 {
			batch.Set([]byte(fmt.Sprintf("k%08d", i)), bytes.Repeat([]byte{byte(i)}, 100))
			if batch.Size() > 1<<20 {
				if err := be.Commit(&batch, engine.NoSync); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		}
		if err := be.Commit(&batch, engine.Sync); err != nil {
			b.Fatal(err)
		}
		var dump bytes.Buffer
		if err := engine.Dump(&dump, be); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/backup", func(b *testing.B) {
			for b.Loop() {
				if err := be.Backup(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/dump", func(b *testing.B) {
			for b.Loop() {
				if err := engine.Dump(io.Discard, be); err != nil {
					b.Fatal(err)
				}
			}
		})
		var backup bytes.Buffer
		if err := be.Backup(&backup); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/restore", func(b *testing.B) {
			for b.Loop() {
				if err := backends.Registry().Restore(name, filepath.Join(b.TempDir(), "r"), bytes.NewReader(backup.Bytes())); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/load", func(b *testing.B) {
			for b.Loop() {
				dst, err := backends.Registry().Open(name, b.TempDir(), engine.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := engine.Load(dst, bytes.NewReader(dump.Bytes())); err != nil {
					b.Fatal(err)
				}
				dst.Close()
			}
		})
		be.Close()
	}
}
