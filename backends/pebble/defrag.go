package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/strata-kv/strata/engine"
)

// Bounds for a manual compaction of the whole keyspace. Pebble's Compact
// takes inclusive user-key bounds and needs start < end. Engine keys are
// non-empty, so "\x00" is <= every key; a run of MaxKeySize+1 0xff bytes is
// > every key of at most MaxKeySize bytes (including range-deletion end
// keys, which the engine validates the same way).
var (
	compactStart = []byte{0}
	compactEnd   = bytes.Repeat([]byte{0xff}, engine.MaxKeySize+1)
)

// Cleanup polling after a Defrag compaction: Pebble deletes the files a
// compaction made obsolete in a background job and offers no public way to
// wait for it.
const (
	cleanupPoll    = 10 * time.Millisecond
	cleanupMaxWait = 10 * time.Second
)

// Defrag implements engine.Defragmenter. It compacts the whole keyspace down
// to the bottom level, which drops deleted keys, range-deleted spans and
// overwritten versions that no open snapshot can still see, then waits
// (within ctx, and at most cleanupMaxWait) for Pebble to delete the
// obsolete files. Reads and writes go on meanwhile. Cancelling ctx, or
// closing the DB, abandons the wait for the compaction; a compaction already
// running finishes in the background.
func (d *DB) Defrag(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: defrag: %w", err)
	}
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()

	// Close cancels closeCtx before waiting for our read lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.closeCtx, cancel)
	defer stop()

	err = db.Compact(ctx, compactStart, compactEnd, true /* parallelize */)
	if err == nil {
		err = waitForCleanup(ctx, db)
	}
	if err != nil {
		if d.closeCtx.Err() != nil && errors.Is(err, context.Canceled) {
			return fmt.Errorf("pebble: defrag: %w", engine.ErrClosed)
		}
		return fmt.Errorf("pebble: defrag: %w", err)
	}
	return nil
}

// waitForCleanup waits until no obsolete sstable or blob file is left on
// disk, ctx is done or cleanupMaxWait has passed. Under a steady stream of
// writes background compactions keep making files obsolete, hence the cap.
// Files still held by open iterators ("zombies") are not waited for.
func waitForCleanup(ctx context.Context, db *pdb.DB) error {
	deadline := time.NewTimer(cleanupMaxWait)
	defer deadline.Stop()
	tick := time.NewTicker(cleanupPoll)
	defer tick.Stop()
	for {
		m := db.Metrics()
		if m.Table.Local.ObsoleteSize == 0 && m.BlobFiles.Local.ObsoleteSize == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
	}
}
