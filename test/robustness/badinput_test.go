package robustness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestBadInput sends a running cluster what a client or a peer should not
// send: oversized requests, random bytes on the client and peer ports, and
// a watch stream that is never read under a heavy write load. Each is
// refused with etcd's error or shed; no member crashes, memory stays
// bounded and the cluster keeps serving.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newCluster(t, "bbolt", 3)
	cli := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("oversized request", func(t *testing.T) {
		_, err := cli.Put(ctx, "big", strings.Repeat("x", 1536*1024+1))
		if !errors.Is(err, rpctypes.ErrRequestTooLarge) {
			t.Errorf("put of 1.5 MiB + 1: %v, want %v", err, rpctypes.ErrRequestTooLarge)
		}
		ops := make([]clientv3.Op, 129)
		for i := range ops {
			ops[i] = clientv3.OpPut(fmt.Sprint("txn", i), "v")
		}
		_, err = cli.Txn(ctx).Then(ops...).Commit()
		if !errors.Is(err, rpctypes.ErrTooManyOps) {
			t.Errorf("txn of 129 ops: %v, want %v", err, rpctypes.ErrTooManyOps)
		}
	})

	t.Run("random bytes", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		var addrs []string
		for _, m := range c.members {
			addrs = append(addrs, m.client, m.peer)
		}
		for i := range 300 {
			conn, err := net.DialTimeout("tcp", addrs[i%len(addrs)], time.Second)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1+r.IntN(64<<10))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			if i%3 == 0 {
				// Something that starts like HTTP/2 or a raft RPC.
				copy(b, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")[:min(len(b), 24)])
			}
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write(b)
			_, _ = conn.Read(make([]byte, 1024))
			conn.Close()
		}
		for _, m := range c.members {
			if !m.running() {
				t.Errorf("%s exited: %v", m.name, m.err)
			}
		}
		if _, err := cli.Put(ctx, "after-garbage", "v"); err != nil {
			t.Errorf("put after the garbage: %v", err)
		}
	})

	t.Run("watch stream never read", func(t *testing.T) {
		m := c.members[0]
		conn, err := grpc.NewClient(m.client, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		ws, err := pb.NewWatchClient(conn).Watch(wctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
				Key: []byte("flood/"), RangeEnd: []byte("flood0"), PrevKv: true}}}); err != nil {
				t.Fatal(err)
			}
		}
		before := rss(t, m.pid())
		ctrl := c.members[1] // the same data, no watchers
		ctrlBefore := rss(t, ctrl.pid())
		val := strings.Repeat("v", 64<<10)
		start := time.Now()
		const puts = 600 // 37.5 MiB of values; 10 watchers with prev_kv: 750 MiB of events unread
		var half int64
		for i := range puts {
			if i == puts/2 {
				half = rss(t, m.pid())
			}
			if _, err := cli.Put(ctx, fmt.Sprintf("flood/%d", i%50), val); err != nil {
				t.Fatalf("put %d while a watch stream is not read: %v", i, err)
			}
		}
		peak, ctrlPeak := rss(t, m.pid()), rss(t, ctrl.pid())
		t.Logf("%d puts of 64 KiB under 10 unread watchers in %v; RSS of %s (the watchers' member) %d -> %d (half-way) -> %d MiB, of %s (no watchers) %d -> %d MiB",
			puts, time.Since(start).Round(time.Millisecond), m.name, before>>20, half>>20, peak>>20, ctrl.name, ctrlBefore>>20, ctrlPeak>>20)
		// Today the watch stream's buffer is bounded in events (4096
		// per watcher, mvcc.WatchStreamOptions.BufferEvents), not in
		// bytes, so with large values the unread events are all held and
		// the member grows with them (see the README). This only catches
		// worse: the 750 MiB of events all held, or copied per watcher
		// (the race detector's shadow memory inflates RSS too).
		if extra := (peak - before) - (ctrlPeak - ctrlBefore); extra > 768<<20 {
			t.Errorf("RSS of the watchers' member grew %d MiB more than without watchers", extra>>20)
		}
		if _, err := cli.Compact(ctx, mustRev(t, cli)); err != nil {
			t.Errorf("compact: %v", err)
		}
	})
	c.checkLogs()
}

func mustRev(t *testing.T, cli *clientv3.Client) int64 {
	resp, err := cli.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// rss returns the resident set size of process pid, from /proc.
func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
