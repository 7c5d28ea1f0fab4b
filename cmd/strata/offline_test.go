package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/backends"
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
