package wal

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// smallSegments are the options of the stores buildSegments makes.
var smallSegments = &Options{SegmentSize: 4096}

// buildSegments creates a closed store with entries 1..n of varied sizes in
// several small segments and returns its directory.
func buildSegments(t *testing.T, n uint64) string {
	t.Helper()
	dir := t.TempDir()
	s := mustOpen(t, dir, smallSegments)
	r := rand.New(rand.NewPCG(1, 2))
	for i := uint64(1); i <= n; {
		j := min(n, i+uint64(r.IntN(5)))
		batch := make([]*raft.Log, 0, j-i+1)
		for k := i; k <= j; k++ {
			batch = append(batch, mkLog(k, 1, r.IntN(700)))
		}
		mustStore(t, s, batch)
		i = j + 1
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, dir); len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	return dir
}

// segmentLayout returns the base index, the record offsets and the end of
// the data of a segment file.
func segmentLayout(t *testing.T, path string) (base uint64, offsets []uint32, size int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base, ok := parseSegmentName(filepath.Base(path))
	if !ok {
		t.Fatalf("bad segment name %s", path)
	}
	res, err := scanSegment(path, base, data, false)
	if err != nil {
		t.Fatal(err)
	}
	return base, res.offsets, res.end
}

// checkAll verifies every entry of s against mkLog with term 1.
func checkAll(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	wantBounds(t, s, first, last)
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if err := checkLog(&l, i, 1); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
	}
	if err := s.GetLog(last+1, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(%d) after last: %v", last+1, err)
	}
}

func flipByte(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// TestTornTail cuts the last segment at random byte offsets (a crash in the
// middle of an append): Open must keep exactly the complete records before
// the cut, truncate the rest, and accept appends afterwards.
func TestTornTail(t *testing.T) {
	const n = 120
	src := buildSegments(t, n)
	segs := segmentFiles(t, src)
	lastSeg := segs[len(segs)-1]
	base, offsets, size := segmentLayout(t, lastSeg)
	prevLast := base - 1

	r := rand.New(rand.NewPCG(3, 4))
	cuts := []int{0, 1, segmentHeaderSize - 1, segmentHeaderSize, segmentHeaderSize + 1, size - 1}
	for _, o := range offsets {
		cuts = append(cuts, int(o), int(o)+1, int(o)+recordHeaderSize)
	}
	for range 20 {
		cuts = append(cuts, r.IntN(size))
	}
	for _, cut := range cuts {
		dir := copyDir(t, src)
		path := filepath.Join(dir, filepath.Base(lastSeg))
		if err := os.Truncate(path, int64(cut)); err != nil {
			t.Fatal(err)
		}
		// Complete records before the cut survive.
		want := prevLast
		end := segmentHeaderSize
		for i, o := range offsets {
			next := size
			if i+1 < len(offsets) {
				next = int(offsets[i+1])
			}
			if next <= cut {
				want, end = base+uint64(i), next
			}
			_ = o
		}
		s := mustOpen(t, dir, smallSegments)
		checkAll(t, s, 1, want)
		data, err := os.ReadFile(path)
		switch {
		case want == prevLast && !errors.Is(err, os.ErrNotExist):
			t.Fatalf("cut %d: segment with no complete entry not removed (%v)", cut, err)
		case want > prevLast && (err != nil || len(data) < end || !isZero(data[end:])):
			t.Fatalf("cut %d: torn bytes after %d not erased (%v)", cut, end, err)
		}
		mustStore(t, s, mkLogs(want+1, want+3, 1, 50))
		s.Close()
		s = mustOpen(t, dir, smallSegments)
		checkAll(t, s, 1, want+3)
		s.Close()
	}
}

// TestCorruptLastRecord flips bytes anywhere in the last record: Open drops
// that record and nothing else.
func TestCorruptLastRecord(t *testing.T) {
	const n = 120
	src := buildSegments(t, n)
	segs := segmentFiles(t, src)
	_, offsets, size := segmentLayout(t, segs[len(segs)-1])
	lastOff := int(offsets[len(offsets)-1])
	r := rand.New(rand.NewPCG(5, 6))
	positions := []int{lastOff, lastOff + 3, lastOff + 4, lastOff + 5, lastOff + 7, lastOff + 8, size - 1}
	for range 10 {
		positions = append(positions, lastOff+r.IntN(size-lastOff))
	}
	for _, pos := range positions {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			dir := copyDir(t, src)
			flipByte(t, filepath.Join(dir, filepath.Base(segs[len(segs)-1])), int64(pos), mask)
			s, err := Open(dir, smallSegments)
			if err != nil {
				t.Fatalf("flip %#x at %d (record at %d): %v", mask, pos, lastOff, err)
			}
			checkAll(t, s, 1, n-1)
			s.Close()
		}
	}
}

