package badger

import (
	"fmt"

	bdg "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"

	"github.com/strata-kv/strata/engine"
)

var _ engine.BulkLoader = (*DB)(nil)

// loadBufBytes is how many bytes of encoded keys and values a loader
// hands to badger's StreamWriter at a time.
const loadBufBytes = 16 << 20

// loadVersion is the badger version (commit timestamp) of every loaded key:
// the first a transaction would get. Later commits get higher ones.
const loadVersion = 1

// loader fills an empty store with badger's StreamWriter, which builds
// sorted tables and writes them straight into the bottom level: no
// write-ahead log, no memtables, no compactions. It holds the store's
// commit lock from NewLoader to Finish or Abort.
type loader struct {
	d     *DB
	db    *bdg.DB
	sw    *bdg.StreamWriter
	buf   *z.Buffer
	kv    pb.KV
	state engine.LoadState
}

// NewLoader implements engine.BulkLoader. Commits wait until the load is
// finished or aborted.
func (d *DB) NewLoader() (engine.Loader, error) {
	db, err := d.acquire()
	if err != nil {
		return nil, err
	}
	d.commitMu.Lock()
	sw := db.NewStreamWriter()
	// Prepare drops what the store holds: NewLoader's caller guarantees
	// it is empty.
	if err := sw.Prepare(); err != nil {
		sw.Cancel()
		d.commitMu.Unlock()
		d.mu.RUnlock()
		return nil, fmt.Errorf("badger: load: %w", err)
	}
	l := &loader{d: d, db: db, sw: sw, buf: z.NewBuffer(loadBufBytes+loadBufBytes/8, "strata.load")}
	l.state.Start(&d.load, l)
	return l, nil
}

// Set implements engine.Loader.
func (l *loader) Set(key, value []byte) error {
	if err := l.state.Next(key, value); err != nil {
		return err
	}
	l.kv.Key = appendKey(l.kv.Key[:0], key)
	l.kv.Value = value
	l.kv.Version = loadVersion
	bdg.KVToBuffer(&l.kv, l.buf)
	if l.buf.LenNoPadding() >= loadBufBytes {
		return l.write()
	}
	return nil
}

// write hands the buffered keys to the StreamWriter, which copies them,
// once the space guard has been charged for them: the StreamWriter writes
// its tables through memory-mapped files (see space.go). A quarter is
// added for the tables' per-entry offsets, block index and bloom filter.
func (l *loader) write() error {
	n := int64(l.buf.LenNoPadding())
	if n == 0 {
		return nil
	}
	if err := l.d.space.take(l.db, n+n/4); err != nil {
		l.buf.Reset()
		return fmt.Errorf("badger: load: %w", err)
	}
	err := l.sw.Write(l.buf)
	l.buf.Reset()
	if err != nil {
		return fmt.Errorf("badger: load: %w", err)
	}
	return nil
}

// Finish implements engine.Loader: the tables are written and synced, the
// manifest and the directory synced.
func (l *loader) Finish() error {
	if l.state.Ended() {
		return engine.ErrLoadEnded
	}
	err := l.write()
	if err == nil {
		if err = l.sw.Flush(); err != nil {
			err = fmt.Errorf("badger: load: %w", err)
		}
	} else {
		l.sw.Cancel()
	}
	if err == nil {
		// Values of ValueThreshold or more went into the value log.
		if err = l.db.Sync(); err != nil {
			err = fmt.Errorf("badger: load: sync: %w", err)
		}
	}
	l.release()
	return err
}

// Abort implements engine.Loader.
func (l *loader) Abort() {
	if l.state.Ended() {
		return
	}
	l.sw.Cancel()
	l.release()
}

func (l *loader) release() {
	l.state.End()
	_ = l.buf.Release() // Go memory (no jemalloc build tag): it cannot fail
	l.d.commitMu.Unlock()
	l.d.mu.RUnlock()
}
