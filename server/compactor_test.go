package server_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/server"
)

// TestAutoCompaction checks both of etcd's auto-compaction modes.
func TestAutoCompaction(t *testing.T) {
	for _, mode := range []struct{ mode, retention string }{
		{server.CompactionRevision, "5"},
		{server.CompactionPeriodic, "500ms"},
	} {
		t.Run(mode.mode, func(t *testing.T) {
			c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
				cfg.AutoCompactionMode, cfg.AutoCompactionRetention = mode.mode, mode.retention
				server.SetRevisionCompactInterval(cfg, 100*time.Millisecond)
			})
			cli := c.client()
			ctx := ctxT(t)
			for i := range 20 {
				if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "an auto compaction", func() bool {
				_, err := cli.Get(ctx, "k0", clientv3.WithRev(2))
				return errors.Is(err, rpctypes.ErrCompacted)
			})
			if mode.mode == server.CompactionRevision {
				// The last 5 revisions are kept.
				if _, err := cli.Get(ctx, "k0", clientv3.WithRev(17)); err != nil {
					t.Fatalf("get at a kept revision: %v", err)
				}
			}
		})
	}
}