// TestCorruptBeforeTail flips a byte in a record of the tail segment that
// intact records follow: that is acknowledged data, so Open must fail.
func TestCorruptBeforeTail(t *testing.T) {
	src := buildSegments(t, 120)
	segs := segmentFiles(t, src)
	_, offsets, _ := segmentLayout(t, segs[len(segs)-1])
	if len(offsets) < 2 {
		t.Fatalf("tail segment has %d records", len(offsets))
	}
	for _, delta := range []int{0, 4, recordHeaderSize + 1} {
		dir := copyDir(t, src)
		flipByte(t, filepath.Join(dir, filepath.Base(segs[len(segs)-1])), int64(int(offsets[0])+delta), 0x10)
		if s, err := Open(dir, smallSegments); !errors.Is(err, ErrCorrupt) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("flip at record offset +%d: %v, want ErrCorrupt", delta, err)
		}
	}
}

// TestCorruptSealedSegment damages sealed segments in several ways: Open
// must refuse with ErrCorrupt rather than drop committed entries.
func TestCorruptSealedSegment(t *testing.T) {
	src := buildSegments(t, 120)
	segs := segmentFiles(t, src)
	r := rand.New(rand.NewPCG(7, 8))
	damage := map[string]func(path string, size int){
		"flip header": func(p string, _ int) { flipByte(t, p, int64(r.IntN(segmentHeaderSize)), 0x04) },
		"flip record": func(p string, size int) {
			flipByte(t, p, int64(segmentHeaderSize+r.IntN(size-segmentHeaderSize)), 1<<r.IntN(8))
		},
		"flip last byte": func(p string, size int) { flipByte(t, p, int64(size-1), 0x40) },
		"truncate":       func(p string, size int) { os.Truncate(p, int64(size-1-r.IntN(100))) },
		"truncate to header": func(p string, _ int) {
			os.Truncate(p, segmentHeaderSize)
		},
		"append junk": func(p string, _ int) {
			f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte{1, 2, 3})
			f.Close()
		},
		"remove": func(p string, _ int) { os.Remove(p) },
	}
	for name, fn := range damage {
		for i := range 3 {
			which := segs[i%(len(segs)-1)] // never the tail
			if name == "remove" && i == 0 {
				which = segs[1] // removing the first one just shortens the head
			}
			dir := copyDir(t, src)
			path := filepath.Join(dir, filepath.Base(which))
			_, _, size := segmentLayout(t, which)
			fn(path, size)
			if s, err := Open(dir, smallSegments); !errors.Is(err, ErrCorrupt) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("%s in %s: %v, want ErrCorrupt", name, filepath.Base(which), err)
			}
		}
	}
}

