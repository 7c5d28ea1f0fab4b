package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/strata-kv/strata/engine"
)

// Moving data between etcd's storage and a store's backend, offline.
//
// The revision and lease areas hold what etcd's "key" and "lease" buckets
// hold, byte for byte, under a one-byte area prefix (see the package
// documentation), so records move unchanged; only the compact revisions
// differ in encoding (etcd stores them as revision bytes, 17 bytes).

// An Importer fills an empty backend with records of etcd's "key" and
// "lease" buckets, in bucket (byte) order, then Finish writes the meta
// area. The applied index is 0, as etcdutl's restore resets etcd's
// consistent index: a new raft log starts from the restored data. The
// records go into the backend in key order (engine.SortedWriter): the
// engine's bulk loader, when it has one, writes them. Only one goroutine
// may use an Importer; one that is not finished must be aborted.
type Importer struct {
	w        *engine.SortedWriter
	lastRev  revision
	haveRev  bool
	maxMain  int64
	lastID   []byte
	revs     int
	leases   int
	key      []byte
	tail     map[string][]byte // the meta and aux records, written by Finish
	finished bool
}

// NewImporter returns an Importer writing to be, which must hold no data
// and take no other writes until the Importer is finished or aborted.
func NewImporter(be engine.Backend) (*Importer, error) {
	snap, err := be.NewSnapshot()
	if err != nil {
		return nil, fmt.Errorf("mvcc: import: %w", err)
	}
	it, err := snap.NewIter(&engine.IterOptions{})
	if err != nil {
		snap.Close()
		return nil, fmt.Errorf("mvcc: import: %w", err)
	}
	empty := !it.First()
	err = it.Close()
	snap.Close()
	switch {
	case err != nil:
		return nil, fmt.Errorf("mvcc: import: %w", err)
	case !empty:
		return nil, fmt.Errorf("mvcc: import: %w", engine.ErrNotEmpty)
	}
	w, err := engine.NewSortedWriter(be)
	if err != nil {
		return nil, fmt.Errorf("mvcc: import: %w", err)
	}
	return &Importer{w: w, tail: make(map[string][]byte)}, nil
}

// CheckEtcdRevision checks one record of etcd's "key" bucket: k is a
// revision (with the tombstone mark for a delete), v the mvccpb.KeyValue
// stored under it. A record with an empty value marks a revision only
// (etcdutl's --bump-revision writes one); it is reported with bump set.
func CheckEtcdRevision(k, v []byte) (bump bool, err error) {
	rev, tomb, err := parseRevBytes(k)
	if err != nil {
		return false, err
	}
	if len(v) == 0 && !tomb {
		return true, nil
	}
	var kv mvccpb.KeyValue
	if err := decodeKV(v, &kv); err != nil {
		return false, fmt.Errorf("revision %v: %w", rev, err)
	}
	switch {
	case len(kv.Key) == 0:
		return false, fmt.Errorf("%w: revision %v: empty key", ErrCorrupt, rev)
	case tomb:
		return false, nil
	case kv.ModRevision != rev.main:
		return false, fmt.Errorf("%w: revision %v: mod_revision %d", ErrCorrupt, rev, kv.ModRevision)
	case kv.CreateRevision <= 0 || kv.CreateRevision > rev.main || kv.Version <= 0 || kv.Lease < 0:
		return false, fmt.Errorf("%w: revision %v: create_revision %d, version %d, lease %d",
			ErrCorrupt, rev, kv.CreateRevision, kv.Version, kv.Lease)
	}
	return false, nil
}

// Revision adds one record of etcd's "key" bucket (see CheckEtcdRevision).
// Records must come in increasing revision order, as the bucket holds them,
// and before the leases.
func (im *Importer) Revision(k, v []byte) error {
	if im.finished {
		return errors.New("mvcc: import: finished")
	}
	bump, err := CheckEtcdRevision(k, v)
	if err != nil {
		return fmt.Errorf("mvcc: import: %w", err)
	}
	rev, _, _ := parseRevBytes(k)
	if im.haveRev && !im.lastRev.less(rev) {
		return fmt.Errorf("mvcc: import: %w: revision %v after %v", ErrCorrupt, rev, im.lastRev)
	}
	im.lastRev, im.haveRev = rev, true
	im.maxMain = max(im.maxMain, rev.main)
	if bump {
		return nil
	}
	im.revs++
	return im.set(prefixKey, k, v)
}

