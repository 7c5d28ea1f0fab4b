package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
)

// scanLiveBytes sums the keys and values of be: what LiveBytes must
// equal.
func scanLiveBytes(t *testing.T, be engine.Backend) int64 {
	t.Helper()
	snap, err := be.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		n += int64(len(it.Key()) + len(it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStatsInUse checks Store.Stats's in-use figure on every engine: N
// bytes of keys and values written make it grow by about N; deleting 90%
// of them and compacting the store brings it down to about the 10% left
// while the engine's size stays; a reopen, a backup restored by the same
// engine and a dump loaded into another engine give the same live bytes.
//
// On pebble and badger InUse is the store's LiveBytes, which the test
// checks against a scan of the revision area at every step. A record
// holds its user key and value plus the revision key (18 bytes) and the
// KeyValue's revision, version and length fields (13 bytes here), so the
// growth is between N and N + 48 bytes per record. On bbolt it is etcd's
// figure, the pages in use: a 4 KiB leaf page holds three of these 1 KiB
// records, and branch pages come on top, so the growth is between N and
// 2N; after the deletes, the freed pages are subtracted.
func TestStatsInUse(t *testing.T) {
	const (
		keys    = 4096
		keySize = 16
		valSize = 1008
		n       = keys * (keySize + valSize) // 4 MiB
		kept    = keys / 10                  // every 10th key stays
		perRec  = 48                         // allowed overhead of a record
	)
	for _, tc := range []struct {
		engine string
		// pages: InUse is the engine's page count, not LiveBytes.
		pages bool
		// maxGrowth is the most InUse may grow by, in units of N.
		maxGrowth float64
	}{
		{engine: "bbolt", pages: true, maxGrowth: 2},
		{engine: "pebble"},
		{engine: "badger"},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			i := slices.IndexFunc(testEngines(t), func(e engine.Engine) bool { return e.Name == tc.engine })
			if i < 0 {
				t.Skipf("%s is not tested (STRATA_MVCC_ENGINES)", tc.engine)
			}
			e := testEngines(t)[i]
			dir := t.TempDir()
			be := openBackendNoCleanup(t, e, dir)
			s, err := Open(be, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close(); be.Close() }()
			stats := func(what string) engine.Stats {
				t.Helper()
				st, err := s.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if live, scan := s.LiveBytes(), scanLiveBytes(t, be); live != scan {
					t.Fatalf("%s: LiveBytes %d, the engine holds %d", what, live, scan)
				}
				if st.InUseUnknown || st.InUse <= 0 || st.InUse > st.Size {
					t.Fatalf("%s: %+v, want 0 < InUse <= Size", what, st)
				}
				if !tc.pages && st.InUse != s.LiveBytes() {
					t.Fatalf("%s: InUse %d, LiveBytes %d", what, st.InUse, s.LiveBytes())
				}
				t.Logf("%s: size %d, in use %d, live bytes %d", what, st.Size, st.InUse, s.LiveBytes())
				return st
			}
			mustPut(t, s, "first", "x") // writes the format marker
			before := stats("before")

			rng := rand.New(rand.NewPCG(1, 2))
			val := make([]byte, valSize)
			key := func(i int) []byte { return fmt.Appendf(nil, "key/%012d", i) }
			var w *WriteBatch
			commit := func() {
				t.Helper()
				if err := w.Commit(s.AppliedIndex() + 1); err != nil {
					t.Fatal(err)
				}
				w = nil
			}
			for i := range keys {
				if w == nil {
					if w, err = s.NewWriteBatch(); err != nil {
						t.Fatal(err)
					}
				}
				for j := range val {
					val[j] = byte(rng.Uint32())
				}
				if _, err := w.Put(&pb.PutRequest{Key: key(i), Value: bytes.Clone(val)}); err != nil {
					t.Fatal(err)
				}
				if i%64 == 63 {
					commit()
				}
			}
			full := stats("after writing")
			grew := full.InUse - before.InUse
			maxGrowth := int64(n + perRec*keys)
			if tc.pages {
				maxGrowth = int64(tc.maxGrowth * n)
			}
			if grew < n || grew > maxGrowth {
				t.Errorf("%d bytes written: in use grew by %d, want %d to %d", n, grew, n, maxGrowth)
			}

			for i := range keys {
				if i%10 == 0 {
					continue
				}
				if w == nil {
					if w, err = s.NewWriteBatch(); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: key(i)}); err != nil {
					t.Fatal(err)
				}
				if i%64 == 63 {
					commit()
				}
			}
			if w != nil {
				commit()
			}
			if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev(), Physical: true}); err != nil {
				t.Fatal(err)
			}
			compacted := stats("after deleting 90% and compacting")
			left := int64(kept*(keySize+valSize)) + before.InUse
			maxLeft := left + perRec*kept
			if tc.pages {
				maxLeft = full.InUse / 4
			}
			if compacted.InUse < left || compacted.InUse > maxLeft {
				t.Errorf("%d bytes left: in use %d, want %d to %d", left, compacted.InUse, left, maxLeft)
			}
			if !tc.pages && compacted.Size < n {
				// The engine's own compaction has not run: the deleted
				// data is still on disk, which is what a defrag reclaims.
				t.Errorf("size %d after the deletes, less than the %d bytes deleted: nothing left to reclaim", compacted.Size, n)
			}
			live := s.LiveBytes()

			// Reopened, and restored from a backup by the same engine.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(be, testOptions()); err != nil {
				t.Fatal(err)
			}
			reopened := stats("reopened")
			if s.LiveBytes() != live || !tc.pages && reopened.InUse != compacted.InUse {
				t.Errorf("reopened: in use %d, live bytes %d; before %d, %d", reopened.InUse, s.LiveBytes(), compacted.InUse, live)
			}
			var backup, dump bytes.Buffer
			if err := be.Backup(&backup); err != nil {
				t.Fatal(err)
			}
			if err := engine.Dump(&dump, be); err != nil {
				t.Fatal(err)
			}
			restored := filepath.Join(t.TempDir(), "restored")
			if err := e.Restore(restored, &backup); err != nil {
				t.Fatal(err)
			}
			checkLive := func(what string, e engine.Engine, dir string) {
				t.Helper()
				be := openBackendNoCleanup(t, e, dir)
				defer be.Close()
				s, err := Open(be, testOptions())
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				st, err := s.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if s.LiveBytes() != live || e.Name != "bbolt" && st.InUse != live {
					t.Errorf("%s: live bytes %d, in use %d; want %d", what, s.LiveBytes(), st.InUse, live)
				}
			}
			checkLive("restored backup", e, restored)
			// A dump loaded into each engine (a snapshot sent to a member
			// of another engine): the same records, the same live bytes.
			for _, other := range testEngines(t) {
				dir := filepath.Join(t.TempDir(), other.Name)
				be := openBackendNoCleanup(t, other, dir)
				_, err := engine.Load(be, bytes.NewReader(dump.Bytes()))
				if cerr := be.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
				checkLive("dump loaded into "+other.Name, other, dir)
			}
		})
	}
}

