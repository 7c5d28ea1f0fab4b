package replication

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/replication/wal"
)

// snapshotDirs lists a node's raft snapshots (FileSnapshotStore's
// directories, under its own "snapshots" subdirectory; not the ones being
// written).
func snapshotDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "raft", "snapshots", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestMaxSnapshots takes several snapshots and counts the snapshot
// directories left: MaxSnapshots of them (etcd's --max-snapshots), or
// every one with a negative MaxSnapshots (etcd's 0, unlimited); the node
// still restarts from its newest.
func TestMaxSnapshots(t *testing.T) {
	const taken = 6
	for _, tc := range []struct {
		name string
		max  int
		want int
	}{
		{name: "one", max: 1, want: 1},
		{name: "three", max: 3, want: 3},
		{name: "default", max: 0, want: 5}, // DefaultMaxSnapshots
		{name: "unlimited", max: -1, want: taken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, engines()[0], 1, func(cfg *Config) { cfg.MaxSnapshots = tc.max })
			n := c.leader()
			var seen []string
			for i := range taken {
				proposeAll(t, n, string(rune('a'+i))+"/", 20, 2)
				if err := n.Snapshot(); err != nil {
					t.Fatalf("snapshot %d: %v", i, err)
				}
				dirs := snapshotDirs(t, c.dirs[0])
				if got, want := len(dirs), min(i+1, tc.want); got != want {
					t.Fatalf("after snapshot %d: %d snapshot directories %v, want %d", i+1, got, dirs, want)
				}
				fresh := 0
				for _, d := range dirs {
					if !slices.Contains(seen, d) {
						fresh++
						seen = append(seen, d)
					}
				}
				if fresh != 1 {
					t.Fatalf("snapshot %d: %d new directories in %v, want 1", i+1, fresh, dirs)
				}
			}
			c.stop(0)
			c.start(0)
			n = c.leader()
			if got := countPrefix(t, n, true, "d/"); got != 20 {
				t.Fatalf("after a restart: %d keys of the last round, want 20", got)
			}
		})
	}
}

// TestFollowerCatchUpWithMaxWALsOne is TestFollowerCatchUpFromTrailingLog
// with the raft logs in small segments and wal.Options.MaxSegments 1
// (etcd's --max-wals=1): the leader removes every segment its compactions
// retire, yet never one holding the trailing entries, so a follower that
// missed fewer than SnapshotCatchUpEntries entries still catches up from
// the log, without a snapshot.
func TestFollowerCatchUpWithMaxWALsOne(t *testing.T) {
	openSmallWAL := func(dir string) (LogStore, error) {
		return wal.Open(dir, &wal.Options{SegmentSize: 4096, MaxSegments: 1})
	}
	c := newCluster(t, engines()[0], 3, func(cfg *Config) {
		cfg.OpenLog = openSmallWAL
		cfg.SnapshotCount = 20
		cfg.SnapshotCatchUpEntries = 400
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	l := c.leader()
	proposeAll(t, l, "a/", 1000, 2)
	c.waitConverged()
	fi := c.follower(l)
	stoppedAt, err := c.nodes[fi].logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	c.stop(fi)
	// One client: one entry per put, so the follower misses about 350 of
	// the 400 entries the leader keeps, and needs the oldest segments of
	// its log.
	proposeAll(t, l, "b/", 350, 1)
	if err := l.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// The leader's compactions have retired segments and removed them all:
	// its oldest segment holds its first index (the oldest of the trailing
	// entries), and none before it is left.
	first, err := l.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := l.logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(c.dirs[c.index(l)], "raft", "log", "*.wal"))
	if err != nil || len(segs) < 2 {
		t.Fatalf("leader's segments: %v, %v", segs, err)
	}
	var bases []uint64
	for _, p := range segs {
		b, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), ".wal"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, b)
	}
	t.Logf("follower stopped at %d; leader's log [%d, %d] in %d segments from %d", stoppedAt, first, last, len(segs), bases[0])
	if first <= 1 || bases[0] > first || bases[1] <= first {
		t.Fatalf("leader's first index %d, segments from %v: want the oldest to hold it", first, bases)
	}
	c.start(fi)
	c.waitConverged()
	if got := countPrefix(t, c.nodes[fi], false, "b/"); got != 350 {
		t.Fatalf("caught-up follower sees %d of 350 keys", got)
	}
	if n := c.nodes[fi].fsm.restores.Load(); n != 0 {
		t.Fatalf("the follower restored %d snapshots; the leader's log held what it missed", n)
	}
}