// Lease adds one record of etcd's "lease" bucket: the lease ID as 8
// big-endian bytes and its leasepb.Lease.
func (im *Importer) Lease(k, v []byte) error {
	if im.finished {
		return errors.New("mvcc: import: finished")
	}
	if len(k) != 8 {
		return fmt.Errorf("mvcc: import: %w: lease key %x", ErrCorrupt, k)
	}
	id, ttl, _, err := decodeLease(v)
	if err != nil {
		return fmt.Errorf("mvcc: import: lease %x: %w", k, err)
	}
	if id <= 0 || id != int64(binary.BigEndian.Uint64(k)) || ttl < 0 {
		return fmt.Errorf("mvcc: import: %w: lease %d (ttl %d) stored under key %x", ErrCorrupt, id, ttl, k)
	}
	if im.lastID != nil && bytes.Compare(im.lastID, k) >= 0 {
		return fmt.Errorf("mvcc: import: %w: lease key %x after %x", ErrCorrupt, k, im.lastID)
	}
	im.lastID = append(im.lastID[:0], k...)
	im.leases++
	return im.set(prefixLease, k, v)
}

func (im *Importer) set(prefix byte, k, v []byte) error {
	im.key = append(append(im.key[:0], prefix), k...)
	if err := im.w.Set(im.key, v); err != nil {
		return fmt.Errorf("mvcc: import: %w", err)
	}
	return nil
}

// SetAux adds one record of the auxiliary area (see WriteBatch.SetAux):
// state kept beside the keyspace, such as the auth store's. Call it before
// Finish, which writes it.
func (im *Importer) SetAux(name, value []byte) {
	im.tail[string(append([]byte{prefixAux}, name...))] = bytes.Clone(value)
}

// Abort abandons an import that is not finished; the backend holds part
// of it and is to be discarded.
func (im *Importer) Abort() {
	if im.finished {
		return
	}
	im.finished = true
	im.w.Abort()
}

// ImportMeta is what etcd's "meta" bucket says of the keyspace. A
// compact revision of 0 means none (etcd does not store one then).
type ImportMeta struct {
	FinishedCompactRev  int64
	ScheduledCompactRev int64
	// LeaseSeq is the lease ID counter of the Strata store the records
	// were exported from (ExportMeta.LeaseSeq), 0 if none: generated lease
	// IDs go on from it, never reusing a revoked lease's ID.
	LeaseSeq uint64
}

// Finish writes the meta area: the format, the current revision (the
// highest of the records' and the compact revisions, as etcd's restore
// computes it), the compact revisions and an applied index of 0; and
// syncs the backend. It returns the current revision and the numbers of
// revisions and leases written.
func (im *Importer) Finish(m ImportMeta) (rev int64, revs, leases int, err error) {
	if im.finished {
		return 0, 0, 0, errors.New("mvcc: import: finished")
	}
	im.finished = true
	if m.FinishedCompactRev < 0 || m.ScheduledCompactRev < 0 {
		im.w.Abort()
		return 0, 0, 0, fmt.Errorf("mvcc: import: %w: negative compact revision", ErrCorrupt)
	}
	rev = max(1, im.maxMain, m.FinishedCompactRev, m.ScheduledCompactRev)
	im.tail[string(metaFormat)] = []byte(formatVersion)
	im.tail[string(metaCurrentRev)] = putUint64(uint64(rev))
	im.tail[string(metaAppliedIndex)] = putUint64(0)
	if m.FinishedCompactRev > 0 {
		im.tail[string(metaFinishedCompact)] = putUint64(uint64(m.FinishedCompactRev))
	}
	if m.ScheduledCompactRev > 0 {
		im.tail[string(metaScheduledCompact)] = putUint64(uint64(m.ScheduledCompactRev))
	}
	if m.LeaseSeq > 0 {
		im.tail[string(metaLeaseSeq)] = putUint64(m.LeaseSeq)
	}
	// The meta and aux areas sort after the revision and lease areas.
	for _, k := range slices.Sorted(maps.Keys(im.tail)) {
		if err := im.w.Set([]byte(k), im.tail[k]); err != nil {
			im.w.Abort()
			return 0, 0, 0, fmt.Errorf("mvcc: import: %w", err)
		}
	}
	if err := im.w.Finish(); err != nil {
		return 0, 0, 0, fmt.Errorf("mvcc: import: %w", err)
	}
	return rev, im.revs, im.leases, nil
}

