package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/etcddb"
)

// benchEtcdFile writes an etcd snapshot of n puts of 256-byte values over
// n/2 keys.
func benchEtcdFile(b *testing.B, n int) string {
	b.Helper()
	file := filepath.Join(b.TempDir(), "etcd.db")
	w, err := etcddb.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 256)
	created := make(map[int]int64)
	for i := range n {
		rev := int64(i + 2)
		k := i % (n / 2)
		if created[k] == 0 {
			created[k] = rev
		}
		kv, err := proto.Marshal(&mvccpb.KeyValue{Key: fmt.Appendf(nil, "/registry/pods/%08d", k), CreateRevision: created[k],
			ModRevision: rev, Version: int64(i/(n/2) + 1), Value: value})
		if err != nil {
			b.Fatal(err)
		}
		key := binary.BigEndian.AppendUint64(nil, uint64(rev))
		key = binary.BigEndian.AppendUint64(append(key, '_'), 0)
		if err := w.Revision(key, kv); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Finish(etcddb.FinishMeta{Rev: int64(n + 1), StorageVersion: "3.6.0"}); err != nil {
		b.Fatal(err)
	}
	return file
}

// benchRevs is the number of revisions of the benchmarks' etcd snapshot:
// 100,000, or STRATA_RESTORE_BENCH_REVS (the manual run of README's
// "Migrating from etcd" uses 1,000,000).
func benchRevs(b *testing.B) int {
	if v := os.Getenv("STRATA_RESTORE_BENCH_REVS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			b.Fatalf("STRATA_RESTORE_BENCH_REVS=%q", v)
		}
		return n
	}
	return 100000
}

// BenchmarkRestoreEtcd restores an etcd snapshot (benchRevs revisions)
// into each engine, and with etcdutl's own restore (in process) for
// comparison; BenchmarkExportEtcd exports it back.
func BenchmarkRestoreEtcd(b *testing.B) {
	file := benchEtcdFile(b, benchRevs(b))
	fi, _ := os.Stat(file)
	b.Run("etcdutl", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for i := 0; b.Loop(); i++ {
			err := etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
				SnapshotPath: file, Name: "e", OutputDataDir: filepath.Join(b.TempDir(), fmt.Sprint(i)),
				PeerURLs: []string{"http://127.0.0.1:2380"}, InitialCluster: "e=http://127.0.0.1:2380",
				InitialClusterToken: "etcd-cluster",
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, backend := range backends.Registry().Names() {
		b.Run(backend, func(b *testing.B) {
			b.SetBytes(fi.Size())
			for i := 0; b.Loop(); i++ {
				dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
				if err := run([]string{"snapshot", "restore", file, "--data-dir", dir, "--backend", backend}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkExportEtcd(b *testing.B) {
	file := benchEtcdFile(b, benchRevs(b))
	fi, _ := os.Stat(file)
	for _, backend := range backends.Registry().Names() {
		b.Run(backend, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "member")
			if err := run([]string{"snapshot", "restore", file, "--data-dir", dir, "--backend", backend}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(fi.Size())
			for i := 0; b.Loop(); i++ {
				if err := run([]string{"snapshot", "export", "--data-dir", dir, filepath.Join(b.TempDir(), "out.db")}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
