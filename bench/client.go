package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/mvcc"
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

// NewWatchStream implements EtcdStore with a gRPC Watch stream of its
// own on the client's connection, driven as etcd's Watch API is (create,
// cancel and progress requests, their answers matched as clientv3 does):
// cancellations and creations are timed to the target's answers, and one
// goroutine per stream hands the responses to the watchers.
func (s *ClientStore) NewWatchStream(ctx context.Context) (WatchStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := pb.NewWatchClient(s.Client.ActiveConnection()).Watch(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bench: watch stream: %w", err)
	}
	w := &grpcWatchStream{stream: stream, cancel: cancel, done: make(chan struct{}),
		fns: map[int64]func(*pb.WatchResponse){}, cancels: map[int64]chan struct{}{}, progress: make(chan struct{}, 1)}
	go w.recv()
	return w, nil
}

// grpcWatchStream is a WatchStream over one gRPC Watch stream.
type grpcWatchStream struct {
	stream pb.Watch_WatchClient
	cancel context.CancelFunc
	done   chan struct{} // closed when recv returns
	err    error         // why recv returned; set before done is closed

	sendMu sync.Mutex // orders the requests and the creations' queue

	mu sync.Mutex
	// creating holds the creations asked and not answered, in order:
	// etcd answers them in order.
	creating []pendingWatch
	fns      map[int64]func(*pb.WatchResponse)
	cancels  map[int64]chan struct{}
	// progress gets a token for each stream-wide progress notification.
	progress chan struct{}
}

type pendingWatch struct {
	fn    func(*pb.WatchResponse)
	reply chan createReply
}

type createReply struct {
	id  int64
	err error
}

func (w *grpcWatchStream) send(r *pb.WatchRequest, before func()) error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	if before != nil {
		before()
	}
	if err := w.stream.Send(r); err != nil {
		return fmt.Errorf("bench: watch stream send: %w", err)
	}
	return nil
}

// wait waits for c, ctx or the stream's end.
func (w *grpcWatchStream) wait(ctx context.Context, c <-chan struct{}) error {
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-w.done:
		return fmt.Errorf("bench: watch stream ended: %w", w.err)
	}
}

func (w *grpcWatchStream) Watch(ctx context.Context, req *pb.WatchCreateRequest, fn func(*pb.WatchResponse)) (int64, error) {
	reply := make(chan createReply, 1)
	err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}, func() {
		w.mu.Lock()
		w.creating = append(w.creating, pendingWatch{fn: fn, reply: reply})
		w.mu.Unlock()
	})
	if err != nil {
		return 0, err
	}
	select {
	case r := <-reply:
		if r.err != nil {
			return 0, fmt.Errorf("bench: watch %q: %w", req.Key, r.err)
		}
		return r.id, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-w.done:
		return 0, fmt.Errorf("bench: watch stream ended: %w", w.err)
	}
}

func (w *grpcWatchStream) Cancel(ctx context.Context, id int64) error {
	done := make(chan struct{})
	err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}, func() {
		w.mu.Lock()
		w.cancels[id] = done
		w.mu.Unlock()
	})
	if err != nil {
		return err
	}
	return w.wait(ctx, done)
}

func (w *grpcWatchStream) RequestProgress(ctx context.Context) error {
	select { // a notification left from before
	case <-w.progress:
	default:
	}
	if err := w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}, nil); err != nil {
		return err
	}
	return w.wait(ctx, w.progress)
}

// recv reads the stream's responses until it ends.
func (w *grpcWatchStream) recv() {
	defer close(w.done)
	for {
		resp, err := w.stream.Recv()
		if err != nil {
			w.err = err
			return
		}
		w.mu.Lock()
		switch {
		case resp.Created:
			if len(w.creating) == 0 {
				w.mu.Unlock()
				w.err = fmt.Errorf("bench: a created response for watch %d, none asked", resp.WatchId)
				return
			}
			p := w.creating[0]
			w.creating = w.creating[1:]
			if resp.Canceled || resp.WatchId == mvcc.InvalidWatchID {
				p.reply <- createReply{err: fmt.Errorf("refused: %s", resp.CancelReason)}
			} else {
				w.fns[resp.WatchId] = p.fn
				p.reply <- createReply{id: resp.WatchId}
			}
			w.mu.Unlock()
		case resp.Canceled:
			delete(w.fns, resp.WatchId)
			if c := w.cancels[resp.WatchId]; c != nil {
				delete(w.cancels, resp.WatchId)
				close(c)
			}
			w.mu.Unlock()
		case resp.WatchId == mvcc.InvalidWatchID && isProgressNotify(resp):
			w.mu.Unlock()
			select {
			case w.progress <- struct{}{}:
			default:
			}
		default:
			fn := w.fns[resp.WatchId]
			w.mu.Unlock()
			if fn != nil {
				fn(resp)
			}
		}
	}
}

func (w *grpcWatchStream) Close() error {
	w.cancel()
	<-w.done
	return nil
}

// Cluster is a Strata cluster started in process for "cluster" mode.
type Cluster struct {
	Members []*server.Server
	dir     string
}

// StartCluster starts n Strata members on loopback ports with engine e, with
// data under dir, and waits until they serve. Each option changes every
// member's configuration before it starts.
func StartCluster(dir string, n int, e engine.Engine, options ...func(*server.Config)) (*Cluster, error) {
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
		cfg := server.Config{
			Name:                     fmt.Sprintf("m%d", i),
			DataDir:                  filepath.Join(dir, fmt.Sprintf("m%d", i)),
			Engine:                   e,
			ListenClientURLs:         []string{"http://" + addrs[2*i]},
			ListenPeerURLs:           []string{"http://" + addrs[2*i+1]},
			InitialAdvertisePeerURLs: []string{"http://" + addrs[2*i+1]},
			InitialCluster:           strings.Join(initial, ","),
		}
		for _, o := range options {
			o(&cfg)
		}
		s, err := server.Start(cfg)
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
