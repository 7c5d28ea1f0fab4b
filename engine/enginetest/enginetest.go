// Package enginetest is the conformance suite every engine.Backend runs
// unchanged. An engine's tests call Run with its registry entry:
//
//	func TestConformance(t *testing.T) { enginetest.Run(t, bbolt.Engine(), enginetest.Options{}) }
//	func BenchmarkEngine(b *testing.B) { enginetest.RunBenchmarks(b, bbolt.Engine()) }
//
// The suite checks ordering, bounds, reverse iteration, snapshot isolation,
// batch atomicity, durability across reopen and across kill -9 of a child
// process, defrag and backup/restore, largely with randomized operation
// sequences checked against an in-memory model. Seeds are fixed, so a failure
// reproduces; STRATA_ENGINETEST_SEED overrides the base seed.
package enginetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-kv/strata/engine"
)

// Options adjust the suite to an engine.
type Options struct {
	// NoDefragShrink disables the assertion that Stats().Size shrinks after
	// a mass delete and Defrag. The size is still measured and logged.
	NoDefragShrink bool
}

// Run runs the conformance suite against e.
func Run(t *testing.T, e engine.Engine, opts Options) {
	s := &suite{e: e, opts: opts}
	t.Run("Basic", s.testBasic)
	t.Run("Validation", s.testValidation)
	t.Run("Ordering", s.testOrdering)
	t.Run("Bounds", s.testBounds)
	t.Run("BatchSemantics", s.testBatchSemantics)
	t.Run("Randomized", s.testRandomized)
	t.Run("SnapshotIsolation", s.testSnapshotIsolation)
	t.Run("BatchAtomicity", s.testBatchAtomicity)
	t.Run("LargeBatch", s.testLargeBatch)
	t.Run("Reopen", s.testReopen)
	t.Run("CrashDurability", s.testCrashDurability)
	t.Run("CrashPrefixNoSync", s.testCrashPrefixNoSync)
	t.Run("Defrag", s.testDefrag)
	t.Run("BackupRestore", s.testBackupRestore)
	t.Run("BulkLoad", s.testBulkLoad)
	t.Run("Closed", s.testClosed)
}

type suite struct {
	e    engine.Engine
	opts Options
}

func baseSeed() uint64 {
	if s := os.Getenv("STRATA_ENGINETEST_SEED"); s != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n
		}
	}
	return 20261125
}

func (s *suite) open(t testing.TB, dir string) engine.Backend {
	t.Helper()
	b, err := s.e.Open(dir, engine.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", s.e.Name, err)
	}
	return b
}

// openTemp opens the engine in a fresh directory closed at the end of the test.
func (s *suite) openTemp(t testing.TB) (engine.Backend, string) {
	t.Helper()
	dir := t.TempDir()
	b := s.open(t, dir)
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, engine.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return b, dir
}

