package mvcc

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/engine"
)

// importBenchRecords returns n records of etcd's key bucket: puts of
// 128-byte values that do not compress, over n/2 Kubernetes-style keys.
func importBenchRecords(b *testing.B, n int) []etcdRecord {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	recs := make([]etcdRecord, n)
	created := make([]int64, n/2)
	for i := range n {
		rev := int64(i + 2)
		k := i % (n / 2)
		if created[k] == 0 {
			created[k] = rev
		}
		value := make([]byte, 128)
		for j := 0; j < len(value); j += 8 {
			binary.LittleEndian.PutUint64(value[j:], r.Uint64())
		}
		v, err := proto.Marshal(&mvccpb.KeyValue{Key: fmt.Appendf(nil, "/registry/pods/ns-%03d/pod-%07d", k%1000, k),
			CreateRevision: created[k], ModRevision: rev, Version: int64(i/(n/2) + 1), Value: value})
		if err != nil {
			b.Fatal(err)
		}
		key := binary.BigEndian.AppendUint64(nil, uint64(rev))
		key = binary.BigEndian.AppendUint64(append(key, '_'), 0)
		recs[i] = etcdRecord{key, v}
	}
	return recs
}

// BenchmarkImport imports etcd's records (200,000, or
// STRATA_IMPORT_BENCH_REVS) into a fresh backend of each engine, as
// `strata snapshot restore` does from an etcd snapshot: the records, the
// meta area, the final sync and the close; through the engine's bulk
// loader (engine.BulkLoader) and through batches of commits.
func BenchmarkImport(b *testing.B) {
	n := 200000
	if v := os.Getenv("STRATA_IMPORT_BENCH_REVS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 {
			b.Fatalf("STRATA_IMPORT_BENCH_REVS=%q", v)
		}
	}
	recs := importBenchRecords(b, n)
	var size int64
	for _, r := range recs {
		size += int64(len(r.k) + len(r.v))
	}
	for _, e := range testEngines(b) {
		for _, mode := range []string{"loader", "batches"} {
			b.Run(e.Name+"/"+mode, func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					be := openBackendNoCleanup(b, e, b.TempDir())
					dst := be
					if mode == "batches" {
						dst = struct{ engine.Backend }{be} // without the engine's BulkLoader
					} else if _, ok := be.(engine.BulkLoader); !ok {
						be.Close()
						b.Skip("no bulk loader")
					}
					im, err := NewImporter(dst)
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range recs {
						if err := im.Revision(r.k, r.v); err != nil {
							b.Fatal(err)
						}
					}
					if _, _, _, err := im.Finish(ImportMeta{}); err != nil {
						b.Fatal(err)
					}
					if err := be.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
