package server

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/replication"
)

// The IDs etcd v3.7.3 gave a single member started with
// --initial-advertise-peer-urls http://127.0.0.1:23800 and the default
// token (read from `etcdctl member list -w json`).
func TestIDsAreEtcds(t *testing.T) {
	m := memberID([]string{"http://127.0.0.1:23800"}, DefaultInitialClusterToken)
	if m != 3319814642761637952 {
		t.Fatalf("member ID %d, want etcd's 3319814642761637952", m)
	}
	if c := clusterID([]uint64{m}); c != 324952591200643719 {
		t.Fatalf("cluster ID %d, want etcd's 324952591200643719", c)
	}
	if parseRaftID(raftID(m)) != m || parseRaftID("not hex") != 0 {
		t.Fatal("raft ID round trip")
	}
}

func TestRequestHeaderBytes(t *testing.T) {
	h := &pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: math.MaxUint64}}
	if n := proto.Size(h); n != requestHeaderBytes {
		t.Fatalf("etcd's largest request header takes %d bytes, requestHeaderBytes is %d", n, requestHeaderBytes)
	}
}

func TestSnapshotFraming(t *testing.T) {
	for _, n := range []int{0, 1, 495, 496, 497, 512, 4096, 100000} {
		backup := bytes.Repeat([]byte{0xab}, n)
		payload, err := io.ReadAll(io.MultiReader(bytes.NewReader(backup), snapshotTrailer(int64(n))))
		if err != nil {
			t.Fatal(err)
		}
		if len(payload)%snapshotAlign != 0 || int64(len(payload)) != snapshotSize(int64(n)) {
			t.Fatalf("backup of %d: payload of %d bytes", n, len(payload))
		}
		sum := sha256Sum(payload)
		file := append(payload, sum...)
		r, err := ReadSnapshot(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatalf("backup of %d: %v", n, err)
		}
		got, _ := io.ReadAll(r)
		if !bytes.Equal(got, backup) {
			t.Fatalf("backup of %d: read back %d bytes", n, len(got))
		}
		file[0] ^= 1
		if n > 0 {
			if _, err := ReadSnapshot(bytes.NewReader(file), int64(len(file))); err == nil {
				t.Fatalf("backup of %d: corrupt file accepted", n)
			}
		}
	}
}

func TestTogRPCError(t *testing.T) {
	for _, c := range []struct {
		err, want error
	}{
		{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
		{fmt.Errorf("x: %w", mvcc.ErrFutureRev), rpctypes.ErrGRPCFutureRev},
		{replication.ErrNotLeader, rpctypes.ErrGRPCNoLeader},
		{fmt.Errorf("%w: raft", replication.ErrLeaderChanged), rpctypes.ErrGRPCLeaderChanged},
		{replication.ErrNotReady, rpctypes.ErrGRPCTimeout},
		{rpctypes.ErrGRPCNoSpace, rpctypes.ErrGRPCNoSpace},
	} {
		if got := togRPCError(c.err); got != c.want {
			t.Errorf("togRPCError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if got := togRPCError(errors.New("boom")); got.Error() != "rpc error: code = Unknown desc = boom" {
		t.Errorf("unknown error: %v", got)
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestMinLeaseTTL(t *testing.T) {
	for _, tc := range []struct {
		hb, election time.Duration
		want         int64
	}{
		{100 * time.Millisecond, time.Second, 2}, // etcd's defaults: 1.5 s rounded up
		{100 * time.Millisecond, 2 * time.Second, 3},
		{50 * time.Millisecond, 500 * time.Millisecond, 1},
	} {
		c := &config{}
		c.HeartbeatInterval, c.ElectionTimeout = tc.hb, tc.election
		if got := c.minLeaseTTL(); got != tc.want {
			t.Errorf("heartbeat %s election %s: min TTL %d, want %d", tc.hb, tc.election, got, tc.want)
		}
	}
}
