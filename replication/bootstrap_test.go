package replication

import (
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

func TestBootstrapOffline(t *testing.T) {
	peers := []Peer{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "b", Addr: "127.0.0.1:2"}}
	cfg := Config{ID: "a", Dir: t.TempDir(), OpenLog: openWAL}
	for _, c := range []struct {
		name  string
		cfg   Config
		peers []Peer
		want  error
	}{
		{"no log", Config{ID: "a", Dir: cfg.Dir}, peers, ErrInvalidConfig},
		{"no peers", cfg, nil, ErrInvalidConfig},
		{"first", cfg, peers, nil},
		{"again", cfg, peers, ErrExistingState},
	} {
		if err := Bootstrap(c.cfg, c.peers); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestForceNewClusterLog(t *testing.T) {
	dir := t.TempDir()
	peers := []Peer{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "b", Addr: "127.0.0.1:2"}}
	if err := Bootstrap(Config{ID: "a", Dir: dir, OpenLog: openWAL}, peers); err != nil {
		t.Fatal(err)
	}
	logs, err := openWAL(filepath.Join(dir, "raft", "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "raft", "snapshots"), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id     string
		forced bool
		err    error
	}{
		{"c", false, ErrNotInConfiguration},
		{"a", true, nil},
		{"a", false, nil}, // already alone
		{"b", false, ErrNotInConfiguration},
	} {
		forced, err := forceNewCluster(c.id, "127.0.0.1:1", logs, snaps)
		if forced != c.forced || !errors.Is(err, c.err) {
			t.Fatalf("force %s: %v %v, want %v %v", c.id, forced, err, c.forced, c.err)
		}
	}
	if last, _ := logs.LastIndex(); last != 2 {
		t.Fatalf("last index %d, want 2", last)
	}
}
