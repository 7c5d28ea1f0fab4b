package bench

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
)

// EtcdStore is a Store that also takes etcd's own requests: ranges at a
// revision, transactions, compaction and watches. The k8s, watch and
// compact workloads need one; ClientStore (cluster and endpoints modes)
// and MVCCStore (mvcc mode) are.
type EtcdStore interface {
	Store
	// Range serves r. A store set up for serializable reads makes r
	// serializable.
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	// Compact compacts the keyspace at rev; with physical, it returns once
	// the compaction is done on disk.
	Compact(ctx context.Context, rev int64, physical bool) error
	// NewWatchStream opens one watch stream: a gRPC Watch stream, or an
	// mvcc.WatchStream.
	NewWatchStream(ctx context.Context) (WatchStream, error)
}

// WatchStream carries watchers.
type WatchStream interface {
	// Watch starts the watcher req asks for (from the revision after the
	// current one when it names none) and returns its ID once the target
	// answered its creation. fn gets the watcher's responses with events,
	// in order, and its progress notifications (no events); calls for one
	// watcher never overlap. Responses are shared: fn must not keep or
	// change them.
	Watch(ctx context.Context, req *pb.WatchCreateRequest, fn func(*pb.WatchResponse)) (int64, error)
	// Cancel cancels watcher id and returns once the target answered the
	// cancellation; fn is not called for it after that.
	Cancel(ctx context.Context, id int64) error
	// RequestProgress asks for a progress notification (etcd's
	// RequestProgress) and returns once the stream's watchers got it, or
	// with ctx's error (a target sends none while a watcher is behind).
	RequestProgress(ctx context.Context) error
	// Close cancels the stream's watchers and returns once no fn runs.
	Close() error
}

// isProgressNotify tells a progress notification: no events, neither a
// creation nor a cancellation (clientv3's IsProgressNotify).
func isProgressNotify(r *pb.WatchResponse) bool {
	return len(r.Events) == 0 && !r.Created && !r.Canceled && r.CompactRevision == 0 && r.GetHeader().GetRevision() != 0
}

// Defragger is a store whose space can be defragmented, one member (or
// engine) at a time.
type Defragger interface {
	// DefragTargets names what Defrag takes: the endpoints of a cluster,
	// or "engine"; none when the store cannot defragment.
	DefragTargets() []string
	Defrag(ctx context.Context, target string) error
}

// EngineStater is a store that can tell its engine's own figures of the
// space it takes, summed over a cluster's members.
type EngineStater interface {
	EngineStats(ctx context.Context) (engine.Stats, error)
}

// MeasureDisk returns the space the target of s takes: the engine's
// figures where s tells them, and DU(dir) when dir is not empty. What
// cannot be measured is left zero.
func MeasureDisk(ctx context.Context, s Store, dir string) Disk {
	var d Disk
	if es, ok := s.(EngineStater); ok {
		if st, err := es.EngineStats(ctx); err == nil {
			d.EngineSize, d.EngineInUse = st.Size, st.InUse
		}
	}
	if dir != "" {
		d.DU, _ = DU(dir)
	}
	return d
}

// isCompacted reports whether err says that a revision was compacted,
// from the mvcc store or over gRPC.
func isCompacted(err error) bool {
	return errors.Is(err, mvcc.ErrCompacted) || errors.Is(err, rpctypes.ErrCompacted)
}

// currentRev returns the store's current revision, from the header of a
// count-only range.
func currentRev(ctx context.Context, s EtcdStore) (int64, error) {
	resp, err := s.Range(ctx, &pb.RangeRequest{Key: []byte(compactRevKey), CountOnly: true})
	if err != nil {
		return 0, err
	}
	return resp.GetHeader().GetRevision(), nil
}

// prefixEnd returns the end of the range of keys starting with prefix, as
// clientv3.GetPrefixRangeEnd.
func prefixEnd(prefix []byte) []byte {
	end := []byte(string(prefix))
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}
