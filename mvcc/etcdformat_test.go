package mvcc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/engine"
)

type etcdRecord struct{ k, v []byte }

// TestExportImport exports a store with history, deletes, leases and a
// compaction in etcd's records and imports them into a fresh backend of
// every engine: the imported store answers reads at every revision, its
// leases and its hash as the original does.
func TestExportImport(t *testing.T) {
	engines := testEngines(t)
	src, be := newTestStore(t, engines[0], nil)
	apply := func(f func(w *WriteBatch) error) {
		t.Helper()
		w, err := src.NewWriteBatch()
		if err != nil {
			t.Fatal(err)
		}
		if err := f(w); err != nil {
			w.Abort()
			t.Fatal(err)
		}
		if err := w.Commit(1); err != nil {
			t.Fatal(err)
		}
	}
	apply(func(w *WriteBatch) error {
		if _, err := w.LeaseGrant(&pb.LeaseGrantRequest{ID: 7, TTL: 100}); err != nil {
			return err
		}
		if _, err := w.LeaseGrant(&pb.LeaseGrantRequest{ID: 9, TTL: 50}); err != nil {
			return err
		}
		for i := range 20 {
			lease := int64(0)
			if i%5 == 0 {
				lease = 7
			}
			if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i%8), Value: fmt.Appendf(nil, "v%d", i), Lease: lease}); err != nil {
				return err
			}
		}
		_, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("k05"), RangeEnd: []byte("k07")})
		return err
	})
	apply(func(w *WriteBatch) error {
		_, _, err := w.Compact(&pb.CompactionRequest{Revision: 10})
		return err
	})
	apply(func(w *WriteBatch) error {
		_, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("k07")})
		return err
	})
	waitCompacted(t, src, 10)

	var revs, leases []etcdRecord
	m, err := Export(be,
		func(k, v []byte) error {
			revs = append(revs, etcdRecord{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		},
		func(k, v []byte) error {
			leases = append(leases, etcdRecord{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if m.Rev != src.Rev() || m.FinishedCompactRev != 10 || m.MaxRecordRev != src.Rev() || len(leases) != 2 {
		t.Fatalf("export: %+v, %d leases; store at %d", m, len(leases), src.Rev())
	}
	for _, e := range engines {
		t.Run(e.Name, func(t *testing.T) {
			dst := openBackend(t, e, t.TempDir())
			im, err := NewImporter(dst)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range revs {
				if err := im.Revision(r.k, r.v); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range leases {
				if err := im.Lease(r.k, r.v); err != nil {
					t.Fatal(err)
				}
			}
			rev, nrevs, nleases, err := im.Finish(ImportMeta{FinishedCompactRev: m.FinishedCompactRev, ScheduledCompactRev: m.ScheduledCompactRev})
			if err != nil || rev != m.Rev || nrevs != len(revs) || nleases != len(leases) {
				t.Fatalf("finish: rev %d, %d revisions, %d leases, %v", rev, nrevs, nleases, err)
			}
			if _, err := NewImporter(dst); !errors.Is(err, engine.ErrNotEmpty) {
				t.Fatalf("importing into a filled backend: %v", err)
			}
			got, err := Open(dst, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if got.Rev() != src.Rev() || got.CompactRev() != src.CompactRev() || got.AppliedIndex() != 0 {
				t.Fatalf("imported store at %d compacted at %d applied %d", got.Rev(), got.CompactRev(), got.AppliedIndex())
			}
			wantHash, _, err := src.HashByRev(0)
			if err != nil {
				t.Fatal(err)
			}
			gotHash, _, err := got.HashByRev(0)
			if err != nil || gotHash != wantHash {
				t.Fatalf("hash %+v %v, want %+v", gotHash, err, wantHash)
			}
			for rev := int64(1); rev <= src.Rev()+1; rev++ {
				req := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
				w, werr := src.Range(context.Background(), req)
				g, gerr := got.Range(context.Background(), req)
				if !errors.Is(gerr, werr) && (werr == nil || gerr == nil || werr.Error() != gerr.Error()) {
					t.Fatalf("range at %d: %v, want %v", rev, gerr, werr)
				}
				if werr == nil && !proto.Equal(&pb.RangeResponse{Kvs: g.Kvs, Count: g.Count}, &pb.RangeResponse{Kvs: w.Kvs, Count: w.Count}) {
					t.Fatalf("range at %d: %v, want %v", rev, g.Kvs, w.Kvs)
				}
			}
		})
	}
}

// waitCompacted waits until s's compaction at rev is on disk.
func waitCompacted(t *testing.T, s *Store, rev int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		snap, err := s.be.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		v, err := snap.Get(metaFinishedCompact)
		snap.Close()
		if err == nil {
			if f, _ := getUint64(v); int64(f) >= rev {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("compaction at %d not finished", rev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func etcdRev(main, sub int64, tomb bool) []byte {
	return appendRevBytes(nil, revision{main, sub}, tomb)
}

// TestImporterRejects checks that damaged etcd records are refused.
func TestImporterRejects(t *testing.T) {
	kv := func(key string, create, mod, ver int64) []byte {
		return encodeKV(&mvccpb.KeyValue{Key: []byte(key), CreateRevision: create, ModRevision: mod, Version: ver, Value: []byte("v")})
	}
	good := etcdRecord{etcdRev(2, 0, false), kv("a", 2, 2, 1)}
	cases := []struct {
		name   string
		revs   []etcdRecord
		leases []etcdRecord
	}{
		{"short revision", []etcdRecord{{[]byte("12345678_"), kv("a", 2, 2, 1)}}, nil},
		{"no separator", []etcdRecord{{append(etcdRev(2, 0, false)[:8:8], make([]byte, 9)...), kv("a", 2, 2, 1)}}, nil},
		{"bad value", []etcdRecord{{etcdRev(2, 0, false), []byte{0x0a, 0xff}}}, nil},
		{"empty key", []etcdRecord{{etcdRev(2, 0, false), kv("", 2, 2, 1)}}, nil},
		{"mod revision", []etcdRecord{{etcdRev(2, 0, false), kv("a", 2, 3, 1)}}, nil},
		{"create after mod", []etcdRecord{{etcdRev(2, 0, false), kv("a", 3, 2, 1)}}, nil},
		{"version 0", []etcdRecord{{etcdRev(2, 0, false), kv("a", 2, 2, 0)}}, nil},
		{"out of order", []etcdRecord{{etcdRev(3, 0, false), kv("a", 3, 3, 1)}, good}, nil},
		{"repeated", []etcdRecord{good, good}, nil},
		{"lease key", []etcdRecord{good}, []etcdRecord{{[]byte{1}, encodeLease(1, 10, 0)}}},
		{"lease ID", []etcdRecord{good}, []etcdRecord{{leaseKey(2)[1:], encodeLease(1, 10, 0)}}},
		{"lease value", []etcdRecord{good}, []etcdRecord{{leaseKey(1)[1:], []byte{0x08}}}},
		{"lease order", []etcdRecord{good}, []etcdRecord{{leaseKey(2)[1:], encodeLease(2, 10, 0)}, {leaseKey(1)[1:], encodeLease(1, 10, 0)}}},
	}
	e := testEngines(t)[0]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			im, err := NewImporter(openBackend(t, e, t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for _, r := range c.revs {
				if last = im.Revision(r.k, r.v); last != nil {
					break
				}
			}
			for _, r := range c.leases {
				if last != nil {
					break
				}
				last = im.Lease(r.k, r.v)
			}
			if !errors.Is(last, ErrCorrupt) {
				t.Fatalf("import: %v, want ErrCorrupt", last)
			}
		})
	}
}

// TestImportBump checks that a revision-only record (etcdutl's
// --bump-revision) raises the current revision and adds no key.
func TestImportBump(t *testing.T) {
	e := testEngines(t)[0]
	be := openBackend(t, e, t.TempDir())
	im, err := NewImporter(be)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Revision(etcdRev(2, 0, false), encodeKV(&mvccpb.KeyValue{Key: []byte("a"), CreateRevision: 2, ModRevision: 2, Version: 1})); err != nil {
		t.Fatal(err)
	}
	if err := im.Revision(etcdRev(1002, 0, false), nil); err != nil {
		t.Fatal(err)
	}
	if rev, n, _, err := im.Finish(ImportMeta{}); err != nil || rev != 1002 || n != 1 {
		t.Fatalf("finish: rev %d, %d revisions, %v", rev, n, err)
	}
	s, err := Open(be, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Rev() != 1002 || s.KeyCount() != 1 || s.CompactRev() != -1 {
		t.Fatalf("store at %d with %d keys, compacted at %d", s.Rev(), s.KeyCount(), s.CompactRev())
	}
}

// FuzzCheckEtcdRevision checks that the check of an etcd key-bucket record
// never panics, and that what it accepts decodes as etcd's proto does.
func FuzzCheckEtcdRevision(f *testing.F) {
	f.Add(etcdRev(3, 1, false), encodeKV(&mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 2, Value: []byte("v"), Lease: 7}))
	f.Add(etcdRev(4, 0, true), encodeKV(&mvccpb.KeyValue{Key: []byte("k")}))
	f.Add(etcdRev(5, 0, false), []byte{})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		bump, err := CheckEtcdRevision(k, v)
		if err != nil || bump {
			return
		}
		var kv mvccpb.KeyValue
		if err := proto.Unmarshal(v, &kv); err != nil {
			t.Fatalf("accepted %x, which proto.Unmarshal refuses: %v", v, err)
		}
		rev, tomb, err := parseRevBytes(k)
		if err != nil || len(kv.Key) == 0 || (!tomb && kv.ModRevision != rev.main) {
			t.Fatalf("accepted %x -> %v", k, &kv)
		}
	})
}
