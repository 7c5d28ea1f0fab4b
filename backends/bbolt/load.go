package bbolt

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/strata-kv/strata/engine"
)

var _ engine.BulkLoader = (*DB)(nil)

// loadTxBytes is how many bytes of keys and values a loader writes in one
// transaction. Larger transactions rewrite the rightmost pages and the
// meta page fewer times; the open transaction's values are held in memory
// (bbolt keeps references to them until the commit).
const loadTxBytes = 64 << 20

// loadArenaChunk is the size of the chunks values are copied into.
const loadArenaChunk = 1 << 20

// loader fills an empty DB in large transactions, without syncing until
// Finish. It holds the DB's write lock from NewLoader to Finish or Abort.
type loader struct {
	d     *DB
	tx    *bolt.Tx
	bkt   *bolt.Bucket
	n     int
	arena []byte
	state engine.LoadState
}

// NewLoader implements engine.BulkLoader. Commits wait until the load is
// finished or aborted.
func (d *DB) NewLoader() (engine.Loader, error) {
	if err := d.lockFlushed(); err != nil {
		return nil, err
	}
	d.beginWrite()
	d.cur.NoSync = true
	l := &loader{d: d}
	l.state.Start(&d.load, l)
	return l, nil
}

func (l *loader) begin() error {
	tx, err := l.d.cur.Begin(true)
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return engine.ErrClosed
		}
		return fmt.Errorf("bbolt: load: %w", err)
	}
	l.tx, l.bkt = tx, tx.Bucket(bucketName)
	l.bkt.FillPercent = l.d.opts.FillPercent
	return nil
}

// Set implements engine.Loader.
func (l *loader) Set(key, value []byte) error {
	if err := l.state.Next(key, value); err != nil {
		return err
	}
	if l.tx == nil {
		if err := l.begin(); err != nil {
			return err
		}
	}
	if len(value) > cap(l.arena)-len(l.arena) {
		l.arena = make([]byte, 0, max(loadArenaChunk, len(value)))
	}
	start := len(l.arena)
	l.arena = append(l.arena, value...)
	if err := l.bkt.Put(key, l.arena[start:len(l.arena):len(l.arena)]); err != nil {
		return fmt.Errorf("bbolt: load %q: %w", key, err)
	}
	l.n += len(key) + len(value)
	if l.n >= loadTxBytes {
		return l.commit()
	}
	return nil
}

func (l *loader) commit() error {
	if l.tx == nil {
		return nil
	}
	tx := l.tx
	l.tx, l.bkt, l.n, l.arena = nil, nil, 0, nil
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("bbolt: load: commit: %w", err)
	}
	return nil
}

// Finish implements engine.Loader: it commits and syncs the file.
func (l *loader) Finish() error {
	if l.state.Ended() {
		return engine.ErrLoadEnded
	}
	err := l.commit()
	if err == nil {
		if err = l.d.cur.Sync(); err != nil {
			err = fmt.Errorf("bbolt: load: sync: %w", err)
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
	if l.tx != nil {
		l.tx.Rollback()
		l.tx = nil
	}
	l.release()
}

func (l *loader) release() {
	l.state.End()
	l.d.endWrite()
	l.d.mu.RUnlock()
	l.d.writeMu.Unlock()
}
