package server_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/strata-kv/strata/server"
)

// TestPutTimesOut checks a write that cannot commit (its member's raft log
// fsync hangs, by fault injection) is answered with etcd's "request timed
// out" once etcd's request timeout (5s and two election timeouts) has
// passed, and not much later.
func TestPutTimesOut(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 7 s request timeout")
	}
	var stall atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.WALSyncFault = func() error {
			if stall.Load() {
				<-release
			}
			return nil
		}
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the cluster stops
	cli := c.client()
	if _, err := cli.Put(ctxT(t), "a", "1"); err != nil {
		t.Fatal(err)
	}
	stall.Store(true)
	began := time.Now()
	_, err := cli.Put(ctxT(t), "a", "2")
	took := time.Since(began)
	once.Do(func() { close(release) })
	if !errors.Is(err, rpctypes.ErrTimeout) {
		t.Fatalf("put with the log stalled: %v, want %v", err, rpctypes.ErrTimeout)
	}
	const reqTimeout = 5*time.Second + 2*time.Second // the test clusters' election timeout is 1 s
	if took < reqTimeout || took > reqTimeout+2*time.Second {
		t.Errorf("answered after %v, want about %v", took, reqTimeout)
	}
}
