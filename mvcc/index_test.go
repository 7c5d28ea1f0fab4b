package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// walkCount counts the keys of [key, end) visible at atRev by walking the
// index, as the index did before it kept its live keys counted.
func walkCount(ti *treeIndex, key, end []byte, atRev int64) int {
	_, n := ti.countOrKeys(key, end, atRev, false)
	return n
}

// checkCounts compares the index's counts with walks over random ranges at
// every revision from compactRev to rev.
func checkCounts(t *testing.T, rng *rand.Rand, ti *treeIndex, keys [][]byte, compactRev, rev int64) {
	t.Helper()
	for i := 1; i < len(ti.changes); i++ {
		if ti.changes[i].rev.less(ti.changes[i-1].rev) {
			t.Fatalf("liveness changes out of order: %v after %v", ti.changes[i].rev, ti.changes[i-1].rev)
		}
	}
	for atRev := max(compactRev, 1); atRev <= rev; atRev++ {
		for range 3 {
			key := keys[rng.IntN(len(keys))]
			var end []byte
			switch rng.IntN(4) {
			case 0:
				end = []byte{} // every key >= key
			case 1:
				key, end = []byte{0}, []byte{} // every key
			default:
				end = keys[rng.IntN(len(keys))] // possibly below key: empty
			}
			want := walkCount(ti, key, end, atRev)
			if got := ti.count(key, end, atRev); got != want {
				t.Fatalf("count [%q, %q) at %d (floor %d, rev %d): %d, walk %d", key, end, atRev, ti.floor, rev, got, want)
			}
			limit := 1 + rng.IntN(5)
			ents, total := ti.rangeEntries(key, end, atRev, limit, true)
			if total != want || len(ents) > limit || (len(ents) < limit && len(ents) != want) {
				t.Fatalf("range [%q, %q) at %d limit %d: %d entries, total %d; walk %d", key, end, atRev, limit, len(ents), total, want)
			}
		}
	}
}

// TestIndexCount drives the index as write batches do (puts, tombstones, a
// delete and a put of one key in one revision, aborted requests rolled
// back, commits, compactions) and checks every count against a walk, at
// the newest revision and below it, across the point where old liveness
// changes are dropped.
func TestIndexCount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  int
		steps int
	}{
		{"few keys", 8, 3000},
		{"many keys", 200, 3000},
		{"past maxLiveChanges", 64, 3 * maxLiveChanges},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.keys), uint64(tc.steps)))
			keys := make([][]byte, tc.keys)
			for i := range keys {
				keys[i] = fmt.Appendf(nil, "k%04d", i)
			}
			ti := newTreeIndex()
			var rev, compactRev int64 // rev: the published revision
			type change struct {
				key []byte
				rev revision
			}
			for step := range tc.steps {
				// One batch of requests at rev+1, rev+2, ...
				batchRev := rev
				var pending []change
				for range 1 + rng.IntN(4) {
					mark := len(pending)
					r := revision{main: batchRev + 1}
					for range 1 + rng.IntN(3) {
						k := keys[rng.IntN(len(keys))]
						switch rng.IntN(3) {
						case 0:
							if ti.tombstone(k, r) {
								pending = append(pending, change{k, r})
								r.sub++
							}
						default:
							ti.put(k, r)
							pending = append(pending, change{k, r})
							r.sub++
						}
					}
					// Counts inside the batch, at its own revision.
					if rng.IntN(8) == 0 {
						checkCounts(t, rng, ti, keys, max(compactRev, batchRev), batchRev)
					}
					if rng.IntN(5) == 0 && len(pending) > mark {
						// The request fails: undone.
						from := revision{main: batchRev + 1}
						for i := len(pending) - 1; i >= mark; i-- {
							ti.rollback(pending[i].key, from)
						}
						pending = pending[:mark]
						continue
					}
					if len(pending) > mark {
						batchRev++
					}
				}
				if rng.IntN(10) == 0 && len(pending) > 0 {
					// The batch is aborted.
					from := revision{main: rev + 1}
					for i := len(pending) - 1; i >= 0; i-- {
						ti.rollback(pending[i].key, from)
					}
				} else {
					rev = batchRev
					ti.published.Store(rev)
				}
				if rng.IntN(50) == 0 && rev > compactRev {
					compactRev = rev - rng.Int64N(min(rev-compactRev, 20))
					ti.compact(compactRev)
				}
				if step%17 == 0 || step == tc.steps-1 {
					checkCounts(t, rng, ti, keys, max(compactRev, rev-30), rev)
				}
			}
			if tc.steps > maxLiveChanges && ti.floor == 0 {
				t.Errorf("floor still 0 after %d steps: the liveness changes were never dropped", tc.steps)
			}
			if len(ti.changes) > maxLiveChanges {
				t.Errorf("%d liveness changes kept, more than %d", len(ti.changes), maxLiveChanges)
			}
			// Every revision at or above floor is counted without a walk.
			if _, ok := ti.fastCount([]byte{0}, []byte{}, rev); !ok {
				t.Errorf("no fast count at the newest revision %d (floor %d)", rev, ti.floor)
			}
		})
	}
}

