// Package etcddb reads and writes etcd v3's data file: the bbolt database
// of a member (`<data-dir>/member/snap/db`) and the snapshot file that
// `etcdctl snapshot save` writes, which is that database with the sha256
// of its content appended.
//
// It knows only the parts of etcd's schema (server/storage/schema) that
// carry the keyspace and what goes with it: the "key" bucket (revision ->
// mvccpb.KeyValue), the "lease" bucket (lease ID -> leasepb.Lease), the
// compact revisions, term and consistent index in the "meta" bucket, and
// the auth store's buckets ("auth": enabled flag and auth revision;
// "authUsers": name -> authpb.User; "authRoles": name -> authpb.Role). Records are handed out
// and taken in as etcd stores them; decoding them is the caller's.
package etcddb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket and meta key names of etcd's schema (server/storage/schema/bucket.go).
var (
	bucketKey   = []byte("key")
	bucketMeta  = []byte("meta")
	bucketLease = []byte("lease")
	// The auth store's buckets (server/storage/schema/auth*.go).
	bucketAuth      = []byte("auth")
	bucketAuthUsers = []byte("authUsers")
	bucketAuthRoles = []byte("authRoles")
	// allBuckets are the buckets etcd creates; an exported file has them all.
	allBuckets = [][]byte{bucketKey, bucketMeta, bucketLease, []byte("alarm"), []byte("cluster"),
		[]byte("members"), []byte("members_removed"), bucketAuth, bucketAuthUsers, bucketAuthRoles}

	metaFinishedCompact  = []byte("finishedCompactRev")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaConsistentIndex  = []byte("consistent_index")
	metaTerm             = []byte("term")
	metaStorageVersion   = []byte("storageVersion")
	// In the "auth" bucket: one byte, 1 or 0; and 8 bytes big-endian.
	metaAuthEnabled  = []byte("authEnabled")
	metaAuthRevision = []byte("authRevision")
	// metaStrataLeaseSeq is Strata's own: the counter behind the lease IDs
	// a Strata store generated, so that a store exported to etcd's format
	// and restored again never grants the ID of a revoked lease again.
	// etcd ignores it.
	metaStrataLeaseSeq = []byte("strataLeaseSeq")
)

// Errors callers test.
var (
	// ErrNotEtcd: the file is not a bbolt database, or not etcd's.
	ErrNotEtcd = errors.New("not an etcd v3 snapshot or database")
	// ErrMissingHash: the file has no sha256 appended and the hash check was
	// not skipped (etcdutl's wording).
	ErrMissingHash = errors.New("snapshot missing hash but --skip-hash-check=false")
	// ErrHashMismatch: the appended sha256 is not the content's.
	ErrHashMismatch = errors.New("snapshot file integrity check failed: sha256 mismatch")
	// ErrIntegrity: the database is damaged (etcdutl's wording).
	ErrIntegrity = errors.New("snapshot file integrity check failed")
	// ErrLocked: another process (a running etcd) holds the database.
	ErrLocked = errors.New("database is locked by another process (is the etcd member stopped?)")
	// ErrInvalidOptions is wrapped by the errors of OpenOptions.Validate.
	ErrInvalidOptions = errors.New("etcddb: invalid options")
)

// HasChecksum reports whether a file of size n has a sha256 appended, as
// etcdutl decides it: bbolt files are page-aligned, so a snapshot is
// 32 bytes past a multiple of 512.
func HasChecksum(n int64) bool { return n%512 == sha256.Size }

// boltMagic is bbolt's meta page magic; the first meta page's is at
// offset 16, after the page header.
const boltMagic uint32 = 0xED0CDAED

// IsBolt reports whether head, the first bytes of a file, starts a bbolt
// database written on a little-endian machine (bbolt writes its pages in
// the machine's byte order; Strata runs on little-endian machines).
func IsBolt(head []byte) bool {
	return len(head) >= 20 && binary.LittleEndian.Uint32(head[16:20]) == boltMagic
}

