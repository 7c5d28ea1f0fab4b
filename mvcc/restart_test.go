package mvcc

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
)

// storeSummary is what must survive a restart.
type storeSummary struct {
	rev, compactRev int64
	applied         uint64
	hash            KeyValueHash
	dump            []string
	keys            int
}

func summarize(t *testing.T, s *Store) storeSummary {
	t.Helper()
	s.waitCompactions()
	h, _, err := s.HashByRev(0)
	if err != nil {
		t.Fatal(err)
	}
	return storeSummary{s.Rev(), s.CompactRev(), s.AppliedIndex(), h, dumpAll(t, s), s.KeyCount()}
}

func (a storeSummary) equal(b storeSummary) bool {
	return a.rev == b.rev && a.compactRev == b.compactRev && a.applied == b.applied &&
		a.hash == b.hash && slices.Equal(a.dump, b.dump) && a.keys == b.keys
}

func (a storeSummary) String() string {
	return fmt.Sprintf("rev %d compact %d applied %d hash %+v keys %d, %d dump lines", a.rev, a.compactRev, a.applied, a.hash, a.keys, len(a.dump))
}

// writeHistory writes a history with updates, deletes, re-creations, txns
// and a compaction, committing with applied indexes up to 77.
func writeHistory(t *testing.T, s *Store, compact bool) {
	t.Helper()
	applied := uint64(10)
	batch := func(f func(w *WriteBatch)) {
		w, err := s.NewWriteBatch()
		if err != nil {
			t.Fatal(err)
		}
		f(w)
		applied += 3
		if err := w.Commit(applied); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		batch(func(w *WriteBatch) {
			for j := range 5 {
				mustBatchPut(t, w, fmt.Sprintf("k%02d", (i*3+j)%17), fmt.Sprintf("v%d.%d", i, j))
			}
			if i%4 == 3 {
				if _, err := w.DeleteRange(delReq(fmt.Sprintf("k%02d", i%17), fmt.Sprintf("k%02d", i%17+3))); err != nil {
					t.Fatal(err)
				}
			}
			if i%5 == 0 {
				if _, err := w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("t", "x"), opDel("k16", "")}}); err != nil {
					t.Fatal(err)
				}
			}
		})
		if compact && i == 12 {
			if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev() - 20, Physical: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	batch(func(w *WriteBatch) {
		if _, err := w.DeleteRange(delReq("k05", "")); err != nil {
			t.Fatal(err)
		}
	})
	// The last batch only moves the applied index.
	w, _ := s.NewWriteBatch()
	if err := w.Commit(77); err != nil {
		t.Fatal(err)
	}
}

func TestRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		dir := filepath.Join(t.TempDir(), "db")
		be := openBackendNoCleanup(t, e, dir)
		s, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		writeHistory(t, s, true)
		want := summarize(t, s)
		if want.applied != 77 || want.compactRev <= 0 {
			t.Fatalf("history: %v", want)
		}
		// Reopen the store on the same backend.
		s.Close()
		s, err = Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		if got := summarize(t, s); !got.equal(want) {
			t.Fatalf("after store reopen: %v, want %v", got, want)
		}
		// Reopen the engine from disk.
		s.Close()
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
		be = openBackendNoCleanup(t, e, dir)
		defer func() { be.Close() }()
		s, err = Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := summarize(t, s); !got.equal(want) {
			t.Fatalf("after engine reopen: %v, want %v", got, want)
		}
		// The store goes on where it was.
		if rev := mustPut(t, s, "after", "1"); rev != want.rev+1 {
			t.Fatalf("first put after restart at %d, want %d", rev, want.rev+1)
		}
		// A closed store refuses work.
		s.Close()
		if _, err := s.NewWriteBatch(); !errors.Is(err, ErrClosed) {
			t.Fatalf("write on a closed store: %v", err)
		}
		if _, err := s.View(); !errors.Is(err, ErrClosed) {
			t.Fatalf("read on a closed store: %v", err)
		}
	})
}

// TestInterruptedCompaction closes the store in the middle of a compaction
// and checks that the next Open finishes it, with the same result as an
// uninterrupted one.
func TestInterruptedCompaction(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		// The reference: the same history, compacted without interruption.
		ref, refBE := newTestStore(t, e, nil)
		writeHistory(t, ref, false)
		compactAt := ref.Rev() - 10
		if _, err := ref.Compact(&pb.CompactionRequest{Revision: compactAt, Physical: true}); err != nil {
			t.Fatal(err)
		}
		want := summarize(t, ref)
		wantRevs := countRevisions(t, refBE)

		dir := filepath.Join(t.TempDir(), "db")
		be := openBackendNoCleanup(t, e, dir)
		slow := &Options{CompactionBatchLimit: 3, CompactionSleepInterval: time.Hour}
		s, err := Open(be, slow)
		if err != nil {
			t.Fatal(err)
		}
		writeHistory(t, s, false)
		if _, err := s.Compact(&pb.CompactionRequest{Revision: compactAt}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // let it do its first batch
		s.Close()
		snap, _ := be.NewSnapshot()
		sched, _ := snap.Get(metaScheduledCompact)
		_, ferr := snap.Get(metaFinishedCompact)
		snap.Close()
		if v, _ := getUint64(sched); int64(v) != compactAt || !errors.Is(ferr, engine.ErrNotFound) {
			t.Fatalf("scheduled %d, finished err %v: the compaction was not interrupted", v, ferr)
		}
		be.Close()
		be = openBackendNoCleanup(t, e, dir)
		defer func() { be.Close() }()
		s, err = Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.CompactRev() != compactAt {
			t.Fatalf("compact revision %d after restart, want %d", s.CompactRev(), compactAt)
		}
		got := summarize(t, s) // waits for the resumed compaction
		if !got.equal(want) {
			t.Fatalf("after resumed compaction: %v, want %v", got, want)
		}
		if n := countRevisions(t, be); n != wantRevs {
			t.Fatalf("%d revisions stored after resumed compaction, want %d", n, wantRevs)
		}
	})
}