// TestIndexCountRestored checks the live keys rebuilt from a restored tree:
// counts at the restored revision need no walk, older ones walk.
func TestIndexCountRestored(t *testing.T) {
	ti := newTreeIndex()
	ti.put([]byte("a"), revision{main: 2})
	ti.put([]byte("b"), revision{main: 3})
	ti.tombstone([]byte("a"), revision{main: 4})
	ti.put([]byte("c"), revision{main: 5})

	restored := newTreeIndex()
	restored.tree = ti.tree.Clone()
	restored.resetLive(5)
	for _, tc := range []struct {
		atRev int64
		want  int
		fast  bool
	}{
		{5, 2, true},
		{4, 1, false},
		{3, 2, false},
	} {
		if got := restored.count([]byte{0}, []byte{}, tc.atRev); got != tc.want {
			t.Errorf("count at %d: %d, want %d", tc.atRev, got, tc.want)
		}
		if _, ok := restored.fastCount([]byte{0}, []byte{}, tc.atRev); ok != tc.fast {
			t.Errorf("fast count at %d: %v, want %v", tc.atRev, ok, tc.fast)
		}
	}
	if n := restored.live.Len(); n != 2 {
		t.Errorf("%d live keys, want 2", n)
	}
	restored.live.Scan(func(ki *keyIndex) bool {
		if bytes.Equal(ki.key, []byte("a")) {
			t.Errorf("deleted key %q in the live set", ki.key)
		}
		return true
	})
}

// BenchmarkIndexCount counts every key of an index of n keys, and a range
// of a tenth of them, at the newest revision (the live keys' ranks) and
// one revision below it with a key changed since (ranks and a correction);
// "walk" is the walk a count took before.
func BenchmarkIndexCount(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		ti := newTreeIndex()
		rev := int64(1)
		for i := range n {
			rev++
			ti.put(fmt.Appendf(nil, "/registry/pods/%08d", i), revision{main: rev})
		}
		rev++
		ti.tombstone(fmt.Appendf(nil, "/registry/pods/%08d", n/2), revision{main: rev})
		ti.published.Store(rev)
		from, tenth := []byte("/registry/pods/"), fmt.Appendf(nil, "/registry/pods/%08d", n/10)
		for _, tc := range []struct {
			name  string
			end   []byte
			atRev int64
			count func(key, end []byte, atRev int64) int
		}{
			{"all", []byte("/registry/pods0"), rev, ti.count},
			{"tenth", tenth, rev, ti.count},
			{"all-before-delete", []byte("/registry/pods0"), rev - 1, ti.count},
			{"all-walk", []byte("/registry/pods0"), rev, func(key, end []byte, atRev int64) int { return walkCount(ti, key, end, atRev) }},
		} {
			b.Run(fmt.Sprintf("keys=%d/%s", n, tc.name), func(b *testing.B) {
				want := walkCount(ti, from, tc.end, tc.atRev)
				for range b.N {
					if got := tc.count(from, tc.end, tc.atRev); got != want {
						b.Fatalf("count %d, want %d", got, want)
					}
				}
			})
		}
	}
}
