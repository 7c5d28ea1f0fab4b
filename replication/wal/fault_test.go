package wal

import (
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestSyncFault checks the fault injection and the failure report: an
// injected fsync failure fails the store (ErrFailed, sticky, for the log
// and the stable store alike), OnFail hears of it once, what was
// acknowledged before stays readable, and a reopened store holds it.
func TestSyncFault(t *testing.T) {
	for _, first := range []string{"log", "stable"} {
		t.Run(first, func(t *testing.T) {
			dir := t.TempDir()
			var armed bool
			var reports []error
			opts := &Options{
				SyncFault: func() error {
					if armed {
						return syscall.EIO
					}
					return nil
				},
				OnFail: func(err error) { reports = append(reports, err) },
			}
			s := mustOpen(t, dir, opts)
			mustStore(t, s, mkLogs(1, 10, 1, 100))
			if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
				t.Fatal(err)
			}
			armed = true
			var err error
			if first == "log" {
				err = s.StoreLogs(mkLogs(11, 12, 1, 100))
			} else {
				err = s.SetUint64([]byte("CurrentTerm"), 2)
			}
			if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("%s write under a failing fsync: %v, want ErrFailed wrapping EIO", first, err)
			}
			armed = false
			if err := s.StoreLogs(mkLogs(11, 12, 1, 100)); first == "log" && !errors.Is(err, ErrFailed) {
				t.Errorf("append after the failure: %v, want the sticky ErrFailed", err)
			}
			if len(reports) != 1 || !errors.Is(reports[0], ErrFailed) {
				t.Errorf("OnFail heard %v, want one ErrFailed", reports)
			}
			var l raft.Log
			if err := s.GetLog(10, &l); err != nil {
				t.Errorf("read of an acknowledged entry after the failure: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir, nil)
			defer s.Close()
			if _, last := bounds(t, s); last < 10 {
				t.Errorf("reopened log ends at %d, want the 10 acknowledged entries", last)
			}
			if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v < 1 {
				t.Errorf("reopened term %d, %v; want the acknowledged 1", v, err)
			}
		})
	}
}

// TestNoSync checks Options.NoSync (--unsafe-no-fsync): appends and stable
// store writes skip their fsync, so a SyncFault that would fail every
// fsync is never reached, and what was written is read back, also after a
// reopen.
func TestNoSync(t *testing.T) {
	dir := t.TempDir()
	var syncs int
	opts := &Options{NoSync: true, SyncFault: func() error { syncs++; return syscall.EIO }}
	s := mustOpen(t, dir, opts)
	mustStore(t, s, mkLogs(1, 10, 1, 100))  // a new segment
	mustStore(t, s, mkLogs(11, 20, 1, 100)) // appended to it
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatalf("SetUint64 with NoSync: %v", err)
	}
	if syncs != 0 {
		t.Errorf("%d fsyncs attempted with NoSync, want 0", syncs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, nil)
	defer s.Close()
	if first, last := bounds(t, s); first != 1 || last != 20 {
		t.Errorf("reopened log [%d, %d], want [1, 20]", first, last)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 3 {
		t.Errorf("reopened term %d, %v; want 3", v, err)
	}

	// Without NoSync the same fault is reached at the first append.
	s2 := mustOpen(t, t.TempDir(), &Options{SyncFault: opts.SyncFault})
	defer s2.Close()
	if err := s2.StoreLogs(mkLogs(1, 1, 1, 10)); !errors.Is(err, syscall.EIO) {
		t.Errorf("append with fsync under a failing SyncFault: %v, want EIO", err)
	}
}

// TestDeferredSync checks StoreLogsNoSync and SyncLogs (the leader's
// deferred fsync, raft.DeferredSyncLogStore): an append returns without an
// fsync and is readable at once; SyncLogs syncs it once and reports its
// entries to OnSync; every later mutation syncs a batch left pending first,
// so at most one batch is ever not durable; Close syncs what is pending.
func TestDeferredSync(t *testing.T) {
	dir := t.TempDir()
	var syncs int
	var reported []int
	opts := &Options{
		SyncFault: func() error { syncs++; return nil },
		OnSync:    func(entries int, _ time.Duration) { reported = append(reported, entries) },
	}
	s := mustOpen(t, dir, opts)
	mustStore(t, s, mkLogs(1, 10, 1, 100)) // creates the segment
	syncs, reported = 0, nil
	noSync := func(from, to uint64) func() error {
		return func() error { return s.StoreLogsNoSync(mkLogs(from, to, 1, 100)) }
	}
	steps := []struct {
		name         string
		do           func() error
		last         uint64
		wantSyncs    int
		wantReported []int
	}{
		{"append without sync", noSync(11, 15), 15, 0, nil},
		{"sync it", s.SyncLogs, 15, 1, []int{5}},
		{"sync with nothing pending", s.SyncLogs, 15, 1, []int{5}},
		{"append without sync again", noSync(16, 18), 18, 1, []int{5}},
		{"the next append syncs the pending batch first", noSync(19, 19), 19, 2, []int{5, 3}},
		{"a durable append syncs the pending batch, then its own", func() error { return s.StoreLogs(mkLogs(20, 21, 1, 100)) }, 21, 4, []int{5, 3, 1, 2}},
		{"append without sync before a delete", noSync(22, 23), 23, 4, []int{5, 3, 1, 2}},
		{"a delete syncs the pending batch first", func() error { return s.DeleteRange(1, 5) }, 23, 5, []int{5, 3, 1, 2, 2}},
		{"append without sync before close", noSync(24, 25), 25, 5, []int{5, 3, 1, 2, 2}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var l raft.Log
		if err := s.GetLog(st.last, &l); err != nil || checkLog(&l, st.last, 1) != nil {
			t.Fatalf("%s: GetLog(%d) right after: %v %v", st.name, st.last, err, checkLog(&l, st.last, 1))
		}
		if syncs != st.wantSyncs || !slices.Equal(reported, st.wantReported) {
			t.Fatalf("%s: %d fsyncs, OnSync heard %v; want %d, %v", st.name, syncs, reported, st.wantSyncs, st.wantReported)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if syncs != 6 {
		t.Errorf("Close with a batch pending: %d fsyncs in all, want 6", syncs)
	}
	s = mustOpen(t, dir, nil)
	defer s.Close()
	wantBounds(t, s, 6, 25)
}

// TestDeferredSyncFault checks that a failing deferred sync fails the store
// as a failing StoreLogs does: SyncLogs returns ErrFailed wrapping the
// cause, every later mutation the sticky ErrFailed, OnFail hears of it
// once, and what was durable before is there after a reopen.
func TestDeferredSyncFault(t *testing.T) {
	dir := t.TempDir()
	var armed bool
	var reports []error
	s := mustOpen(t, dir, &Options{
		SyncFault: func() error {
			if armed {
				return syscall.EIO
			}
			return nil
		},
		OnFail: func(err error) { reports = append(reports, err) },
	})
	mustStore(t, s, mkLogs(1, 10, 1, 100))
	armed = true
	if err := s.StoreLogsNoSync(mkLogs(11, 12, 1, 100)); err != nil {
		t.Fatalf("append without sync: %v (it must not fsync)", err)
	}
	if err := s.SyncLogs(); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("SyncLogs under a failing fsync: %v, want ErrFailed wrapping EIO", err)
	}
	armed = false
	if err := s.StoreLogsNoSync(mkLogs(13, 13, 1, 100)); !errors.Is(err, ErrFailed) {
		t.Errorf("append after the failure: %v, want the sticky ErrFailed", err)
	}
	if err := s.SyncLogs(); !errors.Is(err, ErrFailed) {
		t.Errorf("SyncLogs after the failure: %v, want the sticky ErrFailed", err)
	}
	if len(reports) != 1 || !errors.Is(reports[0], ErrFailed) {
		t.Errorf("OnFail heard %v, want one ErrFailed", reports)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, nil)
	defer s.Close()
	if _, last := bounds(t, s); last < 10 {
		t.Errorf("reopened log ends at %d, want the 10 durable entries", last)
	}
}
