package wal

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// retention follows what a store's directory must hold under
// Options.MaxSegments (etcd's --max-wals) as a test drives it: every
// segment of the log, and the newest retired segments (wholly below the
// first index) that fit in max, or all of them if max is negative.
type retention struct {
	t        *testing.T
	dir      string
	max      int
	observed []string // every segment file seen, in index order
}

// check compares the directory with the rule and reads back every entry of
// the log: no segment raft may still read is ever removed.
func (r *retention) check(s *Store, first, last uint64) {
	r.t.Helper()
	files := segmentFiles(r.t, r.dir)
	for _, f := range files {
		if !slices.Contains(r.observed, f) {
			r.observed = append(r.observed, f)
		}
	}
	slices.Sort(r.observed)
	var live []string
	for _, seg := range s.segs {
		live = append(live, seg.path)
	}
	var retired []string // candidates: below the first segment of the log
	for _, f := range r.observed {
		if len(live) == 0 || f < live[0] {
			retired = append(retired, f)
		}
	}
	keep := len(retired)
	if r.max >= 0 {
		keep = max(0, min(keep, r.max-len(live)))
	}
	want := append(slices.Clone(retired[len(retired)-keep:]), live...)
	if !slices.Equal(files, want) {
		r.t.Fatalf("max %d: segments on disk\n  %v\nwant\n  %v", r.max, names(files), names(want))
	}
	if first == 0 {
		wantBounds(r.t, s, 0, 0)
		return
	}
	checkAll(r.t, s, first, last)
}

func names(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// TestRetention drives a store of small segments through what raft does to
// it — appends, compactions after snapshots (head deletions), a restart, the
// whole log deleted after a snapshot is installed and appends resuming past
// a gap, a restart with a lower limit — and checks after each step which
// segment files remain: with MaxSegments N (etcd's --max-wals), those of the
// log and the newest retired ones up to N files in all; with a negative
// MaxSegments (etcd's --max-wals=0), every file ever written.
func TestRetention(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  int // Options.MaxSegments
		max  int // what it means
	}{
		{name: "unlimited", opt: -1, max: -1},
		{name: "one", opt: 1, max: 1},
		{name: "three", opt: 3, max: 3},
		{name: "default", opt: 0, max: DefaultMaxSegments},
		{name: "many", opt: 1000, max: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := &Options{SegmentSize: 4096, MaxSegments: tc.opt}
			r := &retention{t: t, dir: dir, max: tc.max}
			s := mustOpen(t, dir, opts)
			defer func() { s.Close() }()

			// 12 segments of 10 entries of ~400 bytes (a batch at a
			// time: one segment is sealed per batch past 4 KiB).
			const per = 10
			for b := uint64(0); b < 12; b++ {
				mustStore(t, s, mkLogs(b*per+1, b*per+per, 1, 400))
			}
			if n := len(segmentFiles(t, dir)); n != 12 {
				t.Fatalf("%d segments, want 12", n)
			}
			r.check(s, 1, 120)

			// Compaction to the middle of the 8th segment: 7 retire.
			mustDelete(t, s, 1, 75)
			r.check(s, 76, 120)
			// Compaction within the same segment retires nothing more.
			mustDelete(t, s, 76, 78)
			r.check(s, 79, 120)

			// A restart keeps what the rule keeps, and reads the log.
			s.Close()
			s = mustOpen(t, dir, opts)
			r.check(s, 79, 120)

			// New segments push retired ones out.
			for b := uint64(12); b < 15; b++ {
				mustStore(t, s, mkLogs(b*per+1, b*per+per, 1, 400))
				r.check(s, 79, b*per+per)
			}
			mustDelete(t, s, 79, 140)
			r.check(s, 141, 150)

			// A snapshot installed: raft deletes the whole log, then
			// appends after the snapshot's index, past a gap.
			mustDelete(t, s, 141, 150)
			r.check(s, 0, 0)
			mustStore(t, s, mkLogs(201, 210, 1, 400))
			r.check(s, 201, 210)
			mustStore(t, s, mkLogs(211, 220, 1, 400))
			r.check(s, 201, 220)
			s.Close()
			s = mustOpen(t, dir, opts)
			r.check(s, 201, 220)

			// A lower limit at the next start purges at once.
			s.Close()
			r.max = 1
			s = mustOpen(t, dir, &Options{SegmentSize: 4096, MaxSegments: 1})
			r.check(s, 201, 220)
			if n := len(segmentFiles(t, dir)); n != 2 {
				t.Fatalf("%d segments with MaxSegments 1, want the log's 2", n)
			}
		})
	}
}

// TestRetentionCountsEveryRetired checks the unlimited case end to end: with
// a negative MaxSegments no segment file written is ever removed by
// compactions, however many.
func TestRetentionCountsEveryRetired(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, &Options{SegmentSize: 4096, MaxSegments: -1})
	defer s.Close()
	var idx uint64 = 1
	for round := range 20 {
		mustStore(t, s, mkLogs(idx, idx+9, 1, 500))
		idx += 10
		mustDelete(t, s, 1, idx-3) // raft's compaction keeps a few
		if got, want := len(segmentFiles(t, dir)), round+1; got != want {
			t.Fatalf("round %d: %d segments, want %d", round, got, want)
		}
	}
	if got := fmt.Sprint(bounds(t, s)); got != fmt.Sprint(idx-2, idx-1) {
		t.Fatalf("bounds %s", got)
	}
}
