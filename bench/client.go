package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

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

	// streams numbers the watch streams opened, so that each gets a gRPC
	// stream of its own.
	streams atomic.Int64
}

var (
	_ EtcdStore    = (*ClientStore)(nil)
	_ Defragger    = (*ClientStore)(nil)
	_ EngineStater = (*ClientStore)(nil)
)

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

// kv sends etcd's KV requests as they are, through the client's
// connection (and its interceptors).
func (s *ClientStore) kv() pb.KVClient { return pb.NewKVClient(s.Client.ActiveConnection()) }

// clientErr turns a gRPC error into etcd's error value, and into the
// context's error when that is done, as clientv3's own calls do.
func clientErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return rpctypes.Error(err)
}

// Range implements EtcdStore.
func (s *ClientStore) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if s.Serializable {
		r.Serializable = true
	}
	resp, err := s.kv().Range(ctx, r)
	return resp, clientErr(ctx, err)
}

// Put implements EtcdStore.
func (s *ClientStore) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := s.kv().Put(ctx, r)
	return resp, clientErr(ctx, err)
}

// Txn implements EtcdStore.
func (s *ClientStore) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := s.kv().Txn(ctx, r)
	return resp, clientErr(ctx, err)
}

// Compact implements EtcdStore.
func (s *ClientStore) Compact(ctx context.Context, rev int64, physical bool) error {
	var opts []clientv3.CompactOption
	if physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	if _, err := s.Client.Compact(ctx, rev, opts...); err != nil {
		return fmt.Errorf("bench: compact at %d: %w", rev, err)
	}
	return nil
}

// DefragTargets implements Defragger: every endpoint.
func (s *ClientStore) DefragTargets() []string { return s.Client.Endpoints() }

// Defrag implements Defragger with the Maintenance service's Defragment.
func (s *ClientStore) Defrag(ctx context.Context, endpoint string) error {
	if _, err := s.Client.Defragment(ctx, endpoint); err != nil {
		return fmt.Errorf("bench: defragment %s: %w", endpoint, err)
	}
	return nil
}

// EngineStats implements EngineStater: the db_size and db_size_in_use
// of every endpoint's status, summed.
func (s *ClientStore) EngineStats(ctx context.Context) (st engine.Stats, err error) {
	for _, ep := range s.Client.Endpoints() {
		resp, err := s.Client.Status(ctx, ep)
		if err != nil {
			return st, fmt.Errorf("bench: status of %s: %w", ep, err)
		}
		inUse := resp.DbSizeInUse
		if inUse == 0 {
			inUse = resp.DbSize // etcd before 3.4
		}
		st.Size += resp.DbSize
		st.InUse += inUse
	}
	return st, nil
}

// NewWatchStream implements EtcdStore. clientv3 puts the watchers of
// contexts with the same metadata on one gRPC stream; each stream opened
// here gets metadata of its own.
func (s *ClientStore) NewWatchStream(ctx context.Context) (WatchStream, error) {
	n := s.streams.Add(1)
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "kvbench-watch-stream", strconv.FormatInt(n, 10)))
	return &clientWatchStream{c: s.Client, ctx: ctx, cancel: cancel, progress: make(chan struct{}, 1)}, nil
}

// clientWatchStream is a WatchStream over clientv3: one goroutine per
// watcher reads its channel.
type clientWatchStream struct {
	c      *clientv3.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// progress gets a token when a watcher receives a progress
	// notification (clientv3 hands the stream's to every watcher).
	progress chan struct{}
}

func (w *clientWatchStream) Watch(ctx context.Context, key, end []byte, prevKV bool, fn func([]*mvccpb.Event)) error {
	opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
	if end != nil {
		opts = append(opts, clientv3.WithRange(string(end)))
	}
	if prevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	wch := w.c.Watch(w.ctx, string(key), opts...)
	select {
	case resp, ok := <-wch:
		if !ok {
			return fmt.Errorf("bench: watch %q: channel closed", key)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("bench: watch %q: %w", key, err)
		}
		if !resp.Created {
			return fmt.Errorf("bench: watch %q: first response is not the creation", key)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	w.wg.Go(func() {
		for resp := range wch {
			if len(resp.Events) > 0 {
				fn(resp.Events)
			} else if resp.IsProgressNotify() {
				select {
				case w.progress <- struct{}{}:
				default:
				}
			}
		}
	})
	return nil
}

func (w *clientWatchStream) RequestProgress(ctx context.Context) error {
	select { // a notification left from before
	case <-w.progress:
	default:
	}
	// The request goes to the stream of w.ctx, the one of the watchers.
	rctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if err := w.c.RequestProgress(rctx); err != nil {
		return fmt.Errorf("bench: request progress: %w", err)
	}
	select {
	case <-w.progress:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *clientWatchStream) Close() error {
	w.cancel()
	w.wg.Wait()
	return nil
}

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

// Dir is the directory holding the members' data directories.
func (c *Cluster) Dir() string { return c.dir }

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
