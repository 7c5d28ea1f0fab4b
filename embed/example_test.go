package embed_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/embed"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/mvcc"
)

// An engine on its own: an ordered, durable byte keyspace. Writes go in
// atomic batches; reads go through a consistent snapshot.
func Example_engine() {
	dir, err := os.MkdirTemp("", "strata-engine")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	be, err := bbolt.Engine().Open(dir, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	var b engine.Batch
	b.Set([]byte("b"), []byte("2"))
	b.Set([]byte("a"), []byte("1"))
	if err := be.Commit(&b, engine.Sync); err != nil {
		log.Fatal(err)
	}

	snap, err := be.NewSnapshot()
	if err != nil {
		log.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		log.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		fmt.Printf("%s=%s\n", it.Key(), it.Value())
	}
	if err := it.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// a=1
	// b=2
}

// etcd's revisioned keyspace in process, without replication: an
// mvcc.Store on an engine answers etcd's requests.
func Example_mvcc() {
	dir, err := os.MkdirTemp("", "strata-mvcc")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	be, err := bbolt.Engine().Open(dir, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer be.Close()
	st, err := mvcc.Open(be, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	// Writes go in a batch, committed with the index of what it applies
	// (a raft index in a member; any increasing number here).
	for i, v := range []string{"bar", "baz"} {
		w, err := st.NewWriteBatch()
		if err != nil {
			log.Fatal(err)
		}
		if _, err := w.Put(&pb.PutRequest{Key: []byte("foo"), Value: []byte(v)}); err != nil {
			log.Fatal(err)
		}
		if err := w.Commit(uint64(i + 1)); err != nil {
			log.Fatal(err)
		}
	}
	now, err := st.Range(context.Background(), &pb.RangeRequest{Key: []byte("foo")})
	if err != nil {
		log.Fatal(err)
	}
	then, err := st.Range(context.Background(), &pb.RangeRequest{Key: []byte("foo"), Revision: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("foo=%s at revision %d, version %d\n", now.Kvs[0].Value, now.Kvs[0].ModRevision, now.Kvs[0].Version)
	fmt.Printf("foo=%s at revision 2\n", then.Kvs[0].Value)
	// Output:
	// foo=baz at revision 3, version 2
	// foo=bar at revision 2
}

// A member embedded in the program, used through clientv3 as any etcd.
func Example() {
	dir, err := os.MkdirTemp("", "strata-embed")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	peer, err := freeport.Addrs(1) // a free port for the peer URL
	if err != nil {
		log.Fatal(err)
	}

	cfg := embed.NewConfig()
	cfg.Engine = bbolt.Engine()
	cfg.DataDir = filepath.Join(dir, "default.strata")
	cfg.ListenClientURLs = []string{"http://127.0.0.1:0"} // port 0: any free one
	cfg.ListenPeerURLs = []string{"http://" + peer[0]}
	cfg.InitialAdvertisePeerURLs = cfg.ListenPeerURLs
	cfg.InitialCluster = "default=http://" + peer[0]
	cfg.Logger = slog.New(slog.DiscardHandler) // quiet; the default is etcd's JSON on stderr
	m, err := embed.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: m.ClientURLs(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	resp, err := cli.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s=%s\n", resp.Kvs[0].Key, resp.Kvs[0].Value)
	// Output: greeting=hello
}
