package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
)

// MVCCStore drives an mvcc.Store in process ("mvcc" mode): every write is
// one request in a write batch of its own, every read a Range at the current
// revision, as a single-node server without raft would issue them.
type MVCCStore struct {
	Store *mvcc.Store
	// Backend is the engine under Store, if known: for its space figures
	// and to defragment it.
	Backend engine.Backend
	// ProgressNotifyInterval is the watch streams' (mvcc's default when 0).
	ProgressNotifyInterval time.Duration
}

var (
	_ Store        = (*MVCCStore)(nil)
	_ BatchWriter  = (*MVCCStore)(nil)
	_ EtcdStore    = (*MVCCStore)(nil)
	_ Defragger    = (*MVCCStore)(nil)
	_ EngineStater = (*MVCCStore)(nil)
)

// Read implements Store.
func (s *MVCCStore) Read(ctx context.Context, key []byte) error {
	_, err := s.Store.Range(ctx, &pb.RangeRequest{Key: key})
	return err
}

// Write implements Store.
func (s *MVCCStore) Write(_ context.Context, key, value []byte) error {
	_, err := s.Store.Put(&pb.PutRequest{Key: key, Value: value})
	return err
}

// WriteBatch implements BatchWriter: one write batch, one revision per key.
func (s *MVCCStore) WriteBatch(_ context.Context, keys, values [][]byte) error {
	w, err := s.Store.NewWriteBatch()
	if err != nil {
		return err
	}
	for i := range keys {
		if _, err := w.Put(&pb.PutRequest{Key: keys[i], Value: values[i]}); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit(s.Store.AppliedIndex())
}

// Scan implements Store.
func (s *MVCCStore) Scan(ctx context.Context, start []byte, n int) error {
	_, err := s.Store.Range(ctx, &pb.RangeRequest{Key: start, RangeEnd: []byte{0}, Limit: int64(n)})
	return err
}

// Delete implements Store.
func (s *MVCCStore) Delete(_ context.Context, key []byte) error {
	_, err := s.Store.DeleteRange(&pb.DeleteRangeRequest{Key: key})
	return err
}

// Range implements EtcdStore.
func (s *MVCCStore) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return s.Store.Range(ctx, r)
}

// Put implements EtcdStore.
func (s *MVCCStore) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return s.Store.Put(r)
}

// Txn implements EtcdStore.
func (s *MVCCStore) Txn(_ context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return s.Store.Txn(r)
}

// Compact implements EtcdStore.
func (s *MVCCStore) Compact(_ context.Context, rev int64, physical bool) error {
	if _, err := s.Store.Compact(&pb.CompactionRequest{Revision: rev, Physical: physical}); err != nil {
		return fmt.Errorf("bench: compact at %d: %w", rev, err)
	}
	return nil
}

// DefragTargets implements Defragger: "engine" when Backend can
// defragment.
func (s *MVCCStore) DefragTargets() []string { return engineDefragTargets(s.Backend) }

// Defrag implements Defragger.
func (s *MVCCStore) Defrag(ctx context.Context, _ string) error { return defragEngine(ctx, s.Backend) }

// EngineStats implements EngineStater: the store's Stats, whose in-use
// figure on pebble and badger is the store's live bytes.
func (s *MVCCStore) EngineStats(context.Context) (engine.Stats, error) {
	if s.Backend == nil {
		return engine.Stats{}, fmt.Errorf("bench: no backend")
	}
	return s.Store.Stats()
}

// NewWatchStream implements EtcdStore with an mvcc.WatchStream, whose
// responses one goroutine hands to the watchers' callbacks.
func (s *MVCCStore) NewWatchStream(context.Context) (WatchStream, error) {
	ws, err := s.Store.NewWatchStream(&mvcc.WatchStreamOptions{ProgressNotifyInterval: s.ProgressNotifyInterval})
	if err != nil {
		return nil, fmt.Errorf("bench: watch stream: %w", err)
	}
	w := &mvccWatchStream{ws: ws, fns: map[int64]func(*pb.WatchResponse){}, cancels: map[int64]chan struct{}{},
		progress: make(chan struct{}, 1)}
	w.wg.Go(w.run)
	return w, nil
}

type mvccWatchStream struct {
	ws      *mvcc.WatchStream
	wg      sync.WaitGroup
	mu      sync.Mutex
	fns     map[int64]func(*pb.WatchResponse) // by watch ID; guarded by mu
	cancels map[int64]chan struct{}           // guarded by mu
	// progress gets a token for each stream-wide progress notification.
	progress chan struct{}
}

func (w *mvccWatchStream) run() {
	for resp := range w.ws.Chan() {
		switch {
		case resp.Created:
		case resp.Canceled:
			w.mu.Lock()
			delete(w.fns, resp.WatchId)
			if c := w.cancels[resp.WatchId]; c != nil {
				delete(w.cancels, resp.WatchId)
				close(c)
			}
			w.mu.Unlock()
		case resp.WatchId == mvcc.InvalidWatchID && isProgressNotify(resp):
			select {
			case w.progress <- struct{}{}:
			default:
			}
		default:
			w.mu.Lock()
			fn := w.fns[resp.WatchId]
			w.mu.Unlock()
			if fn != nil {
				fn(resp)
			}
		}
	}
}

func (w *mvccWatchStream) Watch(_ context.Context, req *pb.WatchCreateRequest, fn func(*pb.WatchResponse)) (int64, error) {
	// The ID is picked under mu so that run finds fn for the watcher's
	// first events: they cannot come before Watch returns the ID.
	w.mu.Lock()
	defer w.mu.Unlock()
	id, err := w.ws.Watch(req)
	if err != nil {
		return 0, fmt.Errorf("bench: watch %q: %w", req.Key, err)
	}
	w.fns[id] = fn
	return id, nil
}

func (w *mvccWatchStream) Cancel(ctx context.Context, id int64) error {
	done := make(chan struct{})
	w.mu.Lock()
	w.cancels[id] = done
	err := w.ws.Cancel(id)
	if err != nil {
		delete(w.cancels, id)
	}
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("bench: cancel watch %d: %w", id, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *mvccWatchStream) RequestProgress(ctx context.Context) error {
	select { // a notification left from before
	case <-w.progress:
	default:
	}
	w.ws.RequestProgress()
	select {
	case <-w.progress:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *mvccWatchStream) Close() error {
	w.ws.Close()
	w.wg.Wait()
	return nil
}
