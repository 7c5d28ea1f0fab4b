package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/server"
)

// startMember starts a single-member cluster named name on dataDir.
func startMember(t *testing.T, name, dataDir, backend string) (*server.Server, *clientv3.Client) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer := "http://" + l.Addr().String()
	l.Close()
	eng, err := backends.Registry().Lookup(backend)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Start(server.Config{
		Name:                     name,
		DataDir:                  dataDir,
		Engine:                   eng,
		ListenClientURLs:         []string{"http://127.0.0.1:0"},
		ListenPeerURLs:           []string{peer},
		InitialAdvertisePeerURLs: []string{peer},
		InitialCluster:           name + "=" + peer,
		HeartbeatInterval:        50 * time.Millisecond,
		ElectionTimeout:          500 * time.Millisecond,
		Logger:                   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.ReadyNotify():
	case <-time.After(30 * time.Second):
		s.Close()
		t.Fatal("member not ready after 30s")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s, cli
}

func stopMember(t *testing.T, s *server.Server, cli *clientv3.Client) {
	t.Helper()
	cli.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotRestoreDefrag saves a snapshot of a running member, restores
// it into a new data directory, starts a member on it and reads the keys
// back; then defragments the stopped member and reads them again.
func TestSnapshotRestoreDefrag(t *testing.T) {
	for _, backend := range backends.Registry().Names() {
		t.Run(backend, func(t *testing.T) { testSnapshotRestoreDefrag(t, backend) })
	}
}

func testSnapshotRestoreDefrag(t *testing.T, backend string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	s, cli := startMember(t, "src", filepath.Join(dir, "src"), backend)
	for i := range 50 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "k4", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "leased", "x", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	want, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "snap.db")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	stopMember(t, s, cli)

	restored := filepath.Join(dir, "restored")
	if err := run([]string{"snapshot", "restore", snap, "--data-dir", restored, "--name", "r", "--backend", backend}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"snapshot", "restore", snap, "--data-dir", restored, "--backend", backend}); err == nil {
		t.Fatal("restoring into an existing data-dir succeeded")
	}
	// A damaged or truncated Strata snapshot is refused before anything
	// is written.
	whole, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), whole...)
	flipped[len(flipped)/3] ^= 0x01
	for name, data := range map[string][]byte{"truncated": whole[:len(whole)-100], "flipped": flipped} {
		bad := filepath.Join(dir, name+".snap")
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+"-out")
		if err := run([]string{"snapshot", "restore", bad, "--data-dir", out, "--backend", backend}); err == nil {
			t.Fatalf("restoring a %s snapshot succeeded", name)
		}
		if left, _ := filepath.Glob(out + "*"); len(left) > 0 {
			t.Fatalf("restoring a %s snapshot left %v", name, left)
		}
	}
	check := func(cli *clientv3.Client) {
		t.Helper()
		got, err := cli.Get(ctx, "", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Kvs) != len(want.Kvs) || got.Header.Revision < want.Header.Revision {
			t.Fatalf("restored: %d keys at revision %d, want %d at %d", len(got.Kvs), got.Header.Revision, len(want.Kvs), want.Header.Revision)
		}
		for i, kv := range got.Kvs {
			w := want.Kvs[i]
			if string(kv.Key) != string(w.Key) || string(kv.Value) != string(w.Value) || kv.ModRevision != w.ModRevision ||
				kv.CreateRevision != w.CreateRevision || kv.Version != w.Version || kv.Lease != w.Lease {
				t.Fatalf("restored key %d: %v, want %v", i, kv, w)
			}
		}
		ttl, err := cli.TimeToLive(ctx, lease.ID, clientv3.WithAttachedKeys())
		if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 {
			t.Fatalf("restored lease: %v %v", ttl, err)
		}
	}
	s, cli = startMember(t, "r", restored, backend)
	check(cli)
	// The new cluster goes on from the snapshot's revision.
	put, err := cli.Put(ctx, "after", "1")
	if err != nil {
		t.Fatal(err)
	}
	if put.Header.Revision != want.Header.Revision+1 {
		t.Fatalf("first put after restore at revision %d, want %d", put.Header.Revision, want.Header.Revision+1)
	}
	if _, err := cli.Delete(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	want.Header.Revision += 2
	stopMember(t, s, cli)

	if err := run([]string{"defrag", "--data-dir", restored}); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"defrag", "--data-dir", filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("defrag of a missing data-dir succeeded")
	}
	s, cli = startMember(t, "r", restored, backend)
	defer stopMember(t, s, cli)
	check(cli)
}

