package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Op is one kind of operation a workload issues.
type Op int

// Operations. ReadModifyWrite reads a record and writes it back, as YCSB F.
const (
	OpRead Op = iota
	OpUpdate
	OpInsert
	OpScan
	OpReadModifyWrite
	OpDelete
	numOps
)

var opNames = [numOps]string{"read", "update", "insert", "scan", "rmw", "delete"}

func (o Op) String() string {
	if o >= 0 && o < numOps {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Distribution names how a workload picks the record an operation touches.
type Distribution string

// Request distributions, as YCSB's requestdistribution property.
const (
	DistUniform    Distribution = "uniform"
	DistZipfian    Distribution = "zipfian" // scrambled Zipf, constant 0.99
	DistLatest     Distribution = "latest"  // skewed towards recent inserts
	DistSequential Distribution = "sequential"
)

// Kind selects how a workload drives its target.
type Kind string

// Kinds of workload.
const (
	// KindMix issues a YCSB-style mix of Store operations.
	KindMix Kind = ""
	// KindK8s issues kube-apiserver's requests (see k8s.go). It needs an
	// EtcdStore.
	KindK8s Kind = "k8s"
	// KindWatch puts to watched keys and measures the events' delivery
	// (see watch.go). It needs an EtcdStore.
	KindWatch Kind = "watch"
)

// Workload describes what a run does. Proportions need not sum to one; they
// are normalised.
type Workload struct {
	Name        string
	Description string
	// Operation mix.
	Read, Update, Insert, Scan, ReadModifyWrite, Delete float64
	// Distribution picks records for reads, updates, scans and deletes.
	Distribution Distribution
	// MaxScanLength bounds scans; lengths are uniform in [1, MaxScanLength].
	MaxScanLength int
	// HashedKeys spreads record numbers over the keyspace by hashing, as
	// YCSB's insertorder=hashed; otherwise keys sort in record order.
	HashedKeys bool

	// Kind selects the driver; the fields above apply to KindMix.
	Kind Kind
	// WatchKeys is, for KindWatch, how many keys under the watched prefix
	// the writers put to; with 1 the watchers watch that one key.
	WatchKeys int
	// Rate is the workload's own Config.Rate, used when that is zero.
	Rate float64
	// Compact makes a KindMix run compact the store (physically, at its
	// current revision) while the mix goes on: once halfway through the
	// run, or every Config.CompactInterval. It needs an EtcdStore.
	Compact bool
	// Defrag makes a KindMix run defragment every member of the target
	// (or its engine) in turn, at the same times, after compacting it when
	// it keeps revisions (an EtcdStore): only compacted revisions give
	// space back. It needs a Defragger.
	Defrag bool
}

// Presets returns the built-in workloads, a fresh copy on every call. YCSB
// A–F follow upstream YCSB's workload files (not go-ycsb's, which use
// uniform requests and scans of 1): zipfian 0.99 requests, latest for D,
// scans of up to 100 for E, and a real read-modify-write for F.
func Presets() []Workload { return slices.Clone(presets) }

// presets is what Presets returns; nothing may change it.
var presets = []Workload{
	{Name: "ycsb-a", Description: "update heavy: 50% read, 50% update, zipfian",
		Read: 0.5, Update: 0.5, Distribution: DistZipfian, HashedKeys: true},
	{Name: "ycsb-b", Description: "read mostly: 95% read, 5% update, zipfian",
		Read: 0.95, Update: 0.05, Distribution: DistZipfian, HashedKeys: true},
	{Name: "ycsb-c", Description: "read only, zipfian",
		Read: 1, Distribution: DistZipfian, HashedKeys: true},
	{Name: "ycsb-d", Description: "read latest: 95% read, 5% insert, latest",
		Read: 0.95, Insert: 0.05, Distribution: DistLatest, HashedKeys: true},
	{Name: "ycsb-e", Description: "short ranges: 95% scan (1-100), 5% insert, zipfian",
		Scan: 0.95, Insert: 0.05, MaxScanLength: 100, Distribution: DistZipfian, HashedKeys: true},
	{Name: "ycsb-f", Description: "read-modify-write: 50% read, 50% rmw, zipfian",
		Read: 0.5, ReadModifyWrite: 0.5, Distribution: DistZipfian, HashedKeys: true},
	{Name: "seq-put", Description: "inserts in key order",
		Insert: 1, Distribution: DistSequential},
	{Name: "rand-put", Description: "updates of uniformly random records",
		Update: 1, Distribution: DistUniform, HashedKeys: true},
	{Name: "point-get", Description: "reads of uniformly random records",
		Read: 1, Distribution: DistUniform, HashedKeys: true},
	{Name: "range-scan", Description: "scans of 100 keys from uniformly random records",
		Scan: 1, MaxScanLength: 100, Distribution: DistUniform},
	{Name: "delete", Description: "deletes of records in order",
		Delete: 1, Distribution: DistSequential},
	{Name: "k8s", Description: "kube-apiserver's requests: CAS updates of leases and pods, event churn, " +
		"paginated lists at a revision, prefix watches with prev_kv, compaction every 5s (see --compact-interval)",
		Kind: KindK8s},
	{Name: "watch-fanout", Description: "--watchers watchers on one prefix; puts to 100 keys under it at 500/s " +
		"(or --rate); events delivered per second and put-to-event latency",
		Kind: KindWatch, WatchKeys: 100, Rate: 500},
	{Name: "watch-latency", Description: "--watchers watchers on one key, puts to it at 100/s (or --rate), " +
		"as etcd's benchmark watch-latency; put-to-event latency",
		Kind: KindWatch, WatchKeys: 1, Rate: 100},
	{Name: "compact", Description: "50% read, 50% update, uniform; compacts at the current revision halfway " +
		"(or every --compact-interval) and reports the pause and the space",
		Read: 0.5, Update: 0.5, Distribution: DistUniform, HashedKeys: true, Compact: true},
	{Name: "defrag", Description: "50% read, 30% update, 20% delete, uniform; compacts and defragments every member " +
		"halfway (or every --compact-interval) and reports the pauses and the space",
		Read: 0.5, Update: 0.3, Delete: 0.2, Distribution: DistUniform, HashedKeys: true, Defrag: true},
}

// Preset returns the built-in workload called name.
func Preset(name string) (Workload, error) {
	for _, w := range presets {
		if w.Name == name {
			return w, nil
		}
	}
	names := make([]string, len(presets))
	for i, w := range presets {
		names[i] = w.Name
	}
	return Workload{}, fmt.Errorf("bench: unknown workload %q (have %s)", name, strings.Join(names, ", "))
}

// NeedsEtcd reports whether the workload needs an EtcdStore (the mvcc,
// cluster and endpoints modes), not just a Store.
func (w Workload) NeedsEtcd() bool { return w.Kind != KindMix || w.Compact }

// LoadKey names the data the workload's load phase writes (see
// LoadWorkload): workloads with the same key can share one load. An empty
// key needs no load: the workload writes keys of its own.
func (w Workload) LoadKey() string {
	switch w.Kind {
	case KindK8s:
		return "k8s"
	case KindWatch:
		return ""
	}
	if w.HashedKeys {
		return "ycsb-hashed"
	}
	return "ycsb-ordered"
}

// Validate checks the workload.
func (w Workload) Validate() error {
	switch w.Kind {
	case KindMix:
	case KindK8s:
		return nil
	case KindWatch:
		if w.WatchKeys < 1 {
			return fmt.Errorf("bench: workload %s: WatchKeys must be at least 1", w.Name)
		}
		return nil
	default:
		return fmt.Errorf("bench: workload %s: unknown kind %q", w.Name, w.Kind)
	}
	total := 0.0
	for _, p := range w.proportions() {
		if p < 0 {
			return fmt.Errorf("bench: workload %s: negative proportion", w.Name)
		}
		total += p
	}
	if total == 0 {
		return fmt.Errorf("bench: workload %s: no operations", w.Name)
	}
	if w.Scan > 0 && w.MaxScanLength < 1 {
		return fmt.Errorf("bench: workload %s: scans need MaxScanLength >= 1", w.Name)
	}
	switch w.Distribution {
	case DistUniform, DistZipfian, DistLatest, DistSequential:
	default:
		return fmt.Errorf("bench: workload %s: unknown distribution %q", w.Name, w.Distribution)
	}
	return nil
}

func (w Workload) proportions() [numOps]float64 {
	return [numOps]float64{w.Read, w.Update, w.Insert, w.Scan, w.ReadModifyWrite, w.Delete}
}

// Keyspace turns record numbers into keys and values.
type Keyspace struct {
	// Prefix starts every key. The default is "user".
	Prefix string
	// ValueSize is the size of every value in bytes.
	ValueSize int
	// Hashed spreads keys by hashing record numbers (YCSB's hashed order).
	Hashed bool
}

// Key returns the key of record n: Prefix plus the decimal record number,
// hashed first when Hashed, zero-padded to 20 digits so byte order is
// numeric order.
func (k Keyspace) Key(dst []byte, n uint64) []byte {
	if k.Hashed {
		n = FNVHash64(n)
	}
	p := k.Prefix
	if p == "" {
		p = "user"
	}
	dst = append(dst[:0], p...)
	var digits [20]byte
	s := strconv.AppendUint(digits[:0], n, 10)
	for range 20 - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// Value fills dst with a value for record n that varies between calls, so
// engines that compress do not get an unrealistic advantage.
func (k Keyspace) Value(dst []byte, r *rand.Rand) []byte {
	if cap(dst) < k.ValueSize {
		dst = make([]byte, k.ValueSize)
	}
	dst = dst[:k.ValueSize]
	fillValue(dst, r)
	return dst
}

// fillValue fills dst with printable, half-random bytes: compressible
// about 2x, like typical JSON or protobuf payloads.
func fillValue(dst []byte, r *rand.Rand) {
	for i := 0; i < len(dst); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(dst); j++ {
			dst[i+j] = 'a' + byte(v>>(8*j))&0x0f
		}
	}
}

// chooser picks operations and records for one workload run; it is shared by
// every client of the run.
type chooser struct {
	w       Workload
	cum     [numOps]float64
	records uint64
	keys    Generator
	inserts *AckCounter
}

func newChooser(w Workload, records uint64, expectedInserts uint64) (*chooser, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	c := &chooser{w: w, records: records, inserts: NewAckCounter(records)}
	total := 0.0
	for i, p := range w.proportions() {
		total += p
		c.cum[i] = total
	}
	for i := range c.cum {
		c.cum[i] /= total
	}
	if records == 0 && w.Distribution != DistLatest && w.Distribution != DistSequential {
		return nil, fmt.Errorf("bench: workload %s needs loaded records", w.Name)
	}
	switch w.Distribution {
	case DistUniform:
		c.keys = Uniform{N: records}
	case DistZipfian:
		// YCSB sizes the Zipf over the records plus the expected inserts
		// (twice the insert proportion of the operations), then skips
		// numbers not inserted yet.
		c.keys = NewScrambledZipfian(records + expectedInserts)
	case DistLatest:
		c.keys = NewLatest(c.inserts.Acked, records+expectedInserts)
	case DistSequential:
		c.keys = &Sequential{N: max(records, 1)}
	}
	return c, nil
}

func (c *chooser) op(r *rand.Rand) Op {
	u := r.Float64()
	for i, cum := range c.cum {
		if u < cum {
			return Op(i)
		}
	}
	return numOps - 1
}

// record picks an existing record for a read, update, scan or delete.
func (c *chooser) record(r *rand.Rand) uint64 {
	limit := c.inserts.Acked()
	for range 100 {
		n := c.keys.Next(r)
		if n < limit || c.w.Distribution == DistSequential {
			return n
		}
	}
	return r.Uint64N(max(limit, 1))
}

func (c *chooser) scanLength(r *rand.Rand) int {
	return 1 + r.IntN(c.w.MaxScanLength)
}

// AckCounter issues record numbers for inserts and tracks which inserts have
// completed, so that readers only pick records that exist: YCSB's
// AcknowledgedCounterGenerator. Safe for concurrent use.
type AckCounter struct {
	Counter
	mu      sync.Mutex
	acked   uint64
	pending []uint64 // acknowledged above acked, sorted
}

// NewAckCounter returns a counter whose first issued number is start, with
// everything below start acknowledged.
func NewAckCounter(start uint64) *AckCounter {
	c := &AckCounter{acked: start}
	c.next.Store(start)
	return c
}

// Ack marks record n as inserted.
func (c *AckCounter) Ack(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n != c.acked {
		i := sort.Search(len(c.pending), func(i int) bool { return c.pending[i] >= n })
		c.pending = append(c.pending, 0)
		copy(c.pending[i+1:], c.pending[i:])
		c.pending[i] = n
		return
	}
	c.acked++
	for len(c.pending) > 0 && c.pending[0] == c.acked {
		c.pending = c.pending[1:]
		c.acked++
	}
}

// Acked returns the number of records below which every insert has
// completed.
func (c *AckCounter) Acked() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}
