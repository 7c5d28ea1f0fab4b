package wal

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// model is the reference for the randomized test: a gapless log.
type model struct {
	first uint64
	terms []uint64 // terms[i] is the term of entry first+i
	sizes []int    // sizes[i] is its payload size
}

func (m *model) last() uint64 {
	if len(m.terms) == 0 {
		return 0
	}
	return m.first + uint64(len(m.terms)) - 1
}

func (m *model) bounds() (uint64, uint64) {
	if len(m.terms) == 0 {
		return 0, 0
	}
	return m.first, m.last()
}

// modelSeeds are the fixed seeds of TestModel; WAL_MODEL_SEEDS=n runs n more.
func modelSeeds() []uint64 {
	seeds := []uint64{1, 2, 3, 4}
	if n, _ := strconv.Atoi(os.Getenv("WAL_MODEL_SEEDS")); n > 0 {
		for i := range n {
			seeds = append(seeds, uint64(1000+i))
		}
	}
	return seeds
}

// TestModel applies random appends, head and tail deletions, whole-log
// deletions and reopens to the store and to a model, checking bounds after
// every operation and the full contents regularly.
func TestModel(t *testing.T) {
	for _, seed := range modelSeeds() {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { testModel(t, seed, 300) })
	}
}

func testModel(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, 99))
	dir := t.TempDir()
	// Odd seeds run without preallocation: segments grow as written.
	opts := &Options{SegmentSize: int64(512 + r.IntN(8192)), NoPreallocate: seed%2 == 1}
	s := mustOpen(t, dir, opts)
	defer func() { s.Close() }()

	var m model
	term := uint64(1)
	next := uint64(1 + r.IntN(10)) // where an empty log starts
	for op := range ops {
		switch p := r.IntN(100); {
		case p < 55: // append
			start := m.last() + 1
			if len(m.terms) == 0 {
				start = next
			}
			n := 1 + r.IntN(16)
			batch := make([]*raft.Log, n)
			for i := range batch {
				size := r.IntN(300)
				if r.IntN(20) == 0 {
					size = r.IntN(5000)
				}
				batch[i] = mkLog(start+uint64(i), term, size)
			}
			mustStore(t, s, batch)
			if len(m.terms) == 0 {
				m.first = start
			}
			for _, l := range batch {
				m.terms = append(m.terms, term)
				m.sizes = append(m.sizes, len(l.Data))
			}
		case p < 65 && len(m.terms) > 1: // head deletion, leaving at least one entry
			max := m.first + uint64(r.IntN(len(m.terms)-1))
			min := m.first - uint64(r.IntN(int(m.first)))
			mustDelete(t, s, min, max)
			k := max + 1 - m.first
			m.terms, m.sizes = m.terms[k:], m.sizes[k:]
			m.first = max + 1
		case p < 77 && len(m.terms) > 1: // tail deletion, leaving at least one entry
			min := m.first + 1 + uint64(r.IntN(len(m.terms)-1))
			max := m.last() + uint64(r.IntN(3))
			mustDelete(t, s, min, max)
			k := min - m.first
			m.terms, m.sizes = m.terms[:k], m.sizes[:k]
			term++
		case p < 81: // delete everything
			f, l := m.bounds()
			if f == 0 {
				f, l = 1, 10
			}
			mustDelete(t, s, f-uint64(r.IntN(int(f))), l+uint64(r.IntN(3)))
			// Raft continues after a snapshot (ahead) or re-appends from the old first index.
			switch r.IntN(3) {
			case 0:
				next = l + 1 + uint64(r.IntN(100))
			case 1:
				next = f
			default:
				next = 1 + uint64(r.IntN(int(f)))
			}
			m.terms, m.sizes = nil, nil
			term++
		case p < 91: // reopen
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpen(t, dir, opts)
		default: // random reads
			for range 20 {
				checkModelEntry(t, s, &m, m.first-2+uint64(r.IntN(len(m.terms)+4)))
			}
		}
		f, l := m.bounds()
		wantBounds(t, s, f, l)
		if op%50 == 49 {
			checkModel(t, s, &m)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, opts)
	checkModel(t, s, &m)
}