// startCluster starts, at once, members on data directories made by a
// restore with the cluster flags: each gets only its name, data
// directory, engine and listen URLs (its peer URL is peers[i]), as etcd
// members start on restored data directories. It waits until all serve.
func startCluster(t *testing.T, names, dataDirs, engines, peers []string) ([]*server.Server, []*clientv3.Client) {
	t.Helper()
	n := len(names)
	srvs := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		eng, err := backends.Registry().Lookup(engines[i])
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			srvs[i], errs[i] = server.Start(server.Config{
				Name:              names[i],
				DataDir:           dataDirs[i],
				Engine:            eng,
				ListenClientURLs:  []string{"http://127.0.0.1:0"},
				ListenPeerURLs:    []string{peers[i]},
				HeartbeatInterval: 50 * time.Millisecond,
				ElectionTimeout:   500 * time.Millisecond,
				Logger:            slog.New(slog.DiscardHandler),
			})
		}()
	}
	wg.Wait()
	clis := make([]*clientv3.Client, n)
	t.Cleanup(func() {
		for i := range n {
			if clis[i] != nil {
				clis[i].Close()
			}
			if srvs[i] != nil {
				srvs[i].Close()
			}
		}
	})
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	for i, s := range srvs {
		select {
		case <-s.ReadyNotify():
		case <-time.After(30 * time.Second):
			t.Fatalf("member %s not ready after 30s", names[i])
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		clis[i] = cli
	}
	return srvs, clis
}

// checkSameHashKV checks that every member has the same HashKV at rev,
// waiting for members behind it.
func checkSameHashKV(t *testing.T, ctx context.Context, clis []*clientv3.Client, rev int64) {
	t.Helper()
	var first *clientv3.HashKVResponse
	for i, cli := range clis {
		var h *clientv3.HashKVResponse
		var err error
		for range 100 { // a follower may not have applied rev yet
			if h, err = cli.HashKV(ctx, cli.Endpoints()[0], rev); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("member %d: HashKV at %d: %v", i, rev, err)
		}
		if first == nil {
			first = h
			continue
		}
		if h.Hash != first.Hash || h.CompactRevision != first.CompactRevision {
			t.Fatalf("member %d: HashKV at %d: hash %x compact %d; member 0: %x %d", i, rev, h.Hash, h.CompactRevision, first.Hash, first.CompactRevision)
		}
	}
}

// TestRestoreCluster restores one etcd snapshot, with etcdutl's cluster
// flags, into the data directories of three members on three engines,
// starts them as a new cluster (raft over TCP) and checks that each
// serves the snapshot's keys, revisions, leases and HashKV, that they
// share the cluster ID and have the member IDs etcd computes, and that
// writes replicate.
func TestRestoreCluster(t *testing.T) {
	d := buildEtcdData(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	addrs, err := freeport.Addrs(3)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"m0", "m1", "m2"}
	engines := []string{"bbolt", "pebble", "badger"}
	var peers, dataDirs, initial []string
	for i, a := range addrs {
		peers = append(peers, "http://"+a)
		dataDirs = append(dataDirs, filepath.Join(dir, names[i]))
		initial = append(initial, names[i]+"="+peers[i])
	}
	for i := range names {
		args := []string{"snapshot", "restore", d.snapshot, "--name", names[i], "--data-dir", dataDirs[i], "--backend", engines[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "restored", "--initial-advertise-peer-urls", peers[i]}
		if err := run(args); err != nil {
			t.Fatal(err)
		}
	}
	// Bad cluster flags are refused before anything is written.
	bad := filepath.Join(dir, "bad")
	for _, args := range [][]string{
		{"--name", "mX", "--initial-cluster", strings.Join(initial, ",")},
		{"--name", "m0", "--initial-cluster", strings.Join(initial, ","), "--initial-advertise-peer-urls", peers[1]},
		{"--name", "m0", "--initial-cluster", "m0"},
	} {
		if err := run(append([]string{"snapshot", "restore", d.snapshot, "--data-dir", bad}, args...)); err == nil {
			t.Fatalf("restore %q succeeded", args)
		}
		if left, _ := filepath.Glob(bad + "*"); len(left) > 0 {
			t.Fatalf("failed restore %q left %v", args, left)
		}
	}

	srvs, clis := startCluster(t, names, dataDirs, engines, peers)
	var ids []uint64
	for i, s := range srvs {
		if s.ClusterID() != srvs[0].ClusterID() {
			t.Fatalf("member %d: cluster ID %x, member 0 has %x", i, s.ClusterID(), srvs[0].ClusterID())
		}
		ids = append(ids, s.MemberID())
		compareAnswers(t, "restored "+names[i]+" ("+engines[i]+")", capture(t, clis[i]), d.want)
	}
	ml, err := clis[1].MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 3 {
		t.Fatalf("member list: %v", ml.Members)
	}
	for _, m := range ml.Members {
		if !slices.Contains(ids, m.ID) {
			t.Fatalf("member list has %x, members are %x", m.ID, ids)
		}
	}
	checkSameHashKV(t, ctx, clis, d.want.rev)
	var last int64
	for i := range 30 {
		put, err := clis[i%3].Put(ctx, fmt.Sprint("new", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		last = put.Header.Revision
	}
	checkSameHashKV(t, ctx, clis, last)
	resp, err := clis[2].Get(ctx, "new", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count == 0 || resp.Header.Revision < d.want.rev+30 {
		t.Fatalf("after 30 puts: %d keys at revision %d, snapshot at %d", resp.Count, resp.Header.Revision, d.want.rev)
	}
}
