package server_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/strata-kv/strata/server"
)

// TestUnsafeNoFsync starts a member with UnsafeNoFsync (etcd's
// --unsafe-no-fsync) whose raft log fails every fsync it is asked for
// (WALSyncFault): the member starts and serves writes and reads, since
// with the option its raft log asks for none.
func TestUnsafeNoFsync(t *testing.T) {
	var syncs atomic.Int64
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.UnsafeNoFsync = true
		cfg.WALSyncFault = func() error { syncs.Add(1); return errors.New("fsync with --unsafe-no-fsync") }
	})
	cli := c.client()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := cli.Put(ctxT(t), k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctxT(t), "c")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get c: %v, %v", resp, err)
	}
	if n := syncs.Load(); n != 0 {
		t.Errorf("the raft log asked for %d fsyncs with UnsafeNoFsync, want 0", n)
	}
}
