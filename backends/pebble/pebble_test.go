package pebble_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-kv/strata/backends/pebble"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/engine/enginetest"
)

// Pebble stops all its goroutines in Close (disk-health checker, cleanup
// manager, compactions), so no goroutine needs ignoring.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) { enginetest.Run(t, pebble.Engine(), enginetest.Options{}) }

func BenchmarkEngine(b *testing.B) { enginetest.RunBenchmarks(b, pebble.Engine()) }

func openT(t *testing.T, dir string, o *pebble.Options) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func set(t *testing.T, db *pebble.DB, kvs ...string) {
	t.Helper()
	var b engine.Batch
	for i := 0; i+1 < len(kvs); i += 2 {
		b.Set([]byte(kvs[i]), []byte(kvs[i+1]))
	}
	if err := db.Commit(&b, engine.NoSync); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWithOpenSnapshot checks that Close releases snapshots and
// iterators left open, reports them, and that they then fail with ErrClosed
// instead of reaching Pebble (which panics on a closed DB).
func TestCloseWithOpenSnapshot(t *testing.T) {
	db := openT(t, t.TempDir(), nil)
	set(t, db, "a", "1", "b", "2")
	snap, err := db.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := snap.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !it.First() {
		t.Fatal("First = false")
	}
	if err := db.Close(); err == nil || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("Close with an open snapshot = %v, want a leak report", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if it.Valid() || it.Next() || it.First() || it.Seek([]byte("a")) {
		t.Fatal("iterator usable after Close")
	}
	if err := it.Close(); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("iterator Close = %v, want ErrClosed", err)
	}
	if _, err := snap.Get([]byte("a")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
	if _, err := snap.NewIter(nil); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("NewIter after Close = %v", err)
	}
	if err := snap.Close(); err != nil {
		t.Fatalf("snapshot Close after DB Close = %v", err)
	}
	for name, err := range map[string]error{
		"Stats":  func() error { _, err := db.Stats(); return err }(),
		"Sync":   db.Sync(),
		"Defrag": db.Defrag(context.Background()),
		"Backup": db.Backup(io.Discard),
	} {
		if !errors.Is(err, engine.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestSnapshotCloseClosesIterators(t *testing.T) {
	db := openT(t, t.TempDir(), nil)
	defer db.Close()
	set(t, db, "a", "1")
	snap, _ := db.NewSnapshot()
	it, _ := snap.NewIter(&engine.IterOptions{Reverse: true})
	if err := snap.Close(); err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Fatal("iterator usable after its snapshot closed")
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close = %v, want no leak report", err)
	}
}

func TestInvertedBounds(t *testing.T) {
	db := openT(t, t.TempDir(), nil)
	defer db.Close()
	set(t, db, "a", "1", "b", "2")
	snap, _ := db.NewSnapshot()
	defer snap.Close()
	for _, rev := range []bool{false, true} {
		it, err := snap.NewIter(&engine.IterOptions{LowerBound: []byte("b"), UpperBound: []byte("a"), Reverse: rev})
		if err != nil {
			t.Fatal(err)
		}
		if it.First() || it.Seek([]byte("a")) || it.Valid() {
			t.Errorf("reverse=%v: inverted bounds yield keys", rev)
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBackupLeavesNoTempDir(t *testing.T) {
	parent := t.TempDir()
	db := openT(t, filepath.Join(parent, "data"), nil)
	defer db.Close()
	set(t, db, "a", "1")
	if err := db.Backup(io.Discard); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		t.Fatalf("parent dir holds %d entries after Backup, want 1", len(ents))
	}
}

// backupStream returns a valid backup of a small store.
func backupStream(t *testing.T) []byte {
	t.Helper()
	db := openT(t, t.TempDir(), nil)
	defer db.Close()
	set(t, db, "a", "1")
	var buf bytes.Buffer
	if err := db.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRestoreRejectsBadStreams(t *testing.T) {
	good := backupStream(t)
	header := func() *bytes.Buffer {
		var b bytes.Buffer
		engine.WriteBackupHeader(&b, "pebble")
		return &b
	}
	evil := func(name string, typ byte) []byte {
		b := header()
		tw := tar.NewWriter(b)
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Size: 1, Mode: 0o600, Linkname: "/etc/passwd"})
		tw.Write([]byte("x"))
		tw.Close()
		return b.Bytes()
	}
	for name, stream := range map[string][]byte{
		"dotdot":    evil("../escape", tar.TypeReg),
		"nested":    evil("a/../../escape", tar.TypeReg),
		"absolute":  evil("/tmp/escape", tar.TypeReg),
		"symlink":   evil("link", tar.TypeSymlink),
		"truncated": good[:len(good)/2],
		"no end":    append(header().Bytes(), make([]byte, 1024)...),
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "restored")
			err := pebble.Restore(dir, bytes.NewReader(stream))
			if err == nil {
				t.Fatal("Restore succeeded")
			}
			t.Logf("%s: %v", name, err)
			ents, _ := os.ReadDir(dir)
			if len(ents) != 0 {
				t.Errorf("failed Restore left %d entries behind", len(ents))
			}
			if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
				t.Error("Restore wrote outside its directory")
			}
		})
	}
	// The good stream restores and opens.
	dir := filepath.Join(t.TempDir(), "ok")
	if err := pebble.Restore(dir, bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	db := openT(t, dir, nil)
	defer db.Close()
	snap, _ := db.NewSnapshot()
	defer snap.Close()
	if v, err := snap.Get([]byte("a")); err != nil || string(v) != "1" {
		t.Fatalf("restored Get = %q, %v", v, err)
	}
}

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	db := openT(t, dir, &pebble.Options{Logger: l})
	set(t, db, "a", "1")
	if err := db.Defrag(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "engine=pebble") {
		t.Fatalf("no pebble log lines at Debug; got %q", buf.String())
	}
}