// TestLiveBytesExact checks, on every engine, that LiveBytes equals the
// bytes of every key and value in the engine after each kind of write:
// keyspace, auxiliary, lease and meta records, a compaction and a reopen.
func TestLiveBytesExact(t *testing.T) {
	must := func(t *testing.T) func(any, error) {
		return func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name string
		f    func(t *testing.T, w *WriteBatch)
	}{
		{"put", func(t *testing.T, w *WriteBatch) {
			must(t)(w.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("1")}))
			must(t)(w.Put(&pb.PutRequest{Key: []byte("b"), Value: []byte("22")}))
		}},
		{"aux set", func(t *testing.T, w *WriteBatch) { w.SetAux([]byte("member/1"), []byte("abc")) }},
		{"aux set longer", func(t *testing.T, w *WriteBatch) { w.SetAux([]byte("member/1"), []byte("abcdefgh")) }},
		{"aux set twice in a batch", func(t *testing.T, w *WriteBatch) {
			w.SetAux([]byte("member/2"), []byte("x"))
			w.SetAux([]byte("member/2"), []byte("xyz"))
		}},
		{"aux delete", func(t *testing.T, w *WriteBatch) { w.DeleteAux([]byte("member/1")) }},
		{"aux delete missing", func(t *testing.T, w *WriteBatch) { w.DeleteAux([]byte("member/9")) }},
		{"lease grant", func(t *testing.T, w *WriteBatch) {
			must(t)(w.LeaseGrant(&pb.LeaseGrantRequest{ID: 7, TTL: 60}))
			must(t)(w.Put(&pb.PutRequest{Key: []byte("c"), Value: []byte("3"), Lease: 7}))
		}},
		{"lease checkpoint", func(t *testing.T, w *WriteBatch) {
			must(t)(w.LeaseCheckpoint(&pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 7, Remaining_TTL: 1 << 40}}}))
		}},
		{"lease granted and revoked in a batch", func(t *testing.T, w *WriteBatch) {
			must(t)(w.LeaseGrant(&pb.LeaseGrantRequest{ID: 8, TTL: 60}))
			must(t)(w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: 8}))
		}},
		{"lease revoked and granted again", func(t *testing.T, w *WriteBatch) {
			must(t)(w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: 7}))
			must(t)(w.LeaseGrant(&pb.LeaseGrantRequest{ID: 7, TTL: 3}))
		}},
		{"lease revoke", func(t *testing.T, w *WriteBatch) { must(t)(w.LeaseRevoke(&pb.LeaseRevokeRequest{ID: 7})) }},
		{"failed request", func(t *testing.T, w *WriteBatch) {
			if _, err := w.Put(&pb.PutRequest{Key: []byte("d"), Value: []byte("4"), Lease: 99}); err == nil {
				t.Fatal("put with a missing lease succeeded")
			}
		}},
		{"delete and compact", func(t *testing.T, w *WriteBatch) {
			must(t)(w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("a")}))
			must(t)(w.Put(&pb.PutRequest{Key: []byte("b"), Value: []byte("333")}))
			_, _, err := w.Compact(&pb.CompactionRequest{Revision: w.Rev()})
			must(t)(nil, err)
		}},
	}
	forEachEngine(t, func(t *testing.T, e engine.Engine) {
		dir := t.TempDir()
		be := openBackendNoCleanup(t, e, dir)
		defer func() { be.Close() }()
		s, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { s.Close() }()
		check := func(what string) {
			t.Helper()
			s.waitCompactions()
			if live, scan := s.LiveBytes(), scanLiveBytes(t, be); live != scan {
				t.Fatalf("after %s: LiveBytes %d, the engine holds %d", what, live, scan)
			}
		}
		check("open")
		for _, step := range steps {
			w, err := s.NewWriteBatch()
			if err != nil {
				t.Fatal(err)
			}
			step.f(t, w)
			if err := w.Commit(s.AppliedIndex() + 1); err != nil {
				t.Fatal(err)
			}
			check(step.name)
		}
		live := s.LiveBytes()
		s.Close()
		be.Close()
		be = openBackendNoCleanup(t, e, dir)
		if s, err = Open(be, testOptions()); err != nil {
			t.Fatal(err)
		}
		check("reopen")
		if s.LiveBytes() != live {
			t.Errorf("reopened: LiveBytes %d, before %d", s.LiveBytes(), live)
		}
		mustPut(t, s, "after", "reopen")
		check("a put after the reopen")
	})
}
