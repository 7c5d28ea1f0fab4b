package badger

import (
	"context"
	"errors"
	"fmt"
	"time"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/strata-kv/strata/engine"
)

// gcDiscardRatio is the share of a value log file that must be garbage for
// value log GC to rewrite it (badger's recommendation).
const gcDiscardRatio = 0.5

// Defrag implements engine.Defragmenter. Badger reclaims space in two
// places, and Defrag drives both:
//
//  1. The LSM tree drops deleted keys and overwritten versions only when a
//     compaction merges a tombstone with the data it shadows. Defrag first
//     flushes the memtables (where recent tombstones sit) to level 0, then
//     flattens the tree (bdg.DB.Flatten) into one level, which merges every
//     tombstone with its data. Versions an open snapshot can still read are
//     kept.
//  2. Values in the value log are freed only by value log GC, which picks
//     files using the discard statistics those compactions produced and
//     rewrites their live values elsewhere. Defrag runs it until no file is
//     at least half garbage. The value log file being written is never
//     collected.
//
// Reads and writes go on meanwhile, except during the first step: badger's
// DropPrefix, which does the flush, turns commits away (Commit retries
// them) and holds the memtable lock that point lookups and new iterators
// take, while it flushes the memtables and compacts level 0 into the level
// below. That pause lasts as long as that compaction, which rewrites the
// flushed memtables together with the tables of the next level their keys
// overlap. Each step runs to its end once started:
// cancelling ctx, or closing the DB, makes Defrag return at once, and the
// work in progress stops at the next step. Close waits for it.
func (d *DB) Defrag(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badger: defrag: %w", err)
	}
	db, err := d.acquire()
	if err != nil {
		return err
	}
	// From here the read lock belongs to the worker goroutine (or is
	// released on the early returns): Close waits for the step in
	// progress, which cannot be interrupted.
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.closeCtx, cancel)
	select {
	case d.defragSem <- struct{}{}:
	case <-ctx.Done():
		stop()
		cancel()
		d.mu.RUnlock()
		return d.defragError(ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			stop()
			cancel()
			<-d.defragSem
			d.mu.RUnlock()
		}()
		done <- d.defrag(ctx, db)
	}()
	select {
	case err := <-done:
		return d.defragError(err)
	case <-ctx.Done():
		return d.defragError(ctx.Err())
	}
}

func (d *DB) defragError(err error) error {
	switch {
	case err == nil:
		return nil
	case d.closeCtx.Err() != nil && errors.Is(err, context.Canceled):
		return fmt.Errorf("badger: defrag: %w", engine.ErrClosed)
	}
	return fmt.Errorf("badger: defrag: %w", err)
}

// defrag runs the steps of Defrag, checking ctx between them.
func (d *DB) defrag(ctx context.Context, db *bdg.DB) error {
	if err := flushMemtables(db); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Flatten rewrites the tree, and value log GC a value log file,
	// before giving the old files back: on a disk without room for that,
	// badger's memory-mapped writes would fault (see space.go).
	if err := d.space.ensure(db, treeSize(db)); err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	if err := db.Flatten(d.opts.NumCompactors); err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.space.ensure(db, d.opts.ValueLogFileSize); err != nil {
			return fmt.Errorf("value log gc: %w", err)
		}
		err := db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			continue // a file was rewritten; there may be more
		case errors.Is(err, bdg.ErrNoRewrite):
			return nil
		default:
			return fmt.Errorf("value log gc: %w", err)
		}
	}
}

// treeSize is the size of the tables of every level of the LSM tree.
func treeSize(db *bdg.DB) int64 {
	var n int64
	for _, l := range db.Levels() {
		n += l.Size
	}
	return n
}

// flushMemtables makes badger write its memtables to level 0 tables.
// Badger exports no flush; DropPrefix flushes every memtable before it
// drops a prefix from the tables, but only when some key has the prefix.
// So a marker key outside the engine keyspace is written and then dropped.
// DropPrefix turns commits away with bdg.ErrBlockedWrites while it runs,
// which Commit retries.
func flushMemtables(db *bdg.DB) error {
	wait := blockedRetryMin
	for {
		err := db.Update(func(txn *bdg.Txn) error { return txn.Set(flushMarker, nil) })
		if err == nil {
			break
		}
		if !errors.Is(err, bdg.ErrBlockedWrites) {
			return fmt.Errorf("flush: %w", err)
		}
		time.Sleep(wait)
		wait = min(2*wait, blockedRetryMax)
	}
	if err := db.DropPrefix(flushMarker); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
