package wal

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/strata-kv/strata/internal/optionstest"
)

// A conformance step: store entries [from, to] in one batch (or one by one),
// delete [from, to], or close and reopen the store.
type step struct {
	op       string // "store", "storeEach", "delete", "reopen"
	from, to uint64
	term     uint64
}

func store(from, to, term uint64) step { return step{op: "store", from: from, to: to, term: term} }
func storeEach(from, to, term uint64) step {
	return step{op: "storeEach", from: from, to: to, term: term}
}
func del(from, to uint64) step { return step{op: "delete", from: from, to: to} }

var reopen = step{op: "reopen"}

var conformanceCases = []struct {
	name        string
	steps       []step
	first, last uint64 // expected bounds at the end
	// inmemDiffers, if set, says why InmemStore is not a valid reference
	// for this case; only our store runs it.
	inmemDiffers string
}{
	{"empty", nil, 0, 0, ""},
	{"store batch", []step{store(1, 10, 1)}, 1, 10, ""},
	{"store one by one", []step{storeEach(1, 5, 1), storeEach(6, 9, 2)}, 1, 9, ""},
	{"start above one", []step{store(100, 110, 3)}, 100, 110, ""},
	{"several batches", []step{store(1, 1, 1), store(2, 64, 1), store(65, 200, 2)}, 1, 200, ""},
	{"head delete", []step{store(1, 100, 1), del(1, 40)}, 41, 100, ""},
	{"head delete twice", []step{store(1, 100, 1), del(1, 40), del(41, 41), del(42, 90)}, 91, 100, ""},
	{"head delete then append", []step{store(1, 100, 1), del(1, 99), store(101, 120, 1)}, 100, 120, ""},
	{"head delete below first", []step{store(10, 50, 1), del(1, 20)}, 21, 50, ""},
	{"tail delete", []step{store(1, 100, 1), del(61, 100)}, 1, 60, ""},
	{"tail delete then overwrite", []step{store(1, 100, 1), del(61, 100), store(61, 80, 2)}, 1, 80, ""},
	{"tail delete past last", []step{store(1, 100, 1), del(90, 1000), store(90, 95, 2)}, 1, 95, ""},
	{"tail delete one", []step{store(1, 10, 1), del(10, 10), store(10, 12, 3)}, 1, 12, ""},
	{"tail delete all but first", []step{store(5, 50, 1), del(6, 50), store(6, 7, 2)}, 5, 7, ""},
	{"delete all", []step{store(1, 50, 1), del(1, 50)}, 0, 0, ""},
	{"delete all wide", []step{store(7, 50, 1), del(1, 10000)}, 0, 0, ""},
	{"delete all from zero", []step{store(7, 50, 1), del(0, 10000)}, 0, 0, "InmemStore computes min-1 and underflows"},
	{"delete all then continue", []step{store(1, 50, 1), del(1, 50), store(51, 60, 2)}, 51, 60, ""},
	{"delete all then jump ahead", []step{store(1, 50, 1), del(1, 50), store(1000, 1010, 2)}, 1000, 1010, ""},
	{"delete all then restart lower", []step{store(10, 50, 1), del(10, 50), store(10, 20, 2)}, 10, 20, ""},
	{"delete all then restart at one", []step{store(10, 50, 1), del(1, 50), store(1, 3, 2)}, 1, 3, ""},
	{"compact then conflict at first", []step{store(1, 50, 1), del(1, 30), del(31, 50), store(31, 40, 2)}, 31, 40, ""},
	{"empty range delete", []step{store(10, 20, 1), del(15, 14)}, 10, 20, ""},
	{"delete above last", []step{store(10, 20, 1), del(30, 40)}, 10, 20, "InmemStore sets last to min-1 even above its last index"},
	{"delete below first", []step{store(10, 20, 1), del(1, 5)}, 10, 20, "InmemStore sets first to max+1 even below its first index"},
	{"delete on empty", []step{del(1, 10)}, 0, 0, ""},
	{"head and tail", []step{store(1, 100, 1), del(1, 30), del(71, 100), store(71, 75, 2), del(1, 50)}, 51, 75, ""},
}

// conformanceStore is a LogStore under test and how to reopen it.
type conformanceStore struct {
	name   string
	open   func(t *testing.T) raft.LogStore
	reopen func(t *testing.T, s raft.LogStore) raft.LogStore
}

func conformanceStores(segmentSize int64) []conformanceStore {
	return []conformanceStore{
		{
			name: "inmem",
			open: func(*testing.T) raft.LogStore { return raft.NewInmemStore() },
			reopen: func(_ *testing.T, s raft.LogStore) raft.LogStore {
				return s
			},
		},
		{
			name: "ours",
			open: func(t *testing.T) raft.LogStore {
				return mustOpen(t, t.TempDir(), &Options{SegmentSize: segmentSize})
			},
			reopen: func(t *testing.T, s raft.LogStore) raft.LogStore {
				ws := s.(*Store)
				if err := ws.Close(); err != nil {
					t.Fatal(err)
				}
				return mustOpen(t, ws.dir, &Options{SegmentSize: segmentSize})
			},
		},
	}
}

// TestConformance runs each case against raft.InmemStore and against our
// store (reopened after every step, with small and default segments), and
// requires identical observations after every step.
func TestConformance(t *testing.T) {
	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) {
			var ref []string
			for _, segSize := range []int64{0, 2048} {
				for _, cs := range conformanceStores(segSize) {
					if cs.name == "inmem" && (ref != nil || tc.inmemDiffers != "") {
						continue
					}
					obs := runConformance(t, cs, tc.steps, tc.first, tc.last)
					if ref == nil {
						ref = obs
						continue
					}
					for i := range ref {
						if obs[i] != ref[i] {
							t.Fatalf("%s (segment size %d) differs from inmem after step %d:\n got %s\nwant %s",
								cs.name, segSize, i, obs[i], ref[i])
						}
					}
				}
			}
		})
	}
}

