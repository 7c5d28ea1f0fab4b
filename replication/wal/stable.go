package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// The stable file is an append-only log of Set records, framed like log
// records (crc, len, payload); the payload is uvarint(len(key)), key, value.
// The last record for a key wins. Open rewrites the file with only the live
// values once it has grown to more than compactFactor times that.
const (
	stableName    = "stable"
	stableTmpName = "stable.tmp"
	compactMin    = 256 // records before compaction is considered
	compactFactor = 4
)

// stableStore implements raft.StableStore for Store.
type stableStore struct {
	mu      sync.Mutex // guards every field
	dir     string
	f       *os.File
	size    int64             // bytes of valid records; the file is this long
	records int               // records in the file
	kv      map[string][]byte // live values
	buf     []byte            // encoding of the record being written
	failed  error             // sticky ErrFailed
	closed  bool

	syncFault func() error // Options.SyncFault
	onFail    func(error)  // Options.OnFail
	noSync    bool         // Options.NoSync
	// failOnce calls onFail once, whichever of the log and the stable
	// store fails first.
	failOnce sync.Once
}

// Set durably stores val under key: it returns after the record is written
// and fdatasync'ed. The store keeps no reference to key or val.
func (s *Store) Set(key, val []byte) error { return s.stable.set(key, val) }

// Get returns a copy of the value stored under key. For a missing key it
// returns nil and no error, as raft.StableStore documents (raft also accepts
// an error reading "not found", which raft-boltdb returns, but does not
// need it).
func (s *Store) Get(key []byte) ([]byte, error) { return s.stable.get(key) }

// SetUint64 durably stores val under key, as 8 bytes little-endian.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], val)
	return s.stable.set(key, b[:])
}

// GetUint64 returns the value SetUint64 stored under key, and 0 with no
// error for a missing key, as raft.StableStore documents. It returns
// ErrNotUint64 if the value is not 8 bytes long.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.stable.get(key)
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: key %q holds %d bytes", ErrNotUint64, key, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

func (st *stableStore) open(dir string, logger *slog.Logger) error {
	st.dir = dir
	st.kv = make(map[string][]byte)
	path := filepath.Join(dir, stableName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st.rewrite()
	}
	if err != nil {
		return fmt.Errorf("wal: open stable: %w", err)
	}
	off := 0
	for off < len(data) {
		n, key, val, err := decodeStable(data[off:])
		if err != nil {
			for at := off + 1; at+recordHeaderSize <= len(data); at++ {
				if _, _, _, err2 := decodeStable(data[at:]); err2 == nil {
					return fmt.Errorf("%w: stable file: record at offset %d: %w, but the record at offset %d is intact",
						ErrCorrupt, off, err, at)
				}
			}
			break
		}
		st.kv[string(key)] = slices.Clone(val)
		st.records++
		off += n
	}
	if st.records > compactMin && st.records > compactFactor*len(st.kv) {
		return st.rewrite()
	}
	if st.f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("wal: open stable: %w", err)
	}
	st.size = int64(off)
	if off < len(data) {
		logger.Warn("wal: truncating torn tail of the stable file", "offset", off, "bytes", len(data)-off)
		if err := truncateSync(st.f, st.size); err != nil {
			return fmt.Errorf("wal: open stable: truncate torn tail: %w", err)
		}
	}
	return nil
}

// rewrite replaces the stable file with one holding only the live values
// (via a temporary file, renamed, directory synced) and opens it.
func (st *stableStore) rewrite() error {
	keys := make([]string, 0, len(st.kv))
	for k := range st.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = appendStable(b, []byte(k), st.kv[k])
	}
	tmp := filepath.Join(st.dir, stableTmpName)
	path := filepath.Join(st.dir, stableName)
	if err := writeFileSync(tmp, b); err != nil {
		return fmt.Errorf("wal: write stable: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("wal: write stable: %w", err)
	}
	if err := syncDir(st.dir); err != nil {
		return fmt.Errorf("wal: write stable: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: open stable: %w", err)
	}
	st.f, st.size, st.records = f, int64(len(b)), len(keys)
	return nil
}

func (st *stableStore) set(key, val []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return ErrClosed
	}
	if st.failed != nil {
		return st.failed
	}
	st.buf = appendStable(st.buf[:0], key, val)
	if _, err := st.f.WriteAt(st.buf, st.size); err != nil {
		if terr := st.f.Truncate(st.size); terr != nil {
			return st.fail(fmt.Errorf("%w: stable: write: %w; roll back: %w", ErrFailed, err, terr))
		}
		return fmt.Errorf("wal: stable: write: %w", err)
	}
	if err := syncWithFault(st.f, st.syncFault, st.noSync); err != nil {
		return st.fail(fmt.Errorf("%w: stable: sync: %w", ErrFailed, err))
	}
	st.size += int64(len(st.buf))
	st.records++
	st.kv[string(key)] = append([]byte{}, val...)
	return nil
}

// fail makes err (an ErrFailed) sticky and reports it to Options.OnFail,
// once for the whole Store.
func (st *stableStore) fail(err error) error {
	st.failed = err
	st.reportFail(err)
	return err
}

func (st *stableStore) reportFail(err error) {
	st.failOnce.Do(func() {
		if st.onFail != nil {
			st.onFail(err)
		}
	})
}

func (st *stableStore) get(key []byte) ([]byte, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil, ErrClosed
	}
	v, ok := st.kv[string(key)]
	if !ok {
		return nil, nil
	}
	return append([]byte{}, v...), nil
}

func (st *stableStore) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	if st.f == nil {
		return nil
	}
	err := st.f.Close()
	st.f = nil
	return err
}

func appendStable(dst, key, val []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = append(dst, val...)
	return sealRecord(dst, start)
}

func decodeStable(b []byte) (size int, key, val []byte, err error) {
	p, size, err := decodeRecord(b)
	if err != nil {
		return 0, nil, nil, err
	}
	n, i := binary.Uvarint(p)
	if i <= 0 || n > uint64(len(p)-i) {
		return 0, nil, nil, errMalformed
	}
	return size, p[i : i+int(n)], p[i+int(n):], nil
}
