package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-kv/strata/server"
)

// TestMaxSnapshotsFlag runs a member with MaxSnapshots 1 (--max-snapshots=1)
// through several raft snapshots: one snapshot directory remains.
func TestMaxSnapshotsFlag(t *testing.T) {
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) { cfg.MaxSnapshots = 1 })
	ctx := ctxT(t)
	cli := c.client(0)
	dir := filepath.Join(c.cfgs[0].DataDir, "member", "raft", "snapshots", "snapshots")
	for round := range 3 {
		if _, err := cli.Put(ctx, fmt.Sprint("k", round), "v"); err != nil {
			t.Fatal(err)
		}
		if err := c.members[0].Node().Snapshot(); err != nil {
			t.Fatalf("snapshot %d: %v", round+1, err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) != 1 {
			t.Fatalf("after snapshot %d: snapshot directories %v, want 1", round+1, names)
		}
	}
}