func checkModel(t *testing.T, s *Store, m *model) {
	t.Helper()
	f, l := m.bounds()
	wantBounds(t, s, f, l)
	lo := uint64(0)
	if f > 2 {
		lo = f - 2
	}
	for i := lo; i <= l+2; i++ {
		checkModelEntry(t, s, m, i)
	}
}

func checkModelEntry(t *testing.T, s *Store, m *model, idx uint64) {
	t.Helper()
	var l raft.Log
	err := s.GetLog(idx, &l)
	if len(m.terms) == 0 || idx < m.first || idx > m.last() {
		if err != raft.ErrLogNotFound {
			t.Fatalf("GetLog(%d) outside [%d, %d]: %v", idx, m.first, m.last(), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("GetLog(%d): %v", idx, err)
	}
	i := idx - m.first
	if err := diffLog(&l, mkLog(idx, m.terms[i], m.sizes[i])); err != nil {
		t.Fatalf("GetLog(%d): %v", idx, err)
	}
}

// TestConcurrentReads runs readers against a writer that appends and deletes
// at both ends: every read must return an intact entry or ErrLogNotFound.
func TestConcurrentReads(t *testing.T) {
	s := mustOpen(t, t.TempDir(), &Options{SegmentSize: 4096})
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, found [4]int
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var l raft.Log
			for {
				select {
				case <-stop:
					return
				default:
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				if last == 0 {
					continue
				}
				idx := first + uint64(r.IntN(int(last-first+1)))
				reads[g]++
				err := s.GetLog(idx, &l)
				if err == raft.ErrLogNotFound {
					continue
				}
				if err != nil {
					t.Errorf("GetLog(%d): %v", idx, err)
					return
				}
				if err := checkLog(&l, idx, l.Term); err != nil {
					t.Errorf("GetLog(%d): %v", idx, err)
					return
				}
				found[g]++
			}
		}()
	}
	r := rand.New(rand.NewPCG(7, 7))
	term := uint64(1)
	for range 400 {
		first, last := bounds(t, s)
		switch p := r.IntN(10); {
		case p < 7 || last == 0:
			start := last + 1
			mustStore(t, s, mkLogs(start, start+uint64(r.IntN(10)), term, r.IntN(400)))
		case p < 8 && last > first:
			mustDelete(t, s, first, first+uint64(r.IntN(int(last-first))))
		case last > first:
			mustDelete(t, s, first+1+uint64(r.IntN(int(last-first))), last)
			term++
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("reads %v, found %v", reads, found)
	var l raft.Log
	if err := s.GetLog(0, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatal(err)
	}
}

// TestSoak runs the model test with random seeds for the duration in
// WAL_SOAK (e.g. WAL_SOAK=10m); it is skipped otherwise.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("WAL_SOAK"))
	if err != nil {
		t.Skip("set WAL_SOAK to a duration to run")
	}
	deadline := time.Now().Add(d)
	for seed := uint64(time.Now().UnixNano()); time.Now().Before(deadline); seed++ {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { testModel(t, seed, 3000) })
	}
}

// TestHotPathAllocs pins the allocation behaviour: StoreLogs allocates
// nothing per entry (amortized), GetLog once.
func TestHotPathAllocs(t *testing.T) {
	s := mustOpen(t, t.TempDir(), &Options{SegmentSize: 1 << 20})
	defer s.Close()
	batch := mkLogs(1, 16, 1, 100)
	next := uint64(1)
	store := func() {
		for _, l := range batch {
			l.Index = next
			next++
		}
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	store()
	if a := testing.AllocsPerRun(50, store); a > 0.5 {
		t.Errorf("StoreLogs of 16 entries: %.2f allocations", a)
	}
	var l raft.Log
	if a := testing.AllocsPerRun(50, func() { s.GetLog(5, &l) }); a != 1 {
		t.Errorf("GetLog: %.2f allocations", a)
	}
}
