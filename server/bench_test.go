package server_test

import (
	"context"
	"encoding/binary"
	"sync/atomic"
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
			kv := benchClient(b, bc.members, bc.follower)
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

// BenchmarkPut is the write path of etcd's benchmark tool (`put`, 8-byte
// keys over a key space of 10k, 256-byte values) through a real gRPC
// connection to real members on bbolt, every WAL fsynced: one member, and
// the leader and a follower of three (a follower forwards its writes to the
// leader). allocs/op counts the client's and the members' allocations of
// one put, raft's included; they are stable under machine load where ns/op
// is not.
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		name     string
		members  int
		follower bool
	}{
		{"members=1", 1, false},
		{"members=3/leader", 3, false},
		{"members=3/follower", 3, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			kv := benchClient(b, bc.members, bc.follower)
			ctx := context.Background()
			value := make([]byte, 256)
			var next atomic.Int64
			b.SetParallelism(50) // 50 × GOMAXPROCS concurrent requests: etcd's tool's 100 clients on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(p *testing.PB) {
				key := make([]byte, 8)
				for p.Next() {
					binary.BigEndian.PutUint64(key, uint64(next.Add(1)%10000))
					if _, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: value}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchClient starts a cluster of members on bbolt and returns a KV client
// of its leader, or of a follower.
func benchClient(b *testing.B, members int, follower bool) pb.KVClient {
	c := newCluster(b, members, engines()[0], nil)
	target := c.leader()
	if follower {
		target = (target + 1) % members
	}
	conn, err := grpc.NewClient(c.endpoint(target), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return pb.NewKVClient(conn)
}
