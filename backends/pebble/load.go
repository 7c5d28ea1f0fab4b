package pebble

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/strata-kv/strata/engine"
)

var _ engine.BulkLoader = (*DB)(nil)

// loadTableBytes is the size at which a loader starts a new table.
const loadTableBytes = 64 << 20

// loadDirName is the directory, inside the store's, where a loader writes
// its tables before ingesting them; Open removes one left by a crash.
const loadDirName = "strata-load"

// loader fills an empty store by writing sorted tables and ingesting them
// (they go to the bottom level: no write-ahead log, no memtable flushes,
// no compactions). It holds the store's read lock from NewLoader to
// Finish or Abort.
type loader struct {
	d     *DB
	db    *pdb.DB
	dir   string
	wopts sstable.WriterOptions
	w     *sstable.Writer
	paths []string
	state engine.LoadState
}

// NewLoader implements engine.BulkLoader.
func (d *DB) NewLoader() (engine.Loader, error) {
	db, err := d.acquire()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(d.dir, loadDirName)
	if err := os.RemoveAll(dir); err == nil {
		err = os.Mkdir(dir, 0o700)
	}
	if err != nil {
		d.mu.RUnlock()
		return nil, fmt.Errorf("pebble: load: %w", err)
	}
	d.popts.EnsureDefaults()
	l := &loader{d: d, db: db, dir: dir,
		wopts: d.popts.MakeWriterOptions(len(d.popts.Levels)-1, db.TableFormat())}
	l.state.Start(&d.load, l)
	return l, nil
}

// Set implements engine.Loader.
func (l *loader) Set(key, value []byte) error {
	if err := l.state.Next(key, value); err != nil {
		return err
	}
	if l.w == nil {
		path := filepath.Join(l.dir, fmt.Sprintf("%06d.sst", len(l.paths)))
		f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("pebble: load: %w", err)
		}
		l.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), l.wopts)
		l.paths = append(l.paths, path)
	}
	if err := l.w.Set(key, value); err != nil {
		return fmt.Errorf("pebble: load: %w", err)
	}
	if l.w.Raw().EstimatedSize() >= loadTableBytes {
		return l.closeTable()
	}
	return nil
}

func (l *loader) closeTable() error {
	if l.w == nil {
		return nil
	}
	w := l.w
	l.w = nil
	if err := w.Close(); err != nil {
		return fmt.Errorf("pebble: load: %w", err)
	}
	return nil
}

// Finish implements engine.Loader: the tables are ingested, which syncs
// them and the store's manifest.
func (l *loader) Finish() error {
	if l.state.Ended() {
		return engine.ErrLoadEnded
	}
	err := l.closeTable()
	if err == nil && len(l.paths) > 0 {
		if err = l.db.Ingest(context.Background(), l.paths); err != nil {
			err = fmt.Errorf("pebble: load: ingest: %w", err)
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
	if l.w != nil {
		_ = l.w.Close() // its table is removed with the directory
		l.w = nil
	}
	l.release()
}

func (l *loader) release() {
	l.state.End()
	os.RemoveAll(l.dir) // ingested tables were linked into the store
	l.d.mu.RUnlock()
}