// ExportMeta describes an exported keyspace in etcd's terms.
type ExportMeta struct {
	// Rev is the store's current revision.
	Rev int64
	// MaxRecordRev is the highest revision of the records handed out
	// (0 if none). When Rev is above it and above the compact revisions,
	// etcd would restore a lower current revision from the records alone.
	MaxRecordRev int64
	// FinishedCompactRev and ScheduledCompactRev are the compact
	// revisions, 0 if none.
	FinishedCompactRev  int64
	ScheduledCompactRev int64
	// LeaseSeq is the store's lease ID counter (see ImportMeta.LeaseSeq).
	LeaseSeq uint64
}

// Export reads a backend holding a store that is not open and hands each
// record, in etcd's encoding, to revision (etcd's "key" bucket, in
// revision order) and lease (etcd's "lease" bucket, in ID order). The
// slices are valid only during the call.
func Export(be engine.Backend, revision, lease func(k, v []byte) error) (ExportMeta, error) {
	var m ExportMeta
	snap, err := be.NewSnapshot()
	if err != nil {
		return m, fmt.Errorf("mvcc: export: %w", err)
	}
	defer snap.Close()
	meta := func(key []byte) (int64, error) {
		v, _, err := metaFound(snap, key)
		if err != nil {
			return 0, fmt.Errorf("mvcc: export: %w", err)
		}
		return v, nil
	}
	format, err := snap.Get(metaFormat)
	switch {
	case errors.Is(err, engine.ErrNotFound):
	case err != nil:
		return m, fmt.Errorf("mvcc: export: %w", err)
	case string(format) != formatVersion:
		return m, fmt.Errorf("%w: format %q, want %q", ErrForeignData, format, formatVersion)
	}
	stored, err := meta(metaCurrentRev)
	if err != nil {
		return m, err
	}
	if m.FinishedCompactRev, err = meta(metaFinishedCompact); err != nil {
		return m, err
	}
	if m.ScheduledCompactRev, err = meta(metaScheduledCompact); err != nil {
		return m, err
	}
	seq, err := meta(metaLeaseSeq)
	if err != nil {
		return m, err
	}
	m.LeaseSeq = uint64(seq)
	area := func(lower, upper []byte, fn func(k, v []byte) error) error {
		it, err := snap.NewIter(&engine.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return fmt.Errorf("mvcc: export: %w", err)
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if err := fn(it.Key(), it.Value()); err != nil {
				return err
			}
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("mvcc: export: %w", err)
		}
		return nil
	}
	// The revisions of a split commit the process did not finish are not
	// part of the store (Store.undoSplitCommit).
	revUpper := revAreaUpper
	if above, found, err := metaFound(snap, metaSplitCommit); err != nil {
		return m, fmt.Errorf("mvcc: export: %w", err)
	} else if found {
		revUpper = revKeysFrom(above + 1)
	}
	err = area(revAreaLower, revUpper, func(k, v []byte) error {
		rev, _, err := parseRevKey(k)
		if err != nil {
			return err
		}
		m.MaxRecordRev = rev.main
		return revision(k[1:], v)
	})
	if err != nil {
		return m, err
	}
	err = area(leaseAreaLower, leaseAreaUpper, func(k, v []byte) error {
		if len(k) != 9 {
			return fmt.Errorf("%w: lease key %x", ErrCorrupt, k)
		}
		return lease(k[1:], v)
	})
	if err != nil {
		return m, err
	}
	m.Rev = max(1, stored, m.MaxRecordRev, m.FinishedCompactRev, m.ScheduledCompactRev)
	return m, nil
}