// TestAbandonedTailSegment covers a crash during rotation: the new segment
// has no header, a partial or zeroed header, or only a header.
func TestAbandonedTailSegment(t *testing.T) {
	const n = 120
	src := buildSegments(t, n)
	for name, content := range map[string][]byte{
		"empty":         {},
		"partial":       appendSegmentHeader(nil, n+1)[:10],
		"zero header":   make([]byte, segmentHeaderSize+100),
		"header only":   appendSegmentHeader(nil, n+1),
		"torn record":   append(appendSegmentHeader(nil, n+1), appendRecord(nil, mkLog(n+1, 1, 100), 0)[:50]...),
		"corrupt first": append(appendSegmentHeader(nil, n+1), make([]byte, 40)...),
	} {
		dir := copyDir(t, src)
		path := filepath.Join(dir, segmentName(n+1))
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, smallSegments)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkAll(t, s, 1, n)
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: abandoned segment not removed", name)
		}
		mustStore(t, s, mkLogs(n+1, n+2, 1, 10))
		s.Close()
	}
	// A full-size header with a bad checksum is damage, not an abandoned file.
	dir := copyDir(t, src)
	h := appendSegmentHeader(nil, n+1)
	h[20] ^= 1
	os.WriteFile(filepath.Join(dir, segmentName(n+1)), h, 0o644)
	if _, err := Open(dir, smallSegments); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad tail header: %v, want ErrCorrupt", err)
	}
}

// TestInterruptedDeletes reproduces the disk states a crash can leave in
// the middle of DeleteRange.
func TestInterruptedDeletes(t *testing.T) {
	const n = 120
	src := buildSegments(t, n)
	segs := segmentFiles(t, src)
	base2, _, _ := segmentLayout(t, segs[2])

	t.Run("head: meta written, segments not removed", func(t *testing.T) {
		dir := copyDir(t, src)
		first := base2 + 1
		if _, err := writeMeta(dir, first); err != nil {
			t.Fatal(err)
		}
		s := mustOpen(t, dir, smallSegments)
		defer s.Close()
		checkAll(t, s, first, n)
		if got := len(segmentFiles(t, dir)); got != len(segs)-2 {
			t.Fatalf("%d segments left, want %d", got, len(segs)-2)
		}
	})
	t.Run("all: meta written, segments not removed", func(t *testing.T) {
		dir := copyDir(t, src)
		if _, err := writeMeta(dir, n+1); err != nil {
			t.Fatal(err)
		}
		s := mustOpen(t, dir, smallSegments)
		wantBounds(t, s, 0, 0)
		// Every segment is retired; the newest MaxSegments stay.
		if got, want := len(segmentFiles(t, dir)), min(len(segs), DefaultMaxSegments); got != want {
			t.Fatalf("%d segments left, want %d", got, want)
		}
		// Raft may now append below the recorded first index: the
		// retired segments go, whatever MaxSegments says.
		mustStore(t, s, mkLogs(50, 60, 1, 10))
		if got := len(segmentFiles(t, dir)); got != 1 {
			t.Fatalf("%d segments after appending below the first index, want 1", got)
		}
		s.Close()
		s = mustOpen(t, dir, smallSegments)
		checkAll(t, s, 50, 60)
		s.Close()
	})
	t.Run("tail: last segments removed, containing one not truncated", func(t *testing.T) {
		dir := copyDir(t, src)
		for _, p := range segs[3:] {
			os.Remove(filepath.Join(dir, filepath.Base(p)))
		}
		base3, _, _ := segmentLayout(t, segs[3])
		s := mustOpen(t, dir, smallSegments)
		defer s.Close()
		checkAll(t, s, 1, base3-1)
	})
}

// TestDeleteAtSegmentBoundaries deletes at and around segment boundaries.
func TestDeleteAtSegmentBoundaries(t *testing.T) {
	const n = 120
	src := buildSegments(t, n)
	segs := segmentFiles(t, src)
	var bases []uint64
	for _, p := range segs {
		b, _, _ := segmentLayout(t, p)
		bases = append(bases, b)
	}
	for _, b := range bases[1:] {
		for _, at := range []uint64{b - 1, b, b + 1} {
			dir := copyDir(t, src)
			s := mustOpen(t, dir, smallSegments)
			mustDelete(t, s, at, n)
			checkAll(t, s, 1, at-1)
			mustStore(t, s, mkLogs(at, at+20, 1, 300))
			s.Close()
			s = mustOpen(t, dir, smallSegments)
			checkAll(t, s, 1, at+20)

			mustDelete(t, s, 1, at)
			checkAll(t, s, at+1, at+20)
			s.Close()
			s = mustOpen(t, dir, smallSegments)
			checkAll(t, s, at+1, at+20)
			s.Close()
		}
	}
}

