package wal

import (
	"errors"
	"syscall"
	"testing"

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
