package server_test

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkRange is the read path of etcd's benchmark tool (`range foo`,
// one 8-byte key with a 256-byte value) through a real gRPC connection to
// real members on bbolt: serializable and linearizable on one member, and
// linearizable on a follower of three (its read index comes from the
// leader). allocs/op counts the client's and the members' allocations of
// one request; they are stable under machine load where ns/op is not.
func BenchmarkRange(b *testing.B) {
	for _, bc := range []struct {
		name     string
		members  int
		follower bool
		serial   bool
	}{
		{"serializable/members=1", 1, false, true},
		{"linearizable/members=1", 1, false, false},
		{"serializable/members=3/follower", 3, true, true},
		{"linearizable/members=3/follower", 3, true, false},
		{"linearizable/members=3/leader", 3, false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newCluster(b, bc.members, engines()[0], nil)
			target := c.leader()
			if bc.follower {
				target = (target + 1) % bc.members
			}
			conn, err := grpc.NewClient(c.endpoint(target), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			kv := pb.NewKVClient(conn)
			ctx := context.Background()
			if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("foo"), Value: make([]byte, 256)}); err != nil {
				b.Fatal(err)
			}
			// A linearizable read first: the target has applied the put.
			if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("foo")}); err != nil {
				b.Fatal(err)
			}
			req := &pb.RangeRequest{Key: []byte("foo"), Serializable: bc.serial}
			b.SetParallelism(8) // 8 × GOMAXPROCS concurrent requests
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := kv.Range(ctx, req)
					if err != nil {
						b.Error(err)
						return
					}
					if len(resp.Kvs) != 1 {
						b.Errorf("got %d kvs", len(resp.Kvs))
						return
					}
				}
			})
		})
	}
}