// TestGetLogDetectsCorruption damages an entry after Open. The entry is
// older than the recent entries GetLog serves from memory, so it is read
// from the file.
func TestGetLogDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, nil)
	defer s.Close()
	mustStore(t, s, mkLogs(1, 10, 1, 100))
	mustStore(t, s, mkLogs(11, 10+recentEntries, 1, 100))
	seg := s.segs[0]
	start, _ := seg.span(5)
	flipByte(t, seg.path, start+recordHeaderSize+3, 0x01)
	var l raft.Log
	if err := s.GetLog(5, &l); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetLog of damaged entry: %v", err)
	}
	if err := s.GetLog(6, &l); err != nil {
		t.Fatal(err)
	}
}

func TestCommitIndex(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, smallSegments)
	wantCommit := func(want uint64) {
		t.Helper()
		if got, err := s.GetCommitIndex(); err != nil || got != want {
			t.Fatalf("GetCommitIndex = %d, %v; want %d", got, err, want)
		}
	}
	reopen := func() {
		s.Close()
		s = mustOpen(t, dir, smallSegments)
	}
	wantCommit(0)
	s.StageCommitIndex(5)
	mustStore(t, s, mkLogs(1, 10, 1, 10))
	wantCommit(5)
	reopen()
	wantCommit(5)
	s.StageCommitIndex(20) // above the batch: capped at its last index
	mustStore(t, s, mkLogs(11, 12, 1, 10))
	wantCommit(12)
	reopen()
	wantCommit(12)
	mustStore(t, s, mkLogs(13, 13, 1, 10)) // staged value already persisted
	reopen()
	wantCommit(12)
	mustDelete(t, s, 12, 13)
	wantCommit(11)
	reopen()
	wantCommit(5) // the entry that carried 12 is gone; an older value is safe
	s.Close()
}

// TestNoResurrection overwrites a deleted suffix with an entry of the same
// size, so the old next record sits exactly where the new next one would:
// the deletion must have erased it.
func TestNoResurrection(t *testing.T) {
	for _, opts := range []*Options{smallSegments, {SegmentSize: 1 << 20}, {SegmentSize: 1 << 20, NoPreallocate: true}} {
		dir := t.TempDir()
		s := mustOpen(t, dir, opts)
		mustStore(t, s, mkLogs(1, 100, 1, 300))
		mustDelete(t, s, 51, 100)
		mustStore(t, s, mkLogs(51, 51, 2, 300))
		s.Close()
		s = mustOpen(t, dir, opts)
		wantBounds(t, s, 1, 51)
		var l raft.Log
		if err := s.GetLog(51, &l); err != nil || l.Term != 2 {
			t.Fatalf("entry 51: term %d, %v", l.Term, err)
		}
		tail := s.segs[len(s.segs)-1]
		data, err := os.ReadFile(tail.path)
		if err != nil || !isZero(data[tail.size:]) {
			t.Fatalf("bytes after the last entry are not zeros (%v)", err)
		}
		s.Close()
	}
}

// TestSealedWithPreallocatedSpace seals a segment that was preallocated for
// a larger SegmentSize, so zeros follow its last entry.
func TestSealedWithPreallocatedSpace(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, &Options{SegmentSize: 1 << 20})
	mustStore(t, s, mkLogs(1, 20, 1, 300))
	s.Close()
	s = mustOpen(t, dir, smallSegments)
	mustStore(t, s, mkLogs(21, 40, 1, 300))
	s.Close()
	if n := len(segmentFiles(t, dir)); n != 2 {
		t.Fatalf("%d segments, want 2", n)
	}
	s = mustOpen(t, dir, smallSegments)
	defer s.Close()
	checkAll(t, s, 1, 40)
}