func mustCommit(t testing.TB, b engine.Backend, batch *engine.Batch, o *engine.WriteOptions) {
	t.Helper()
	if err := b.Commit(batch, o); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func mustSnapshot(t testing.TB, b engine.Backend) engine.Snapshot {
	t.Helper()
	snap, err := b.NewSnapshot()
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return snap
}

// checkModel compares a whole snapshot of b with m.
func checkModel(t testing.TB, b engine.Backend, m model) {
	t.Helper()
	snap := mustSnapshot(t, b)
	defer snap.Close()
	checkSnapshot(t, snap, m)
}

func checkSnapshot(t testing.TB, snap engine.Snapshot, m model) {
	t.Helper()
	got, err := readAll(snap)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if d := diffKVs(got, m.scan(nil)); d != "" {
		t.Fatalf("snapshot differs from model: %s", d)
	}
}

func (s *suite) testBasic(t *testing.T) {
	b, _ := s.openTemp(t)
	var batch engine.Batch
	batch.Set([]byte("a"), []byte("1"))
	batch.Set([]byte("b"), nil)
	batch.Set([]byte("c"), []byte("3"))
	mustCommit(t, b, &batch, engine.NoSync)

	snap := mustSnapshot(t, b)
	defer snap.Close()
	for _, tc := range []struct {
		key, want string
		err       error
	}{
		{"a", "1", nil},
		{"b", "", nil},
		{"c", "3", nil},
		{"d", "", engine.ErrNotFound},
		{"", "", engine.ErrNotFound},
		{"a\x00", "", engine.ErrNotFound},
	} {
		got, err := snap.Get([]byte(tc.key))
		if !errors.Is(err, tc.err) {
			t.Errorf("Get(%q) error = %v, want %v", tc.key, err, tc.err)
			continue
		}
		if err == nil && string(got) != tc.want {
			t.Errorf("Get(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	// Get returns a copy the caller owns.
	v, _ := snap.Get([]byte("a"))
	v[0] = 'x'
	if v2, _ := snap.Get([]byte("a")); string(v2) != "1" {
		t.Errorf("Get result aliases engine memory: after a write to the copy, Get = %q", v2)
	}

	batch.Reset()
	batch.Delete([]byte("a"))
	batch.Delete([]byte("zz")) // deleting a missing key is not an error
	mustCommit(t, b, &batch, engine.Sync)
	checkModel(t, b, model{"b": "", "c": "3"})
	checkSnapshot(t, snap, model{"a": "1", "b": "", "c": "3"})

	// An empty batch commits as a no-op, with or without sync.
	batch.Reset()
	mustCommit(t, b, &batch, engine.Sync)
	mustCommit(t, b, &batch, engine.NoSync)
	if err := b.Sync(); err != nil {
		t.Fatalf("sync: %v", err)
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if st.Size <= 0 || st.InUse <= 0 || st.InUse > st.Size {
		t.Errorf("stats = %+v, want 0 < InUse <= Size", st)
	}
}

func (s *suite) testValidation(t *testing.T) {
	b, _ := s.openTemp(t)
	big := bytes.Repeat([]byte("k"), engine.MaxKeySize)
	for _, tc := range []struct {
		name  string
		build func(*engine.Batch)
		err   error
	}{
		{"empty key", func(b *engine.Batch) { b.Set(nil, []byte("v")) }, engine.ErrEmptyKey},
		{"empty delete key", func(b *engine.Batch) { b.Delete([]byte{}) }, engine.ErrEmptyKey},
		{"empty range start", func(b *engine.Batch) { b.DeleteRange(nil, []byte("z")) }, engine.ErrEmptyKey},
		{"key too large", func(b *engine.Batch) { b.Set(append(big, 'x'), nil) }, engine.ErrKeyTooLarge},
		{"value too large", func(b *engine.Batch) { b.Set([]byte("k"), make([]byte, engine.MaxValueSize+1)) }, engine.ErrValueTooLarge},
		{"max key", func(b *engine.Batch) { b.Set(big, []byte("v")) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var batch engine.Batch
			batch.Set([]byte("valid"), []byte(tc.name))
			tc.build(&batch)
			err := b.Commit(&batch, engine.NoSync)
			if !errors.Is(err, tc.err) {
				t.Fatalf("commit error = %v, want %v", err, tc.err)
			}
			snap := mustSnapshot(t, b)
			defer snap.Close()
			v, gerr := snap.Get([]byte("valid"))
			if tc.err != nil && gerr == nil && string(v) == tc.name {
				t.Fatalf("a refused batch was partly applied")
			}
			if tc.err == nil && (gerr != nil || string(v) != tc.name) {
				t.Fatalf("Get(valid) = %q, %v after an accepted batch", v, gerr)
			}
		})
	}
}

// trickyKeys exercise byte ordering: 0x00 and 0xff bytes, prefixes of each
// other, and high bytes that sort after ASCII.
var trickyKeys = []string{
	"\x00", "\x00\x00", "\x00\xff", "\x01", "a", "a\x00", "a\x00\x00", "a\x01", "a\xff",
	"ab", "b", "\x7f", "\x80", "\xfe", "\xff", "\xff\x00", "\xff\xff", "\xff\xff\xff",
}

func (s *suite) testOrdering(t *testing.T) {
	b, _ := s.openTemp(t)
	m := model{}
	var batch engine.Batch
	// Insert in a scrambled order, with empty values on some keys.
	r := rand.New(rand.NewPCG(baseSeed(), 1))
	for _, i := range r.Perm(len(trickyKeys)) {
		k := trickyKeys[i]
		v := ""
		if i%3 != 0 {
			v = "v" + k
		}
		batch.Set([]byte(k), []byte(v))
		m[k] = v
	}
	mustCommit(t, b, &batch, engine.NoSync)
	snap := mustSnapshot(t, b)
	defer snap.Close()
	for _, reverse := range []bool{false, true} {
		o := &engine.IterOptions{Reverse: reverse}
		it, err := snap.NewIter(o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := drain(it, it.First())
		it.Close()
		if err != nil {
			t.Fatal(err)
		}
		if d := diffKVs(got, m.scan(o)); d != "" {
			t.Errorf("reverse=%v: %s", reverse, d)
		}
	}
	for _, k := range trickyKeys {
		v, err := snap.Get([]byte(k))
		if err != nil || string(v) != m[k] {
			t.Errorf("Get(%q) = %q, %v; want %q", k, v, err, m[k])
		}
	}
}

func (s *suite) testBounds(t *testing.T) {
	b, _ := s.openTemp(t)
	m := model{}
	var batch engine.Batch
	for _, k := range trickyKeys {
		batch.Set([]byte(k), []byte(k))
		m[k] = k
	}
	mustCommit(t, b, &batch, engine.NoSync)
	snap := mustSnapshot(t, b)
	defer snap.Close()

	bounds := []string{"", "\x00", "\x00\x00", "\x00\x01", "a", "a\x00", "a\x01", "aa", "b", "\x80", "\xff", "\xff\xff", "\xff\xff\xff\xff"}
	var n int
	for _, lo := range bounds {
		for _, hi := range bounds {
			for _, reverse := range []bool{false, true} {
				o := &engine.IterOptions{Reverse: reverse}
				if lo != "" {
					o.LowerBound = []byte(lo)
				}
				if hi != "" {
					o.UpperBound = []byte(hi)
				}
				it, err := snap.NewIter(o)
				if err != nil {
					t.Fatal(err)
				}
				got, err := drain(it, it.First())
				if err != nil {
					t.Fatal(err)
				}
				if d := diffKVs(got, m.scan(o)); d != "" {
					t.Errorf("First: lower=%q upper=%q reverse=%v: %s", lo, hi, reverse, d)
				}
				for _, sk := range bounds[1:] {
					got, err := drain(it, it.Seek([]byte(sk)))
					if err != nil {
						t.Fatal(err)
					}
					if d := diffKVs(got, m.seek(o, []byte(sk))); d != "" {
						t.Errorf("Seek(%q): lower=%q upper=%q reverse=%v: %s", sk, lo, hi, reverse, d)
					}
					n++
				}
				if err := it.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Logf("%d bounded seeks checked", n)
}

func (s *suite) testBatchSemantics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(*engine.Batch)
		want  model
	}{
		{"set then delete", func(b *engine.Batch) {
			b.Set([]byte("a"), []byte("1"))
			b.Delete([]byte("a"))
		}, model{"x": "x", "y": "y"}},
		{"delete then set", func(b *engine.Batch) {
			b.Delete([]byte("x"))
			b.Set([]byte("x"), []byte("2"))
		}, model{"x": "2", "y": "y"}},
		{"last set wins", func(b *engine.Batch) {
			b.Set([]byte("a"), []byte("1"))
			b.Set([]byte("a"), []byte("2"))
		}, model{"a": "2", "x": "x", "y": "y"}},
		{"range deletes earlier sets", func(b *engine.Batch) {
			b.Set([]byte("a"), []byte("1"))
			b.Set([]byte("b"), []byte("1"))
			b.DeleteRange([]byte("a"), []byte("x\x00"))
		}, model{"y": "y"}},
		{"set after range survives", func(b *engine.Batch) {
			b.DeleteRange([]byte("a"), []byte("z"))
			b.Set([]byte("x"), []byte("3"))
		}, model{"x": "3"}},
		{"range end is exclusive", func(b *engine.Batch) {
			b.DeleteRange([]byte("x"), []byte("y"))
		}, model{"y": "y"}},
		{"empty range is a no-op", func(b *engine.Batch) {
			b.DeleteRange([]byte("y"), []byte("x"))
			b.DeleteRange([]byte("x"), []byte("x"))
		}, model{"x": "x", "y": "y"}},
		{"range over 0xff keys", func(b *engine.Batch) {
			b.Set([]byte("\xff"), []byte("1"))
			b.Set([]byte("\xff\xff"), []byte("2"))
			b.DeleteRange([]byte("\xff"), []byte("\xff\xff"))
		}, model{"x": "x", "y": "y", "\xff\xff": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := s.openTemp(t)
			var batch engine.Batch
			batch.Set([]byte("x"), []byte("x"))
			batch.Set([]byte("y"), []byte("y"))
			mustCommit(t, b, &batch, engine.NoSync)
			batch.Reset()
			tc.build(&batch)
			mustCommit(t, b, &batch, engine.NoSync)
			checkModel(t, b, tc.want)
		})
	}
}

// randomKey draws from a small alphabet so keys collide, nest and sit on
// bounds often.
func randomKey(r *rand.Rand) []byte {
	alphabet := []byte{0x00, 0x01, 'a', 'b', 0x7f, 0xfe, 0xff}
	k := make([]byte, 1+r.IntN(4))
	for i := range k {
		k[i] = alphabet[r.IntN(len(alphabet))]
	}
	return k
}

func randomValue(r *rand.Rand) []byte {
	switch r.IntN(8) {
	case 0:
		return nil
	case 1:
		v := make([]byte, 1000+r.IntN(5000))
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		return v
	}
	return []byte(strconv.FormatUint(r.Uint64(), 36))
}

func randomBatch(r *rand.Rand, b *engine.Batch) {
	b.Reset()
	for n := 1 + r.IntN(20); n > 0; n-- {
		switch p := r.IntN(20); {
		case p < 13:
			b.Set(randomKey(r), randomValue(r))
		case p < 18:
			b.Delete(randomKey(r))
		default:
			lo, hi := randomKey(r), randomKey(r)
			if bytes.Compare(lo, hi) > 0 {
				lo, hi = hi, lo
			}
			b.DeleteRange(lo, hi)
		}
	}
}

func randomIterOptions(r *rand.Rand) *engine.IterOptions {
	if r.IntN(6) == 0 {
		return nil
	}
	o := &engine.IterOptions{Reverse: r.IntN(2) == 0}
	if r.IntN(3) != 0 {
		o.LowerBound = randomKey(r)
	}
	if r.IntN(3) != 0 {
		o.UpperBound = randomKey(r)
	}
	return o
}

// checkRandomReads runs random scans and seeks on snap against m.
func checkRandomReads(t testing.TB, r *rand.Rand, snap engine.Snapshot, m model, n int) {
	t.Helper()
	for range n {
		o := randomIterOptions(r)
		it, err := snap.NewIter(o)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []kv
		sk := randomKey(r)
		if r.IntN(2) == 0 {
			got, err = drain(it, it.First())
			want = m.scan(o)
		} else {
			got, err = drain(it, it.Seek(sk))
			want = m.seek(o, sk)
		}
		if err != nil {
			t.Fatal(err)
		}
		if cerr := it.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if d := diffKVs(got, want); d != "" {
			t.Fatalf("iter %+v seek %q: %s", o, sk, d)
		}
		k := randomKey(r)
		v, err := snap.Get(k)
		mv, ok := m[string(k)]
		switch {
		case ok && (err != nil || string(v) != mv):
			t.Fatalf("Get(%q) = %q, %v; want %q", k, v, err, mv)
		case !ok && !errors.Is(err, engine.ErrNotFound):
			t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", k, v, err)
		}
	}
}

// testRandomized applies random batches and checks every read against the
// model, including reads through old snapshots taken along the way.
func (s *suite) testRandomized(t *testing.T) {
	seeds := 4
	steps := 300
	if testing.Short() {
		seeds, steps = 2, 100
	}
	for i := range seeds {
		seed := baseSeed() + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 2))
			b, _ := s.openTemp(t)
			m := model{}
			type held struct {
				snap engine.Snapshot
				m    model
			}
			var snaps []held
			defer func() {
				for _, h := range snaps {
					h.snap.Close()
				}
			}()
			var batch engine.Batch
			for step := range steps {
				randomBatch(r, &batch)
				o := engine.NoSync
				if step%50 == 0 {
					o = engine.Sync
				}
				mustCommit(t, b, &batch, o)
				m.apply(&batch)
				if r.IntN(10) == 0 {
					snap := mustSnapshot(t, b)
					checkRandomReads(t, r, snap, m, 10)
					if len(snaps) < 8 {
						snaps = append(snaps, held{snap, m.clone()})
					} else {
						snap.Close()
					}
				}
				if len(snaps) > 0 && r.IntN(10) == 0 {
					h := snaps[r.IntN(len(snaps))]
					checkRandomReads(t, r, h.snap, h.m, 5)
				}
			}
			checkModel(t, b, m)
			for _, h := range snaps {
				checkSnapshot(t, h.snap, h.m)
			}
		})
	}
}

// testSnapshotIsolation reads old snapshots while a writer keeps committing.
func (s *suite) testSnapshotIsolation(t *testing.T) {
	b, _ := s.openTemp(t)
	r := rand.New(rand.NewPCG(baseSeed(), 3))
	m := model{}
	var batch engine.Batch
	for range 50 {
		randomBatch(r, &batch)
		mustCommit(t, b, &batch, engine.NoSync)
		m.apply(&batch)
	}
	snap := mustSnapshot(t, b)
	defer snap.Close()
	frozen := m.clone()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writerErr error
	wg.Go(func() {
		w := rand.New(rand.NewPCG(baseSeed(), 4))
		var batch engine.Batch
		for i := 0; ctx.Err() == nil && i < 2000; i++ {
			randomBatch(w, &batch)
			if err := b.Commit(&batch, engine.NoSync); err != nil {
				writerErr = err
				return
			}
		}
	})
	for range 20 {
		checkSnapshot(t, snap, frozen)
		checkRandomReads(t, r, snap, frozen, 10)
	}
	cancel()
	wg.Wait()
	if writerErr != nil {
		t.Fatalf("writer: %v", writerErr)
	}
	checkSnapshot(t, snap, frozen)
}

// testBatchAtomicity checks that concurrent readers never see a batch half
// applied.
func (s *suite) testBatchAtomicity(t *testing.T) {
	b, _ := s.openTemp(t)
	const keys = 32
	key := func(i int) []byte { return fmt.Appendf(nil, "atom/%02d", i) }
	var batch engine.Batch
	for i := range keys {
		batch.Set(key(i), []byte("0"))
	}
	mustCommit(t, b, &batch, engine.NoSync)

	var done atomic.Bool
	var wg sync.WaitGroup
	var writerErr error
	wg.Go(func() {
		defer done.Store(true)
		var batch engine.Batch
		for n := 1; n <= 500; n++ {
			batch.Reset()
			v := strconv.Itoa(n)
			// Half the keys are rewritten, half deleted by range and
			// rewritten, so every kind of operation is covered.
			batch.DeleteRange(key(keys/2), key(keys))
			for i := range keys {
				batch.Set(key(i), []byte(v))
			}
			if err := b.Commit(&batch, engine.NoSync); err != nil {
				writerErr = err
				return
			}
		}
	})
	reads := 0
	for !done.Load() || reads < 10 {
		snap := mustSnapshot(t, b)
		got, err := readAll(snap)
		snap.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != keys {
			t.Fatalf("read %d keys, want %d: a batch was seen half applied", len(got), keys)
		}
		for _, p := range got {
			if p.v != got[0].v {
				t.Fatalf("values %s and %s in one snapshot: a batch was seen half applied", got[0], p)
			}
		}
		reads++
	}
	wg.Wait()
	if writerErr != nil {
		t.Fatal(writerErr)
	}
	t.Logf("%d consistent snapshots read during 500 commits", reads)
}

// testLargeBatch commits one batch of 2 MiB (over etcd's request limit).
func (s *suite) testLargeBatch(t *testing.T) {
	b, _ := s.openTemp(t)
	m := model{}
	var batch engine.Batch
	v := bytes.Repeat([]byte("v"), 200)
	for i := range 10000 {
		k := fmt.Sprintf("large/%06d", i)
		batch.Set([]byte(k), v)
		m[k] = string(v)
	}
	mustCommit(t, b, &batch, engine.Sync)
	checkModel(t, b, m)
	batch.Reset()
	batch.DeleteRange([]byte("large/"), []byte("large0"))
	mustCommit(t, b, &batch, engine.Sync)
	checkModel(t, b, model{})
}

// testReopen checks that synced commits, and NoSync commits followed by
// Sync, survive Close and Open.
func (s *suite) testReopen(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(baseSeed(), 5))
	m := model{}
	b := s.open(t, dir)
	var batch engine.Batch
	for i := range 100 {
		randomBatch(r, &batch)
		o := engine.Sync
		if i%2 == 0 {
			o = engine.NoSync
		}
		mustCommit(t, b, &batch, o)
		m.apply(&batch)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b = s.open(t, dir)
		checkModel(t, b, m)
		randomBatch(r, &batch)
		mustCommit(t, b, &batch, engine.Sync)
		m.apply(&batch)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b = s.open(t, dir)
	defer b.Close()
	checkModel(t, b, m)
}

// testDefrag deletes most data, defrags while a writer and an old snapshot
// are active, and checks that space shrinks and nothing is lost.
func (s *suite) testDefrag(t *testing.T) {
	b, _ := s.openTemp(t)
	d, ok := b.(engine.Defragmenter)
	if !ok {
		t.Skipf("%s does not implement engine.Defragmenter", s.e.Name)
	}
	m := model{}
	var batch engine.Batch
	val := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB, poorly compressible below
	r := rand.New(rand.NewPCG(baseSeed(), 6))
	const n = 30000
	for i := range n {
		k := fmt.Sprintf("defrag/%06d", i)
		v := bytes.Clone(val)
		for j := range v {
			v[j] ^= byte(r.Uint32())
		}
		batch.Set([]byte(k), v)
		m[k] = string(v)
		if batch.Len() == 1000 {
			mustCommit(t, b, &batch, engine.NoSync)
			batch.Reset()
		}
	}
	mustCommit(t, b, &batch, engine.Sync)
	full, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// Delete all but every 50th key.
	batch.Reset()
	for i := range n {
		if i%50 != 0 {
			k := fmt.Sprintf("defrag/%06d", i)
			batch.Delete([]byte(k))
			delete(m, k)
		}
		if batch.Len() == 1000 {
			mustCommit(t, b, &batch, engine.NoSync)
			batch.Reset()
		}
	}
	mustCommit(t, b, &batch, engine.Sync)
	before, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	old := mustSnapshot(t, b)
	frozen := m.clone()

	// A writer commits during the defrag; all its commits must survive.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var written atomic.Int64
	var writerErr error
	wg.Go(func() {
		var batch engine.Batch
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			batch.Reset()
			batch.Set(fmt.Appendf(nil, "during/%06d", i), []byte("x"))
			if err := b.Commit(&batch, engine.NoSync); err != nil {
				writerErr = err
				return
			}
			written.Store(int64(i + 1))
		}
	})
	start := time.Now()
	err = d.Defrag(context.Background())
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("defrag: %v", err)
	}
	if writerErr != nil {
		t.Fatalf("writer during defrag: %v", writerErr)
	}
	after, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("size: full %d, after deletes %d (in use %d), after defrag %d (in use %d); defrag took %s with %d concurrent commits",
		full.Size, before.Size, before.InUse, after.Size, after.InUse, took, written.Load())
	if !s.opts.NoDefragShrink && after.Size >= before.Size/2 {
		t.Errorf("defrag did not reclaim space: size %d before, %d after (98%% of keys deleted)", before.Size, after.Size)
	}
	for i := range int(written.Load()) {
		m[fmt.Sprintf("during/%06d", i)] = "x"
	}
	checkModel(t, b, m)
	checkSnapshot(t, old, frozen)
	old.Close()
	// Defrag is repeatable and the data stays intact.
	if err := d.Defrag(context.Background()); err != nil {
		t.Fatalf("second defrag: %v", err)
	}
	checkModel(t, b, m)
	// A cancelled defrag fails cleanly and leaves the data intact.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Defrag(ctx); err == nil {
		t.Logf("defrag with a cancelled context returned nil (allowed when it finishes before looking)")
	}
	checkModel(t, b, m)
}

