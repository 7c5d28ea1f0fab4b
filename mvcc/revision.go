package mvcc

import (
	"encoding/binary"
	"fmt"
)

// Backend key layout. Every key the store writes starts with one of these
// bytes, so the areas are disjoint, ordered ranges of the engine keyspace.
const (
	// prefixKey starts the revision area: prefixKey + revision bytes
	// (+ markTombstone) -> encoded mvccpb.KeyValue.
	prefixKey byte = 'k'
	// prefixLease starts the lease area (reserved for the lease layer).
	prefixLease byte = 'l'
	// prefixMeta starts the meta area: prefixMeta + name -> value.
	prefixMeta byte = 'm'
)

const (
	// revBytesLen is the length of an encoded revision: 8 bytes of main in
	// big-endian order, a '_', 8 bytes of sub in big-endian order. Big-endian
	// makes byte order equal numeric order. This is etcd's format.
	revBytesLen = 8 + 1 + 8
	// markedRevBytesLen is the length of an encoded tombstone revision: the
	// revision followed by markTombstone.
	markedRevBytesLen = revBytesLen + 1
	// markTombstone marks a revision that deletes its key.
	markTombstone byte = 't'

	// revKeyLen and markedRevKeyLen are the backend key lengths.
	revKeyLen       = 1 + revBytesLen
	markedRevKeyLen = 1 + markedRevBytesLen
)

// A revision names one change: main is the store revision of the request
// that made it, sub its position among the changes of that request.
type revision struct {
	main int64
	sub  int64
}

// less orders revisions by main, then sub.
func (a revision) less(b revision) bool {
	if a.main != b.main {
		return a.main < b.main
	}
	return a.sub < b.sub
}

func (a revision) String() string { return fmt.Sprintf("%d.%d", a.main, a.sub) }

// revKeysFrom returns the smallest revision key of revision main, the
// bound between the revisions below main and the others.
func revKeysFrom(main int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixKey}, uint64(main))
}

// appendRevBytes appends the etcd encoding of rev (and the tombstone mark
// when tomb) to dst.
func appendRevBytes(dst []byte, rev revision, tomb bool) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(rev.main))
	dst = append(dst, '_')
	dst = binary.BigEndian.AppendUint64(dst, uint64(rev.sub))
	if tomb {
		dst = append(dst, markTombstone)
	}
	return dst
}

// revKey returns the backend key of rev in the revision area.
func revKey(rev revision, tomb bool) []byte {
	b := make([]byte, 0, markedRevKeyLen)
	b = append(b, prefixKey)
	return appendRevBytes(b, rev, tomb)
}

// parseRevBytes decodes an etcd revision encoding (without the area
// prefix).
func parseRevBytes(b []byte) (rev revision, tomb bool, err error) {
	switch {
	case len(b) == markedRevBytesLen && b[revBytesLen] == markTombstone:
		tomb = true
	case len(b) == revBytesLen:
	default:
		return revision{}, false, fmt.Errorf("%w: revision key %x", ErrCorrupt, b)
	}
	if b[8] != '_' {
		return revision{}, false, fmt.Errorf("%w: revision key %x", ErrCorrupt, b)
	}
	rev.main = int64(binary.BigEndian.Uint64(b))
	rev.sub = int64(binary.BigEndian.Uint64(b[9:]))
	if rev.main < 0 || rev.sub < 0 {
		return revision{}, false, fmt.Errorf("%w: negative revision in key %x", ErrCorrupt, b)
	}
	return rev, tomb, nil
}

// parseRevKey decodes a backend key of the revision area.
func parseRevKey(k []byte) (revision, bool, error) {
	if len(k) == 0 || k[0] != prefixKey {
		return revision{}, false, fmt.Errorf("%w: not a revision key %x", ErrCorrupt, k)
	}
	return parseRevBytes(k[1:])
}

// Meta area keys.
var (
	metaFormat           = []byte("m" + "format")
	metaAppliedIndex     = []byte("m" + "applied_index")
	metaCurrentRev       = []byte("m" + "current_rev")
	metaScheduledCompact = []byte("m" + "scheduled_compact")
	metaFinishedCompact  = []byte("m" + "finished_compact")
	// metaSplitCommit is present only while a batch too large for the
	// engine is written in parts: the revisions above it are not
	// committed (WriteBatch.commitSplit).
	metaSplitCommit = []byte("m" + "split_commit")
)

// formatVersion is stored under metaFormat by the first commit.
const formatVersion = "strata-mvcc/1"

// revAreaLower and revAreaUpper bound the revision area.
var (
	revAreaLower = []byte{prefixKey}
	revAreaUpper = []byte{prefixKey + 1}
)

func putUint64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getUint64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: meta value of %d bytes", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
