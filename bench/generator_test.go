package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestZipfianMatchesTheory compares the empirical frequency of the most
// popular items with the Zipf law p(i) = 1/((i+1)^theta * zeta(n)).
func TestZipfianMatchesTheory(t *testing.T) {
	const n, draws = 1000, 400000
	z := NewZipfian(n, ZipfianConstant)
	r := rand.New(rand.NewPCG(1, 1))
	counts := make([]int, n)
	for range draws {
		v := z.Next(r)
		if v >= n {
			t.Fatalf("draw %d out of range", v)
		}
		counts[v]++
	}
	zn := zeta(0, n, ZipfianConstant, 0)
	// Gray's method is exact for the two hottest items and approximate
	// beyond them.
	for i, tol := range []float64{0.05, 0.05, 0.25, 0.25} {
		want := 1 / (math.Pow(float64(i+1), ZipfianConstant) * zn)
		got := float64(counts[i]) / draws
		if math.Abs(got-want)/want > tol {
			t.Errorf("item %d: frequency %.4f, Zipf law says %.4f", i, got, want)
		}
	}
	if counts[0] <= counts[1] || counts[1] <= counts[10] || counts[10] <= counts[500] {
		t.Errorf("not decreasing: %d %d %d %d", counts[0], counts[1], counts[10], counts[500])
	}
}

// TestScrambledZipfianSkew checks range and skew: scrambling moves the hot
// items around but keeps the distribution's shape (YCSB's top 1% of records
// gets roughly a third of requests at theta 0.99 over 10^10 items).
func TestScrambledZipfianSkew(t *testing.T) {
	const n, draws = 10000, 300000
	s := NewScrambledZipfian(n)
	r := rand.New(rand.NewPCG(2, 2))
	counts := make([]int, n)
	for range draws {
		v := s.Next(r)
		if v >= n {
			t.Fatalf("draw %d out of range", v)
		}
		counts[v]++
	}
	sorted := append([]int(nil), counts...)
	sort.Sort(sort.Reverse(sort.IntSlice(sorted)))
	top := 0
	for _, c := range sorted[:n/100] {
		top += c
	}
	share := float64(top) / draws
	if share < 0.2 || share > 0.6 {
		t.Errorf("top 1%% of records got %.2f of draws, want a strong skew (0.2-0.6)", share)
	}
	// The hottest records are not simply the first ones.
	if counts[0] == sorted[0] && counts[1] == sorted[1] {
		t.Errorf("scrambling left the hot items at the start")
	}
}

func TestLatestFavoursRecent(t *testing.T) {
	c := NewAckCounter(1000)
	l := NewLatest(c.Acked, 2000)
	r := rand.New(rand.NewPCG(3, 3))
	recent := 0
	for range 10000 {
		v := l.Next(r)
		if v >= 1000 {
			t.Fatalf("draw %d beyond the acknowledged records", v)
		}
		if v >= 990 {
			recent++
		}
	}
	// P(offset < 10) = zeta(10)/zeta(2000) ≈ 0.35 for theta 0.99.
	if recent < 3000 || recent > 4000 {
		t.Errorf("only %d/10000 draws among the 10 newest records", recent)
	}
	for range 10 {
		c.Ack(c.Add())
	}
	if got := c.Acked(); got != 1010 {
		t.Fatalf("Acked = %d, want 1010", got)
	}
}

func TestAckCounterOutOfOrder(t *testing.T) {
	c := NewAckCounter(5)
	a, b, d := c.Add(), c.Add(), c.Add()
	c.Ack(d)
	c.Ack(b)
	if got := c.Acked(); got != 5 {
		t.Fatalf("Acked = %d with record %d outstanding, want 5", got, a)
	}
	c.Ack(a)
	if got := c.Acked(); got != 8 {
		t.Fatalf("Acked = %d, want 8", got)
	}
}

func TestFNVHash64MatchesYCSB(t *testing.T) {
	// Reference values from an independent transcription of YCSB's
	// Utils.fnvhash64 (64-bit wrapping arithmetic, Math.abs at the end).
	for _, tc := range []struct{ in, want uint64 }{
		{0, 0x573807cdd7e5c63b},
		{1, 0x7632ced6e2d5105c},
		{12345, 0x18e14e7a1d1233b4},
	} {
		if got := FNVHash64(tc.in); got != tc.want {
			t.Errorf("FNVHash64(%d) = %#x, want %#x", tc.in, got, tc.want)
		}
	}
}

func TestMixProportions(t *testing.T) {
	for _, w := range Presets() {
		if w.Kind != KindMix {
			continue // their mixes are their own (see TestK8sMix)
		}
		t.Run(w.Name, func(t *testing.T) {
			ch, err := newChooser(w, 1000, 100)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(4, 4))
			var counts [numOps]int
			const draws = 100000
			for range draws {
				counts[ch.op(r)]++
			}
			p := w.proportions()
			total := sum(p)
			for op := range numOps {
				want := p[op] / total
				got := float64(counts[op]) / draws
				if math.Abs(got-want) > 0.01 {
					t.Errorf("%s: %.3f of operations, want %.3f", Op(op), got, want)
				}
			}
		})
	}
}

func TestKeyspace(t *testing.T) {
	ks := Keyspace{}
	if got := string(ks.Key(nil, 42)); got != "user00000000000000000042" {
		t.Errorf("Key(42) = %q", got)
	}
	if string(ks.Key(nil, 9)) >= string(ks.Key(nil, 10)) {
		t.Errorf("unhashed keys do not sort in record order")
	}
	ks.Hashed = true
	if got := string(ks.Key(nil, 0)); got != "user"+"06284781860667377211" {
		t.Errorf("hashed Key(0) = %q", got)
	}
}
