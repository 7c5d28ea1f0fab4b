package mvcc

import (
	"fmt"
	"hash"
	"hash/crc32"
	"sort"

	"github.com/strata-kv/strata/engine"
)

// KeyValueHash is the result of HashByRev, as etcd's HashKV returns it.
type KeyValueHash struct {
	// Hash is the CRC-32 (Castagnoli) of the revision area up to Revision.
	Hash uint32
	// CompactRevision is the compact revision the hash was computed with.
	CompactRevision int64
	// Revision is the revision hashed up to.
	Revision int64
}

// hashBucketName is written first to the hash, as etcd hashes the name of
// its "key" bucket.
var hashBucketName = []byte("key")

// kvHasher is etcd's hash of the revision area: CRC-32 Castagnoli over
// "key", then, in revision order, each revision key (etcd's 17 or 18 byte
// encoding) followed by the stored mvccpb.KeyValue bytes, for the
// revisions up to rev. Revisions at or below compactRev count only if keep
// holds them (when keep is not empty), and a tombstone at exactly
// compactRev never counts.
type kvHasher struct {
	h          hash.Hash32
	compactRev int64
	rev        int64
	keep       map[revision]struct{}
}

func newKVHasher(compactRev, rev int64, keep map[revision]struct{}) *kvHasher {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write(hashBucketName)
	return &kvHasher{h: h, compactRev: compactRev, rev: rev, keep: keep}
}

// write adds the revision area entry k (with the area prefix) -> v.
func (h *kvHasher) write(k []byte, kr revision, tomb bool, v []byte) {
	if kr.main > h.rev {
		return
	}
	if kr.main <= h.compactRev && len(h.keep) > 0 {
		if _, ok := h.keep[kr]; !ok {
			return
		}
	}
	if kr.main == h.compactRev && tomb {
		return
	}
	h.h.Write(k[1:])
	h.h.Write(v)
}

func (h *kvHasher) sum() KeyValueHash {
	return KeyValueHash{Hash: h.h.Sum32(), CompactRevision: h.compactRev, Revision: h.rev}
}

// maxStoredHashes is how many compaction hashes the store remembers.
const maxStoredHashes = 10

// storeHash remembers the hash a compaction computed, for HashByRev.
func (s *Store) storeHash(h KeyValueHash) {
	s.hashMu.Lock()
	defer s.hashMu.Unlock()
	s.hashes = append(s.hashes, h)
	sort.Slice(s.hashes, func(i, j int) bool { return s.hashes[i].Revision < s.hashes[j].Revision })
	if len(s.hashes) > maxStoredHashes {
		s.hashes = s.hashes[len(s.hashes)-maxStoredHashes:]
	}
}

// HashByRev returns etcd's HashKV of the store at rev (0: the current
// revision) and the current revision.
//
// As in etcd, if one of the last compactions (since Open) was at rev, the
// hash that compaction computed is returned: it covers the revisions above
// the compaction before it (and those at or below it that the compaction
// kept), which is what etcd members compare to detect corruption. Else the
// hash covers every revision up to rev, counting those at or below the
// compact revision only if a compaction at rev would keep them, and never
// a tombstone at exactly the compact revision. Keys and values are stored
// as etcd stores them, so the hash equals etcd's for the same history.
func (s *Store) HashByRev(rev int64) (KeyValueHash, int64, error) {
	if s.closed.Load() {
		return KeyValueHash{}, 0, ErrClosed
	}
	s.hashMu.RLock()
	for _, h := range s.hashes {
		if h.Revision == rev {
			s.hashMu.RUnlock()
			return h, s.Rev(), nil
		}
	}
	s.hashMu.RUnlock()

	st := *s.state.Load()
	if rev > 0 && rev < st.compactRev {
		return KeyValueHash{}, 0, ErrCompacted
	}
	if rev > 0 && rev > st.rev {
		return KeyValueHash{}, st.rev, ErrFutureRev
	}
	if rev == 0 {
		rev = st.rev
	}
	keep := s.idx.keep(rev)
	snap, err := s.be.NewSnapshot()
	if err != nil {
		return KeyValueHash{}, 0, fmt.Errorf("mvcc: hash: %w", err)
	}
	defer snap.Close()
	h := newKVHasher(st.compactRev, rev, keep)
	if rev >= 0 {
		it, err := snap.NewIter(&engine.IterOptions{LowerBound: revAreaLower, UpperBound: revKey(revision{main: rev + 1}, false)})
		if err != nil {
			return KeyValueHash{}, 0, fmt.Errorf("mvcc: hash: %w", err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			kr, tomb, err := parseRevKey(it.Key())
			if err != nil {
				it.Close()
				return KeyValueHash{}, 0, err
			}
			h.write(it.Key(), kr, tomb, it.Value())
		}
		if err := it.Close(); err != nil {
			return KeyValueHash{}, 0, fmt.Errorf("mvcc: hash: %w", err)
		}
	}
	if cur := s.state.Load().compactRev; cur != st.compactRev && cur > rev {
		return KeyValueHash{}, 0, ErrCompacted // a compaction overtook the hash
	}
	return h.sum(), st.rev, nil
}

// Hashes returns the hashes the last compactions (since Open) computed,
// by revision: what etcd's compaction hash check compares across members.
func (s *Store) Hashes() []KeyValueHash {
	s.hashMu.RLock()
	defer s.hashMu.RUnlock()
	return append([]KeyValueHash(nil), s.hashes...)
}
