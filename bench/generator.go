package bench

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
)

// A Generator draws record numbers. Implementations follow YCSB's
// generators (site.ycsb.generator) so that workloads are comparable with
// published YCSB figures. A Generator is safe for concurrent use only where
// noted; the drivers give each client its own *rand.Rand.
type Generator interface {
	// Next returns a record number in [0, n) where n is the current record
	// count the generator was built over (or grown to).
	Next(r *rand.Rand) uint64
}

// Uniform draws uniformly from [0, N).
type Uniform struct{ N uint64 }

// Next implements Generator.
func (u Uniform) Next(r *rand.Rand) uint64 { return r.Uint64N(u.N) }

// ZipfianConstant is YCSB's default skew.
const ZipfianConstant = 0.99

// Zipfian draws from [0, items) with a Zipf distribution: item 0 is the most
// popular. It is YCSB's ZipfianGenerator (Gray et al., "Quickly Generating
// Billion-Record Synthetic Databases"). It is immutable and safe for
// concurrent use.
type Zipfian struct {
	items      uint64
	theta      float64
	zeta2theta float64
	alpha      float64
	zetan      float64
	eta        float64
}

// NewZipfian returns a Zipfian generator over [0, items) with constant theta.
func NewZipfian(items uint64, theta float64) *Zipfian {
	return newZipfianZetan(items, theta, zeta(0, items, theta, 0))
}

func newZipfianZetan(items uint64, theta, zetan float64) *Zipfian {
	z := &Zipfian{items: items, theta: theta, zetan: zetan}
	z.zeta2theta = zeta(0, 2, theta, 0)
	z.alpha = 1 / (1 - theta)
	z.eta = (1 - math.Pow(2/float64(items), 1-theta)) / (1 - z.zeta2theta/z.zetan)
	return z
}

// zeta returns initial + sum_{i=st}^{n-1} 1/(i+1)^theta.
func zeta(st, n uint64, theta, initial float64) float64 {
	sum := initial
	for i := st; i < n; i++ {
		sum += 1 / math.Pow(float64(i+1), theta)
	}
	return sum
}

// Next implements Generator.
func (z *Zipfian) Next(r *rand.Rand) uint64 {
	u := r.Float64()
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < 1+math.Pow(0.5, z.theta) {
		return 1
	}
	v := uint64(float64(z.items) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if v >= z.items {
		v = z.items - 1
	}
	return v
}

// scrambledItems and scrambledZetan are YCSB's ScrambledZipfianGenerator
// constants: a Zipf over 10^10 items with theta 0.99, whose zeta is
// precomputed because summing 10^10 terms takes minutes.
const (
	scrambledItems = 10_000_000_000
	scrambledZetan = 26.46902820178302
)

// ScrambledZipfian spreads a Zipf distribution over [0, N) by hashing, so the
// popular items are scattered across the keyspace instead of clustered at its
// start. It is YCSB's ScrambledZipfianGenerator, the "zipfian" request
// distribution of the core workloads. Safe for concurrent use.
type ScrambledZipfian struct {
	n   uint64
	gen *Zipfian
}

// NewScrambledZipfian returns a scrambled Zipfian generator over [0, n).
func NewScrambledZipfian(n uint64) *ScrambledZipfian {
	return &ScrambledZipfian{n: n, gen: newZipfianZetan(scrambledItems, ZipfianConstant, scrambledZetan)}
}

// Next implements Generator.
func (s *ScrambledZipfian) Next(r *rand.Rand) uint64 {
	return FNVHash64(s.gen.Next(r)) % s.n
}

// Latest favours the most recently inserted records: YCSB's
// SkewedLatestGenerator, the "latest" distribution of workload D. It asks
// last for the current record count on every draw, so it follows inserts made
// during the run. Safe for concurrent use if last is.
type Latest struct {
	last func() uint64
	zipf *Zipfian
}

// NewLatest returns a Latest generator over the first last() records. The
// Zipf table is built for maxItems (the largest count expected).
func NewLatest(last func() uint64, maxItems uint64) *Latest {
	return &Latest{last: last, zipf: NewZipfian(max(maxItems, 2), ZipfianConstant)}
}

// Next implements Generator.
func (l *Latest) Next(r *rand.Rand) uint64 {
	last := l.last()
	if last == 0 {
		return 0
	}
	off := l.zipf.Next(r) % last
	return last - 1 - off
}

// Counter issues record numbers for inserts. Safe for concurrent use.
type Counter struct{ next atomic.Uint64 }

// NewCounter returns a counter whose next value is start.
func NewCounter(start uint64) *Counter {
	c := &Counter{}
	c.next.Store(start)
	return c
}

// Add issues the next record number.
func (c *Counter) Add() uint64 { return c.next.Add(1) - 1 }

// Last returns how many record numbers exist: one more than the largest
// issued.
func (c *Counter) Last() uint64 { return c.next.Load() }

// Sequential draws 0, 1, 2, ... wrapping at N. Safe for concurrent use.
type Sequential struct {
	N    uint64
	next atomic.Uint64
}

// Next implements Generator.
func (s *Sequential) Next(*rand.Rand) uint64 { return (s.next.Add(1) - 1) % s.N }

// FNVHash64 is YCSB's Utils.fnvhash64: FNV-1 over the 8 little-endian bytes
// of v, made non-negative.
func FNVHash64(v uint64) uint64 {
	const (
		offset = 0xCBF29CE484222325
		prime  = 1099511628211
	)
	h := uint64(offset)
	for range 8 {
		h ^= v & 0xff
		h *= prime
		v >>= 8
	}
	// Java's Math.abs on the signed value.
	if int64(h) < 0 {
		h = uint64(-int64(h))
	}
	return h
}