func TestCompaction(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		s, be := newTestStore(t, e, nil)
		mustPut(t, s, "a", "1") // 2
		mustPut(t, s, "a", "2") // 3
		mustPut(t, s, "a", "3") // 4
		mustPut(t, s, "b", "1") // 5
		s.DeleteRange(delReq("b", ""))
		mustPut(t, s, "c", "1") // 7
		s.DeleteRange(delReq("c", ""))
		mustPut(t, s, "c", "2") // 9
		if n := countRevisions(t, be); n != 8 {
			t.Fatalf("%d revisions, want 8", n)
		}
		for _, tc := range []struct {
			rev      int64
			wantRevs int
			wantKeys int
		}{
			{6, 5, 3}, // a@4, b's tombstone at exactly 6 stays, c@7,8,9
			{8, 3, 2}, // b gone; c's tombstone at 8 stays
			{9, 2, 2}, // a@4, c@9
		} {
			resp, err := s.Compact(&pb.CompactionRequest{Revision: tc.rev, Physical: true})
			if err != nil || resp.Header.Revision != 9 {
				t.Fatalf("compact %d: %v %v", tc.rev, resp, err)
			}
			if n := countRevisions(t, be); n != tc.wantRevs {
				t.Fatalf("compact %d: %d revisions left, want %d", tc.rev, n, tc.wantRevs)
			}
			if n := s.KeyCount(); n != tc.wantKeys {
				t.Fatalf("compact %d: %d keys in the index, want %d", tc.rev, n, tc.wantKeys)
			}
			if s.CompactRev() != tc.rev {
				t.Fatalf("compact revision %d, want %d", s.CompactRev(), tc.rev)
			}
		}
		if kv := get(t, s, "a"); string(kv.GetValue()) != "3" || kv.Version != 3 || kv.CreateRevision != 2 {
			t.Fatalf("a after compaction: %v", kv)
		}
		for _, tc := range []struct {
			rev  int64
			want error
		}{{9, ErrCompacted}, {8, ErrCompacted}, {0, ErrCompacted}, {10, ErrFutureRev}} {
			if _, err := s.Compact(&pb.CompactionRequest{Revision: tc.rev, Physical: true}); !errors.Is(err, tc.want) {
				t.Fatalf("compact %d: %v, want %v", tc.rev, err, tc.want)
			}
		}
		// Many keys: several compaction batches.
		w, _ := s.NewWriteBatch()
		for i := range 2500 {
			mustBatchPut(t, w, fmt.Sprintf("m%05d", i), "1")
		}
		w.Commit(0)
		for i := range 3 {
			w, _ := s.NewWriteBatch()
			for j := range 2500 {
				mustBatchPut(t, w, fmt.Sprintf("m%05d", j), fmt.Sprint(i))
			}
			w.Commit(0)
		}
		if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev(), Physical: true}); err != nil {
			t.Fatal(err)
		}
		if n := countRevisions(t, be); n != 2+2500 {
			t.Fatalf("%d revisions left, want %d", n, 2+2500)
		}
		if resp := mustRange(t, s, &pb.RangeRequest{Key: []byte("m"), RangeEnd: []byte("n"), CountOnly: true}); resp.Count != 2500 {
			t.Fatalf("count %d", resp.Count)
		}
	})
}

// TestCompactionBatches checks that a compaction goes in batches as etcd's
// --compaction-batch-limit and --compaction-sleep-interval say: a batch
// visits at most the limit of revisions (deleting those not kept) and the
// next one waits for the sleep interval. With a long interval the
// compaction stops after its first batch.
func TestCompactionBatches(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engineT) {
		const limit = 10
		s, be := newTestStore(t, e, &Options{CompactionBatchLimit: limit, CompactionSleepInterval: time.Hour})
		// "a" at revisions 2..51, "b" at 52..101: compacting at 101 keeps
		// a@51 and b@101 and deletes 98 revisions.
		for i := range 100 {
			mustPut(t, s, string(rune('a'+i/50)), fmt.Sprint(i))
		}
		if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev()}); err != nil {
			t.Fatal(err)
		}
		want := 100 - limit // the first batch: revisions 2..11, none kept
		deadline := time.Now().Add(10 * time.Second)
		for countRevisions(t, be) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d revisions stored, want %d after the first batch", countRevisions(t, be), want)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // no second batch within the interval
		if n := countRevisions(t, be); n != want {
			t.Fatalf("%d revisions stored 50ms after the first batch, want %d: the next batch did not wait", n, want)
		}
		// The index is compacted already; reads at the compacted revision
		// go on while the engine deletes.
		if kv := get(t, s, "a"); string(kv.GetValue()) != "49" {
			t.Fatalf("a = %v during the compaction", kv)
		}
	})
	forEachEngine(t, func(t *testing.T, e engineT) {
		// Without pauses, the whole compaction runs in batches to the end.
		s, be := newTestStore(t, e, &Options{CompactionBatchLimit: 7, CompactionSleepInterval: -1})
		for i := range 100 {
			mustPut(t, s, string(rune('a'+i/50)), fmt.Sprint(i))
		}
		if _, err := s.Compact(&pb.CompactionRequest{Revision: s.Rev(), Physical: true}); err != nil {
			t.Fatal(err)
		}
		if n := countRevisions(t, be); n != 2 {
			t.Fatalf("%d revisions stored after the compaction, want 2", n)
		}
	})
}