// Meta is what the "meta" bucket says of the keyspace. Zero means absent.
type Meta struct {
	FinishedCompactRev  int64
	ScheduledCompactRev int64
	ConsistentIndex     uint64
	Term                uint64
	StorageVersion      string
	AuthEnabled         bool
	// AuthRevision is the auth store's revision (0: none stored).
	AuthRevision uint64
	// LeaseSeq is the lease ID counter of the Strata store the file was
	// exported from (see metaStrataLeaseSeq).
	LeaseSeq uint64
}

// OpenOptions configure Open.
type OpenOptions struct {
	// SkipHashCheck accepts a file without an appended sha256 (a member's
	// db) and does not check one that has it, as etcdutl's flag.
	SkipHashCheck bool
	// LockTimeout bounds the wait for a file another process holds
	// (default 1s).
	LockTimeout time.Duration
}

// EnsureDefaults sets the zero fields of o to their default values. Open
// calls it on its own copy of the caller's options.
func (o *OpenOptions) EnsureDefaults() {
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
}

// Validate reports options that cannot work, with an error wrapping
// ErrInvalidOptions. It expects EnsureDefaults to have run.
func (o *OpenOptions) Validate() error {
	if o.LockTimeout < 0 {
		return fmt.Errorf("%w: LockTimeout %s < 0", ErrInvalidOptions, o.LockTimeout)
	}
	return nil
}

// A Reader reads one etcd database at one point in time.
type Reader struct {
	db *bolt.DB
	tx *bolt.Tx
}

// Open checks and opens the etcd snapshot or database at path, read-only:
// the appended sha256 (see OpenOptions.SkipHashCheck), that it is a bbolt
// database whose meta pages fit in the file, holding etcd's "key" and
// "meta" buckets. Damage found later, while reading, is ErrIntegrity too.
func Open(path string, opts OpenOptions) (*Reader, error) {
	// opts is Open's own copy: the caller's options are never changed.
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	head := make([]byte, 20)
	if _, err := io.ReadFull(f, head); err != nil || !IsBolt(head) {
		f.Close()
		return nil, ErrNotEtcd
	}
	hashed := HasChecksum(fi.Size())
	if !hashed && !opts.SkipHashCheck {
		f.Close()
		return nil, ErrMissingHash
	}
	if hashed && !opts.SkipHashCheck {
		if err := checkHash(f, fi.Size()); err != nil {
			f.Close()
			return nil, err
		}
	}
	payload := fi.Size()
	if hashed {
		payload -= sha256.Size
	}
	err = checkMetas(f, payload)
	f.Close()
	if err != nil {
		return nil, err
	}
	var db *bolt.DB
	err = safely(func() error {
		var err error
		db, err = bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: opts.LockTimeout})
		return err
	})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, ErrLocked
	case errors.Is(err, ErrIntegrity):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	tx, err := db.Begin(false)
	if err != nil {
		db.Close()
		return nil, err
	}
	r := &Reader{db: db, tx: tx}
	var found bool
	err = safely(func() error {
		found = tx.Bucket(bucketKey) != nil && tx.Bucket(bucketMeta) != nil
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%w: a bbolt database without etcd's key and meta buckets", ErrNotEtcd)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// safely runs fn, which reads the database, turning what bbolt does on a
// damaged file (a panic, or a fault reading a page that is not there)
// into ErrIntegrity. Every read of the database goes through it: bbolt's
// own Check runs on a goroutine of its own, where a fault would crash the
// process, so it is not used.
func safely(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrIntegrity, p)
		}
	}()
	return fn()
}