// testBackupRestore takes a backup while a writer runs, restores it into a
// new directory and checks it holds one consistent point in time.
func (s *suite) testBackupRestore(t *testing.T) {
	b, _ := s.openTemp(t)
	r := rand.New(rand.NewPCG(baseSeed(), 7))
	m := model{}
	var batch engine.Batch
	for range 200 {
		randomBatch(r, &batch)
		mustCommit(t, b, &batch, engine.NoSync)
		m.apply(&batch)
	}
	// From here on every batch sets "~seq" to i and adds "~k/i".
	counter := []byte("~seq")
	commitSeq := func(i int) error {
		batch := &engine.Batch{}
		batch.Set(counter, []byte(strconv.Itoa(i)))
		batch.Set(fmt.Appendf(nil, "~k/%06d", i), []byte("v"))
		return b.Commit(batch, engine.NoSync)
	}
	if err := commitSeq(0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var writerErr error
	wg.Go(func() {
		for i := 1; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := commitSeq(i); err != nil {
				writerErr = err
				return
			}
		}
	})
	path := filepath.Join(t.TempDir(), "backup")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Backup(f)
	close(stop)
	wg.Wait()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if writerErr != nil {
		t.Fatal(writerErr)
	}

	restoreDir := filepath.Join(t.TempDir(), "restored")
	rf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if err := s.e.Restore(restoreDir, rf); err != nil {
		t.Fatalf("restore: %v", err)
	}
	rb := s.open(t, restoreDir)
	defer rb.Close()
	snap := mustSnapshot(t, rb)
	defer snap.Close()
	seqv, err := snap.Get(counter)
	if err != nil {
		t.Fatalf("restored counter: %v", err)
	}
	seq, _ := strconv.Atoi(string(seqv))
	m[string(counter)] = string(seqv)
	for i := 0; i <= seq; i++ {
		m[fmt.Sprintf("~k/%06d", i)] = "v"
	}
	checkSnapshot(t, snap, m)
	t.Logf("backup taken at sequence %d while writing", seq)

	// Restoring into a non-empty directory, or from another stream, fails.
	rf.Seek(0, 0)
	if err := s.e.Restore(restoreDir, rf); !errors.Is(err, engine.ErrNotEmpty) {
		t.Errorf("restore into a non-empty dir: %v, want ErrNotEmpty", err)
	}
	var bogus bytes.Buffer
	engine.WriteBackupHeader(&bogus, "no-such-engine")
	bogus.WriteString("junk")
	if err := s.e.Restore(t.TempDir(), &bogus); !errors.Is(err, engine.ErrBackupMismatch) {
		t.Errorf("restore of another engine's stream: %v, want ErrBackupMismatch", err)
	}
}

func (s *suite) testClosed(t *testing.T) {
	b := s.open(t, t.TempDir())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var batch engine.Batch
	batch.Set([]byte("k"), []byte("v"))
	if err := b.Commit(&batch, engine.NoSync); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Commit after Close: %v, want ErrClosed", err)
	}
	if _, err := b.NewSnapshot(); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("NewSnapshot after Close: %v, want ErrClosed", err)
	}
}
