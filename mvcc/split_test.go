package mvcc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
)

// splitKeys is more keys than one badger transaction can delete (52k
// changes at its default memtable).
const splitKeys = 60_000

// fillKeys puts n keys in batches of 10k, applied indexes 1, 2 ...
func fillKeys(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := 0; i < n; {
		w, err := s.NewWriteBatch()
		if err != nil {
			t.Fatal(err)
		}
		for end := min(i+10_000, n); i < end; i++ {
			if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "k%06d", i), Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(s.AppliedIndex() + 1); err != nil {
			t.Fatal(err)
		}
	}
}

func countKeys(t *testing.T, s *Store) int64 {
	t.Helper()
	r, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return r.Count
}

// deleteAll deletes every key in one request, in one batch.
func deleteAll(s *Store) error {
	w, err := s.NewWriteBatch()
	if err != nil {
		return err
	}
	if _, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}); err != nil {
		return err
	}
	return w.Commit(s.AppliedIndex() + 1)
}

// reopenStore opens the store in dir again, closed at the end of the test.
func reopenStore(t *testing.T, e engine.Engine, dir string) (*Store, engine.Backend) {
	t.Helper()
	be := openBackend(t, e, dir)
	s, err := Open(be, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, be
}

// TestSplitCommit deletes more keys in one request than badger takes in
// one transaction. Every engine applies it; badger in parts.
func TestSplitCommit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine.Engine) {
		dir := t.TempDir()
		be := openBackendNoCleanup(t, e, dir)
		s, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		fillKeys(t, s, splitKeys)
		rev := s.Rev()
		if err := deleteAll(s); err != nil {
			t.Fatalf("delete %d keys: %v", splitKeys, err)
		}
		if e.Name == "badger" && s.splitCommits.Load() < 2 {
			t.Errorf("badger: %d split commit batches, want the delete split", s.splitCommits.Load())
		}
		if got := countKeys(t, s); got != 0 {
			t.Errorf("%d keys left after deleting them all", got)
		}
		s.Close()
		be.Close()
		s, be = reopenStore(t, e, dir)
		if got, want := s.Rev(), rev+1; got != want {
			t.Errorf("revision after reopening %d, want %d", got, want)
		}
		if got := countKeys(t, s); got != 0 {
			t.Errorf("%d keys after reopening", got)
		}
		snap, err := be.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		if _, err := snap.Get(metaSplitCommit); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("split record after a finished split commit: %v", err)
		}
	})
}

// errInjected is the failure faultyBackend injects.
var errInjected = errors.New("injected commit failure")

// faultyBackend is a fake for fault injection: a real engine whose commits
// fail, without writing, once okLeft successful ones have been made.
type faultyBackend struct {
	engine.Backend
	armed  bool
	okLeft int
}

func (f *faultyBackend) Commit(b *engine.Batch, o *engine.WriteOptions) error {
	if f.armed && f.okLeft == 0 {
		return errInjected
	}
	err := f.Backend.Commit(b, o)
	if err == nil && f.armed {
		f.okLeft--
	}
	return err
}

// TestUndoSplitCommit stops a split commit after its first part, as a
// crash would, and reopens the store: the part is removed, the store is
// as before the batch, and the batch applies again.
// Only badger refuses a batch this size: the test runs on it.
func TestUndoSplitCommit(t *testing.T) {
	e, err := backends.Registry().Lookup("badger")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	be := openBackendNoCleanup(t, e, dir)
	fb := &faultyBackend{Backend: be}
	s, err := Open(fb, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	fillKeys(t, s, splitKeys)
	rev, applied := s.Rev(), s.AppliedIndex()
	fb.armed, fb.okLeft = true, 1
	if err := deleteAll(s); !errors.Is(err, errInjected) {
		t.Fatalf("delete with a failure after the first part: %v", err)
	}
	if s.splitCommits.Load() != 1 {
		t.Fatalf("%d parts written, want 1", s.splitCommits.Load())
	}
	s.Close()
	// An export (to etcd's format) leaves the unfinished part out.
	records := 0
	m, err := Export(be, func(k, v []byte) error { records++; return nil }, func(k, v []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if records != splitKeys || m.MaxRecordRev != rev {
		t.Errorf("export: %d revisions up to %d, want %d up to %d", records, m.MaxRecordRev, splitKeys, rev)
	}
	be.Close()
	s, _ = reopenStore(t, e, dir)
	if s.Rev() != rev || s.AppliedIndex() != applied {
		t.Errorf("after reopening: revision %d, applied %d; want %d, %d", s.Rev(), s.AppliedIndex(), rev, applied)
	}
	if got := countKeys(t, s); got != splitKeys {
		t.Errorf("%d keys after reopening, want %d", got, splitKeys)
	}
	// The log applies the batch again.
	if err := deleteAll(s); err != nil {
		t.Fatal(err)
	}
	if got := countKeys(t, s); got != 0 {
		t.Errorf("%d keys left after deleting them all again", got)
	}
}