// checkMetas checks bbolt's two meta pages, as bbolt reads them
// (internal/common/meta.go): every valid one must describe a database
// that fits in the file's first size bytes, or bbolt would read past the
// end of the file.
func checkMetas(f *os.File, size int64) error {
	const metaOff, metaLen = 16, 64
	read := func(off int64) (m [metaLen]byte, ok bool) {
		if off+metaOff+metaLen > size {
			return m, false
		}
		if _, err := f.ReadAt(m[:], off+metaOff); err != nil {
			return m, false
		}
		h := fnv.New64a()
		h.Write(m[:56])
		return m, binary.LittleEndian.Uint32(m[0:]) == boltMagic && binary.LittleEndian.Uint32(m[4:]) == 2 &&
			binary.LittleEndian.Uint64(m[56:]) == h.Sum64()
	}
	m0, ok0 := read(0)
	pageSize := int64(os.Getpagesize())
	if ok0 {
		pageSize = int64(binary.LittleEndian.Uint32(m0[8:]))
	}
	if pageSize < 512 || pageSize > 1<<20 {
		return fmt.Errorf("%w: page size %d", ErrIntegrity, pageSize)
	}
	m1, ok1 := read(pageSize)
	if !ok0 && !ok1 {
		return fmt.Errorf("%w: no valid meta page", ErrIntegrity)
	}
	for i, m := range [][metaLen]byte{m0, m1} {
		if (i == 0 && !ok0) || (i == 1 && !ok1) {
			continue
		}
		root := binary.LittleEndian.Uint64(m[16:])
		freelist := binary.LittleEndian.Uint64(m[32:])
		hwm := binary.LittleEndian.Uint64(m[40:])
		if hwm < 2 || hwm > uint64(size/pageSize) {
			return fmt.Errorf("%w: the database has %d pages of %d bytes, the file %d bytes (truncated?)", ErrIntegrity, hwm, pageSize, size)
		}
		if root >= hwm || (freelist != noFreelist && freelist >= hwm) {
			return fmt.Errorf("%w: meta page %d points past the last page", ErrIntegrity, i)
		}
	}
	return nil
}

// noFreelist is bbolt's freelist page ID when the freelist is not stored.
const noFreelist = 0xffffffffffffffff

// checkHash compares the sha256 appended to f (of size n) with its content's.
func checkHash(f *os.File, n int64) error {
	want := make([]byte, sha256.Size)
	if _, err := f.ReadAt(want, n-sha256.Size); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, n-sha256.Size)); err != nil {
		return err
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: expected sha256 %x, got %x", ErrHashMismatch, want, got)
	}
	return nil
}

// Close releases the database.
func (r *Reader) Close() error {
	r.tx.Rollback()
	return r.db.Close()
}

// Size is the database's size in bytes.
func (r *Reader) Size() int64 { return r.tx.Size() }

// Meta reads the meta bucket.
func (r *Reader) Meta() (m Meta, err error) {
	err = safely(func() error {
		var err error
		m, err = r.meta()
		return err
	})
	return m, err
}

func (r *Reader) meta() (Meta, error) {
	var m Meta
	b := r.tx.Bucket(bucketMeta)
	var err error
	if m.FinishedCompactRev, err = compactRev(b.Get(metaFinishedCompact)); err != nil {
		return m, fmt.Errorf("meta %s: %w", metaFinishedCompact, err)
	}
	if m.ScheduledCompactRev, err = compactRev(b.Get(metaScheduledCompact)); err != nil {
		return m, fmt.Errorf("meta %s: %w", metaScheduledCompact, err)
	}
	if v := b.Get(metaConsistentIndex); len(v) == 8 {
		m.ConsistentIndex = binary.BigEndian.Uint64(v)
	}
	if v := b.Get(metaTerm); len(v) == 8 {
		m.Term = binary.BigEndian.Uint64(v)
	}
	m.StorageVersion = string(b.Get(metaStorageVersion))
	if v := b.Get(metaStrataLeaseSeq); len(v) == 8 {
		m.LeaseSeq = binary.BigEndian.Uint64(v)
	}
	if ab := r.tx.Bucket(bucketAuth); ab != nil {
		v := ab.Get(metaAuthEnabled)
		m.AuthEnabled = len(v) == 1 && v[0] == 1
		switch v := ab.Get(metaAuthRevision); len(v) {
		case 0:
		case 8:
			m.AuthRevision = binary.BigEndian.Uint64(v)
		default:
			return m, fmt.Errorf("%w: auth revision of %d bytes", ErrIntegrity, len(v))
		}
	}
	return m, nil
}