func runConformance(t *testing.T, cs conformanceStore, steps []step, first, last uint64) []string {
	s := cs.open(t)
	defer func() {
		if c, ok := s.(interface{ Close() error }); ok {
			c.Close()
		}
	}()
	obs := []string{observe(t, s)}
	for _, st := range steps {
		switch st.op {
		case "store":
			mustStore(t, s, mkLogs(st.from, st.to, st.term, int(st.from%5)*100))
		case "storeEach":
			for _, l := range mkLogs(st.from, st.to, st.term, 10) {
				if err := s.StoreLog(l); err != nil {
					t.Fatalf("%s: StoreLog(%d): %v", cs.name, l.Index, err)
				}
			}
		case "delete":
			mustDelete(t, s, st.from, st.to)
		}
		// Reopen after every step: persistence must not change anything.
		s = cs.reopen(t, s)
		obs = append(obs, observe(t, s))
	}
	if f, l := bounds(t, s); f != first || l != last {
		t.Fatalf("%s: bounds [%d, %d], want [%d, %d]", cs.name, f, l, first, last)
	}
	return obs
}

// observe describes everything visible in s: bounds and every entry
// around them.
func observe(t *testing.T, s raft.LogStore) string {
	t.Helper()
	first, last := bounds(t, s)
	var b strings.Builder
	fmt.Fprintf(&b, "[%d,%d]", first, last)
	lo, hi := uint64(0), last+3
	if first > 3 {
		lo = first - 3
	}
	for i := lo; i <= hi; i++ {
		var l raft.Log
		err := s.GetLog(i, &l)
		switch {
		case errors.Is(err, raft.ErrLogNotFound):
			if err != raft.ErrLogNotFound {
				t.Fatalf("GetLog(%d) wrapped ErrLogNotFound: %v", i, err)
			}
			if i >= first && i <= last && first != 0 {
				t.Fatalf("GetLog(%d) not found inside [%d, %d]", i, first, last)
			}
		case err != nil:
			t.Fatalf("GetLog(%d): %v", i, err)
		default:
			if i < first || i > last {
				t.Fatalf("GetLog(%d) found outside [%d, %d]", i, first, last)
			}
			if err := checkLog(&l, i, l.Term); err != nil {
				t.Fatalf("GetLog(%d): %v", i, err)
			}
			fmt.Fprintf(&b, " %d:t%d/%d", i, l.Term, len(l.Data))
		}
	}
	return b.String()
}

// TestStoreLogsContiguity checks the gap and overlap rules that InmemStore
// does not enforce.
func TestStoreLogsContiguity(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	defer s.Close()
	if err := s.StoreLogs(mkLogs(0, 2, 1, 1)); !errors.Is(err, ErrNonContiguous) {
		t.Fatalf("index 0: %v", err)
	}
	mustStore(t, s, mkLogs(5, 10, 1, 10))
	for _, bad := range [][]*raft.Log{
		mkLogs(12, 13, 1, 1), // gap
		mkLogs(10, 12, 1, 1), // overlap
		mkLogs(1, 3, 1, 1),   // before
		{mkLog(11, 1, 1), mkLog(13, 1, 1)},
		{mkLog(11, 1, 1), mkLog(11, 1, 1)},
	} {
		if err := s.StoreLogs(bad); !errors.Is(err, ErrNonContiguous) {
			t.Fatalf("StoreLogs starting %d: %v, want ErrNonContiguous", bad[0].Index, err)
		}
	}
	wantBounds(t, s, 5, 10)
	if err := s.StoreLogs(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(7, 8); !errors.Is(err, ErrUnsupportedDelete) {
		t.Fatalf("middle delete: %v", err)
	}
	if err := s.DeleteRange(6, 8); !errors.Is(err, ErrUnsupportedDelete) {
		t.Fatalf("middle delete: %v", err)
	}
	wantBounds(t, s, 5, 10)
	mustStore(t, s, mkLogs(11, 11, 1, 0))
	wantBounds(t, s, 5, 11)
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	mustStore(t, s, mkLogs(1, 3, 1, 10))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var l raft.Log
	for name, err := range map[string]error{
		"GetLog":      s.GetLog(1, &l),
		"StoreLogs":   s.StoreLogs(mkLogs(4, 4, 1, 1)),
		"DeleteRange": s.DeleteRange(1, 1),
		"Set":         s.Set([]byte("k"), []byte("v")),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if _, err := s.FirstIndex(); !errors.Is(err, ErrClosed) {
		t.Errorf("FirstIndex after Close: %v", err)
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, nil)
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	s.Close()
	mustOpen(t, dir, nil).Close()
}

func TestOptionsValidate(t *testing.T) {
	optionstest.Validate(t, ErrInvalidOptions, []optionstest.Case[Options]{
		{Name: "defaults", OK: true},
		{Name: "smallest segment", Opts: Options{SegmentSize: 1}, OK: true},
		{Name: "largest segment", Opts: Options{SegmentSize: MaxSegmentSize}, OK: true},
		{Name: "negative segment", Opts: Options{SegmentSize: -1}},
		{Name: "segment too large", Opts: Options{SegmentSize: MaxSegmentSize + 1}},
	})
	for _, size := range []int64{-1, MaxSegmentSize + 1} {
		if _, err := Open(t.TempDir(), &Options{SegmentSize: size}); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Open with SegmentSize %d: %v, want ErrInvalidOptions", size, err)
		}
	}
}
