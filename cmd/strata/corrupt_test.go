package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/server"
)

// TestEngineChecksumFailure changes a value inside a stopped pebble
// member's table file (after an offline defrag wrote its data into
// tables): pebble's block checksum catches it, and the member refuses to
// start with an error wrapping engine.ErrCorrupt rather than serving
// changed data.
func TestEngineChecksumFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "m")
	s, cli := startMember(t, "m", dataDir, "pebble")
	const value = "4f1c9a7e2b6d8035e1f7a9c3d5b20486"
	if _, err := cli.Put(ctx, "victim", value); err != nil {
		t.Fatal(err)
	}
	stopMember(t, s, cli)
	if err := run([]string{"defrag", "--data-dir", dataDir}); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(memberDataDir(dataDir), "*.sst"))
	flipped := 0
	for _, f := range tables {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(value)); i >= 0 {
			b[i+3] ^= 0x01
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped++
		}
	}
	if flipped == 0 {
		t.Fatalf("value not found in the tables %v", tables)
	}
	eng, _ := backends.Registry().Lookup("pebble")
	srv, err := server.Start(server.Config{Name: "m", DataDir: dataDir, Engine: eng,
		ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}})
	if err == nil {
		srv.Close()
		t.Fatal("the member started on a damaged table")
	}
	if !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("start: %v, want an error wrapping %v", err, engine.ErrCorrupt)
	}
}

// TestEngineVerifyAtStart damages a stopped member's engine files as a
// disk would, in a way each engine's own check finds, and starts the
// member with etcd's initial corruption check
// (--feature-gates=InitialCorruptCheck=true): it must refuse to start
// with an error wrapping engine.ErrCorrupt.
//
// bbolt keeps no checksums, so its damage is structural: the page flags
// of the key bucket's root page become leaf|freelist (0x12), a type no
// page in use may have (bbolt's page assertions, which the verification
// walk runs into, report it; bbolt's own free-list walk at a read-write
// open would panic on a goroutine of its own and end the process).
// badger's is a flipped byte in the first data block of a table, which
// only its block checksum finds (badger reads blocks unchecked
// otherwise).
func TestEngineVerifyAtStart(t *testing.T) {
	for _, tc := range []struct {
		backend string
		damage  func(t *testing.T, dir string)
	}{
		{"bbolt", damageBoltRoot},
		{"badger", damageBadgerTable},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dataDir := filepath.Join(t.TempDir(), "m")
			s, cli := startMember(t, "m", dataDir, tc.backend)
			value := bytes.Repeat([]byte("v"), 200)
			for i := range 300 {
				if _, err := cli.Put(ctx, fmt.Sprintf("key-%04d", i), string(value)); err != nil {
					t.Fatal(err)
				}
			}
			stopMember(t, s, cli)
			tc.damage(t, memberDataDir(dataDir))
			eng, _ := backends.Registry().Lookup(tc.backend)
			srv, err := server.Start(server.Config{Name: "m", DataDir: dataDir, Engine: eng, InitialCorruptCheck: true,
				Logger:           slog.New(slog.DiscardHandler),
				ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}})
			if err == nil {
				srv.Close()
				t.Fatal("the member started on damaged files")
			}
			if !errors.Is(err, engine.ErrCorrupt) {
				t.Fatalf("start: %v, want an error wrapping %v", err, engine.ErrCorrupt)
			}
			t.Logf("start refused: %v", err)
		})
	}
}

// damageBoltRoot sets the page flags of the root page of the largest
// bucket of the bbolt file in dir to leaf|freelist. bbolt's page header
// (go.etcd.io/bbolt/internal/common.Page) is id uint64, flags uint16,
// count uint16, overflow uint32, in the host's byte order.
func damageBoltRoot(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "data.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	var keys int
	pageSize := db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if n := b.Stats().KeyN; n > keys {
				root, keys = uint64(b.RootPage()), n
			}
			return nil
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if root == 0 {
		t.Fatal("no bucket with a root page of its own")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := int64(root) * int64(pageSize)
	hdr := make([]byte, 16)
	if _, err := f.ReadAt(hdr, off); err != nil {
		t.Fatal(err)
	}
	if id := binary.NativeEndian.Uint64(hdr); id != root {
		t.Fatalf("page %d holds id %d", root, id)
	}
	if fl := binary.NativeEndian.Uint16(hdr[8:]); fl != 0x01 && fl != 0x02 {
		t.Fatalf("page %d has flags %#x, not a branch or leaf page", root, fl)
	}
	binary.NativeEndian.PutUint16(hdr[8:], 0x12)
	if _, err := f.WriteAt(hdr, off); err != nil {
		t.Fatal(err)
	}
}

// damageBadgerTable flips a byte inside the first data block of every
// table (badger writes the memtable to a level-0 table at close).
func damageBadgerTable(t *testing.T, dir string) {
	t.Helper()
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) == 0 {
		t.Fatalf("no tables in %s", dir)
	}
	for _, path := range tables {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[64] ^= 0x40
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