// compactRev decodes a compact revision stored as etcd's revision bytes
// (8 bytes main, '_', 8 bytes sub); nil is 0.
func compactRev(v []byte) (int64, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) != 17 || v[8] != '_' {
		return 0, fmt.Errorf("%w: compact revision %x", ErrIntegrity, v)
	}
	rev := int64(binary.BigEndian.Uint64(v))
	if rev < 0 {
		return 0, fmt.Errorf("%w: compact revision %x", ErrIntegrity, v)
	}
	return rev, nil
}

func revBytes(rev int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(rev))
	b = append(b, '_')
	return binary.BigEndian.AppendUint64(b, 0)
}

// ForEachRevision calls fn for every record of the "key" bucket, in
// revision order. k and v are valid only during the call.
func (r *Reader) ForEachRevision(fn func(k, v []byte) error) error {
	return safely(func() error { return r.tx.Bucket(bucketKey).ForEach(fn) })
}

// ForEachLease calls fn for every record of the "lease" bucket, in ID
// order. k and v are valid only during the call.
func (r *Reader) ForEachLease(fn func(k, v []byte) error) error {
	return r.forEach(bucketLease, fn)
}

// ForEachAuthUser calls fn for every record of the "authUsers" bucket, in
// name order. k and v are valid only during the call.
func (r *Reader) ForEachAuthUser(fn func(k, v []byte) error) error {
	return r.forEach(bucketAuthUsers, fn)
}

// ForEachAuthRole calls fn for every record of the "authRoles" bucket, in
// name order. k and v are valid only during the call.
func (r *Reader) ForEachAuthRole(fn func(k, v []byte) error) error {
	return r.forEach(bucketAuthRoles, fn)
}

// forEach walks a bucket that may be absent.
func (r *Reader) forEach(bucket []byte, fn func(k, v []byte) error) error {
	return safely(func() error {
		b := r.tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(fn)
	})
}

// writeTxRecords is how many records a Writer puts in one bbolt transaction.
const writeTxRecords = 10000

// A Writer writes an etcd snapshot file: records go into a bbolt database
// next to the destination, and Finish appends the sha256 and renames it
// into place, so that the destination is either whole or absent.
type Writer struct {
	path, tmp string
	db        *bolt.DB
	tx        *bolt.Tx
	n         int
	lastRev   []byte
}

// Create starts a snapshot file at path, which must not exist.
func Create(path string) (*Writer, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%s exists", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	f.Close()
	// bbolt initialises an empty file.
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	w := &Writer{path: path, tmp: tmp, db: db}
	if err := w.begin(); err != nil {
		w.Abort()
		return nil, err
	}
	for _, name := range allBuckets {
		if _, err := w.tx.CreateBucketIfNotExists(name); err != nil {
			w.Abort()
			return nil, err
		}
	}
	return w, nil
}

func (w *Writer) begin() error {
	tx, err := w.db.Begin(true)
	if err != nil {
		return err
	}
	w.tx = tx
	return nil
}

func (w *Writer) put(bucket, k, v []byte) error {
	b := w.tx.Bucket(bucket)
	b.FillPercent = 0.9 // keys come in order, as etcd's buckets are filled
	if err := b.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
		return err
	}
	if w.n++; w.n%writeTxRecords == 0 {
		if err := w.tx.Commit(); err != nil {
			w.tx = nil
			return err
		}
		return w.begin()
	}
	return nil
}

// Revision puts one record into the "key" bucket.
func (w *Writer) Revision(k, v []byte) error {
	w.lastRev = append(w.lastRev[:0], k...)
	return w.put(bucketKey, k, v)
}

// Lease puts one record into the "lease" bucket.
func (w *Writer) Lease(k, v []byte) error { return w.put(bucketLease, k, v) }

// AuthUser puts one record into the "authUsers" bucket.
func (w *Writer) AuthUser(k, v []byte) error { return w.put(bucketAuthUsers, k, v) }

