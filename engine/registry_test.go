package engine_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-kv/strata/engine"
)

func TestRegistry(t *testing.T) {
	open := func(string, engine.Options) (engine.Backend, error) { return nil, errors.New("opened") }
	restore := func(string, io.Reader) error { return errors.New("restored") }
	r := engine.NewRegistry(
		engine.Engine{Name: "b", Open: open, Restore: restore},
		engine.Engine{Name: "a", Open: open, Restore: restore},
	)
	if got := r.Names(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Names = %v", got)
	}
	if !r.Has("a") || r.Has("c") {
		t.Fatalf("Has is wrong")
	}
	if _, err := r.Open("c", "", engine.Options{}); !errors.Is(err, engine.ErrUnknownEngine) {
		t.Fatalf("Open(unknown) = %v", err)
	}
	if _, err := r.Open("a", "", engine.Options{}); err == nil || err.Error() != "opened" {
		t.Fatalf("Open(a) = %v", err)
	}
	if err := r.Restore("b", "", nil); err == nil || err.Error() != "restored" {
		t.Fatalf("Restore(b) = %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatalf("duplicate registration did not panic")
		}
	}()
	engine.NewRegistry(engine.Engine{Name: "a", Open: open, Restore: restore},
		engine.Engine{Name: "a", Open: open, Restore: restore})
}

func TestBackupHeader(t *testing.T) {
	var buf bytes.Buffer
	if err := engine.WriteBackupHeader(&buf, "pebble"); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("body")
	r := bytes.NewReader(buf.Bytes())
	if err := engine.ReadBackupHeader(r, "pebble"); err != nil {
		t.Fatalf("ReadBackupHeader: %v", err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "body" {
		t.Fatalf("header read consumed the body: %q left", rest)
	}
	for _, stream := range []string{"", "strata", "strata-backup/1 bbolt\nbody"} {
		if err := engine.ReadBackupHeader(bytes.NewReader([]byte(stream)), "pebble"); !errors.Is(err, engine.ErrBackupMismatch) {
			t.Errorf("ReadBackupHeader(%q) = %v, want ErrBackupMismatch", stream, err)
		}
	}
}

func TestPrepareRestoreDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	if err := engine.PrepareRestoreDir(dir); err != nil {
		t.Fatalf("missing dir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := engine.PrepareRestoreDir(dir); !errors.Is(err, engine.ErrNotEmpty) {
		t.Fatalf("non-empty dir: %v, want ErrNotEmpty", err)
	}
}
