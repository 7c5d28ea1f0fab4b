package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/server"
)

// ClientStore drives any etcd v3 endpoint (a Strata cluster or a real etcd)
// through clientv3: "cluster" and "endpoints" modes.
type ClientStore struct {
	Client *clientv3.Client
	// Serializable serves reads locally on the member instead of through
	// a linearizable read.
	Serializable bool
}

var _ Store = (*ClientStore)(nil)

// NewClientStore connects to endpoints (host:port).
func NewClientStore(endpoints []string) (*ClientStore, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: connect to %v: %w", endpoints, err)
	}
	return &ClientStore{Client: c}, nil
}

func (s *ClientStore) readOpts(extra ...clientv3.OpOption) []clientv3.OpOption {
	if s.Serializable {
		extra = append(extra, clientv3.WithSerializable())
	}
	return extra
}

// Read implements Store.
func (s *ClientStore) Read(ctx context.Context, key []byte) error {
	_, err := s.Client.Get(ctx, string(key), s.readOpts()...)
	return err
}

// Write implements Store.
func (s *ClientStore) Write(ctx context.Context, key, value []byte) error {
	_, err := s.Client.Put(ctx, string(key), string(value))
	return err
}

// Scan implements Store.
func (s *ClientStore) Scan(ctx context.Context, start []byte, n int) error {
	_, err := s.Client.Get(ctx, string(start), s.readOpts(clientv3.WithFromKey(), clientv3.WithLimit(int64(n)))...)
	return err
}

// Delete implements Store.
func (s *ClientStore) Delete(ctx context.Context, key []byte) error {
	_, err := s.Client.Delete(ctx, string(key))
	return err
}

// Close closes the client.
func (s *ClientStore) Close() error { return s.Client.Close() }

// Cluster is a Strata cluster started in process for "cluster" mode.
type Cluster struct {
	Members []*server.Server
	dir     string
}

// StartCluster starts n Strata members on loopback ports with engine e, with
// data under dir, and waits until they serve.
func StartCluster(dir string, n int, e engine.Engine) (*Cluster, error) {
	addrs, err := freeport.Addrs(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, addrs[2*i+1]))
	}
	c := &Cluster{dir: dir}
	for i := range n {
		s, err := server.Start(server.Config{
			Name:                     fmt.Sprintf("m%d", i),
			DataDir:                  filepath.Join(dir, fmt.Sprintf("m%d", i)),
			Engine:                   e,
			ListenClientURLs:         []string{"http://" + addrs[2*i]},
			ListenPeerURLs:           []string{"http://" + addrs[2*i+1]},
			InitialAdvertisePeerURLs: []string{"http://" + addrs[2*i+1]},
			InitialCluster:           strings.Join(initial, ","),
		})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("bench: start member %d: %w", i, err)
		}
		c.Members = append(c.Members, s)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, s := range c.Members {
		select {
		case <-s.ReadyNotify():
		case <-timeout.C:
			c.Close()
			return nil, fmt.Errorf("bench: cluster not ready within 30 s")
		}
	}
	return c, nil
}

// Endpoints returns the members' client addresses (host:port).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, s := range c.Members {
		for _, u := range s.ClientURLs() {
			eps = append(eps, strings.TrimPrefix(u, "http://"))
		}
	}
	return eps
}

// DU returns the disk space the members' data directories take.
func (c *Cluster) DU() int64 {
	n, _ := DU(c.dir)
	return n
}

// Close stops every member.
func (c *Cluster) Close() error {
	var first error
	for _, s := range c.Members {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