// AuthRole puts one record into the "authRoles" bucket.
func (w *Writer) AuthRole(k, v []byte) error { return w.put(bucketAuthRoles, k, v) }

// FinishMeta is what Finish writes to the meta bucket.
type FinishMeta struct {
	// Rev is the keyspace's current revision. If the records written end
	// below it (and below the compact revisions), a record marking Rev
	// is added, as etcdutl's --bump-revision adds one, so that etcd
	// restores the same current revision.
	Rev                 int64
	FinishedCompactRev  int64 // 0: none
	ScheduledCompactRev int64 // 0: none
	// StorageVersion is etcd's storage schema version of the file.
	StorageVersion string
	// LeaseSeq is the exported store's lease ID counter (0: none).
	LeaseSeq uint64
	// AuthEnabled and AuthRevision go to the "auth" bucket (a revision of
	// 0 is not written: etcd then starts at 1).
	AuthEnabled  bool
	AuthRevision uint64
}

// Finish writes the meta bucket, closes the database, appends its sha256
// and renames the file into place. The Writer is done either way.
func (w *Writer) Finish(m FinishMeta) (size int64, err error) {
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	last := int64(0)
	if len(w.lastRev) >= 8 {
		last = int64(binary.BigEndian.Uint64(w.lastRev))
	}
	if m.Rev > max(1, last, m.FinishedCompactRev, m.ScheduledCompactRev) {
		if err := w.put(bucketKey, revBytes(m.Rev), []byte{}); err != nil {
			return 0, err
		}
	}
	mb := w.tx.Bucket(bucketMeta)
	if m.FinishedCompactRev > 0 {
		if err := mb.Put(metaFinishedCompact, revBytes(m.FinishedCompactRev)); err != nil {
			return 0, err
		}
	}
	if m.ScheduledCompactRev > 0 {
		if err := mb.Put(metaScheduledCompact, revBytes(m.ScheduledCompactRev)); err != nil {
			return 0, err
		}
	}
	// A snapshot's consistent index and term are replaced by etcdutl's
	// restore; 0 says the file belongs to no raft log yet.
	if err := mb.Put(metaConsistentIndex, make([]byte, 8)); err != nil {
		return 0, err
	}
	if err := mb.Put(metaTerm, make([]byte, 8)); err != nil {
		return 0, err
	}
	if m.StorageVersion != "" {
		if err := mb.Put(metaStorageVersion, []byte(m.StorageVersion)); err != nil {
			return 0, err
		}
	}
	if m.LeaseSeq > 0 {
		if err := mb.Put(metaStrataLeaseSeq, binary.BigEndian.AppendUint64(nil, m.LeaseSeq)); err != nil {
			return 0, err
		}
	}
	ab := w.tx.Bucket(bucketAuth)
	enabled := []byte{0}
	if m.AuthEnabled {
		enabled[0] = 1
	}
	if err := ab.Put(metaAuthEnabled, enabled); err != nil {
		return 0, err
	}
	if m.AuthRevision > 0 {
		if err := ab.Put(metaAuthRevision, binary.BigEndian.AppendUint64(nil, m.AuthRevision)); err != nil {
			return 0, err
		}
	}
	err = w.tx.Commit()
	w.tx = nil
	if err != nil {
		return 0, err
	}
	// bbolt grows its file ahead of the pages in use; a snapshot ends
	// with the last page, as etcd's (tx.WriteTo) does.
	var used int64
	if err := w.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		return 0, err
	}
	err = w.db.Close()
	w.db = nil
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(w.tmp, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Truncate(used); err != nil {
		return 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		return 0, err
	}
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return n + sha256.Size, nil
}

// Abort discards the file being written.
func (w *Writer) Abort() {
	if w.tx != nil {
		w.tx.Rollback()
		w.tx = nil
	}
	if w.db != nil {
		w.db.Close()
		w.db = nil
	}
	os.Remove(w.tmp)
}
