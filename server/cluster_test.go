package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/backends/pebble"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/server"
)

func engines() []engine.Engine {
	return []engine.Engine{bbolt.Engine(), pebble.Engine(), badger.Engine()}
}

// testLogger logs to the test's output under -v when STRATA_TEST_LOG is
// set, and discards otherwise.
func testLogger(t testing.TB, name string) *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("member", name)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// freePorts reserves n loopback ports.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := freeport.Addrs(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// cluster is n Strata members on loopback ports, each in its own data
// directory.
type cluster struct {
	t       testing.TB
	cfgs    []server.Config
	members []*server.Server
}

// newCluster starts n members on eng and waits until they serve. tweak,
// if not nil, adjusts each member's configuration.
func newCluster(t testing.TB, n int, eng engine.Engine, tweak func(*server.Config)) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t}
	t.Cleanup(c.close)
	// The peer ports were free a moment ago; another test process may
	// take one before a member binds it. Then start again on new ports.
	for attempt := 1; ; attempt++ {
		err := c.start(n, eng, tweak, filepath.Join(dir, fmt.Sprint(attempt)))
		if err == nil {
			break
		}
		c.close()
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting again on other ports: %v", err)
	}
	for i, m := range c.members {
		select {
		case <-m.ReadyNotify():
		case <-time.After(30 * time.Second):
			t.Fatalf("member %d not ready after 30s", i)
		}
	}
	return c
}

// start starts n members on fresh loopback peer ports, with their data
// directories under dir.
func (c *cluster) start(n int, eng engine.Engine, tweak func(*server.Config), dir string) error {
	peers := freePorts(c.t, n)
	var initial []string
	for i, p := range peers {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, p))
	}
	c.cfgs = nil
	for i := range n {
		cfg := server.Config{
			Name:                     fmt.Sprintf("m%d", i),
			DataDir:                  filepath.Join(dir, fmt.Sprintf("m%d", i)),
			Engine:                   eng,
			ListenClientURLs:         []string{"http://127.0.0.1:0"},
			ListenPeerURLs:           []string{"http://" + peers[i]},
			InitialAdvertisePeerURLs: []string{"http://" + peers[i]},
			InitialCluster:           strings.Join(initial, ","),
			HeartbeatInterval:        50 * time.Millisecond,
			ElectionTimeout:          1000 * time.Millisecond,
			Logger:                   testLogger(c.t, fmt.Sprintf("m%d", i)),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	var wg sync.WaitGroup
	c.members = make([]*server.Server, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.members[i], errs[i] = server.Start(c.cfgs[i])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *cluster) close() {
	for i, m := range c.members {
		if m != nil {
			if err := m.Close(); err != nil {
				c.t.Errorf("close member %d: %v", i, err)
			}
			c.members[i] = nil
		}
	}
}

// endpoint returns member i's client address, host:port.
func (c *cluster) endpoint(i int) string {
	u := c.members[i].ClientURLs()[0]
	return strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
}

func (c *cluster) endpoints() []string {
	var eps []string
	for i := range c.members {
		eps = append(eps, c.endpoint(i))
	}
	return eps
}

// client returns a clientv3 client of the given members (all when none
// is named), closed at the end of the test.
func (c *cluster) client(members ...int) *clientv3.Client {
	c.t.Helper()
	var eps []string
	if len(members) == 0 {
		eps = c.endpoints()
	}
	for _, i := range members {
		eps = append(eps, c.endpoint(i))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// leader returns the index of the leading member.
func (c *cluster) leader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range c.members {
			if m != nil && m.Node().IsLeader() {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader after 10s")
	return -1
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
