package badger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/strata-kv/strata/engine"
)

// Durability
//
// The store runs with badger's SyncWrites off, so a commit returns once its
// entries are in badger's memory-mapped write-ahead log (the ".mem" file
// behind the active memtable) and, for large values, in the memory-mapped
// value log. That survives a crash of the process (the pages are in the
// kernel's page cache) but not of the machine. Commit with engine.Sync and
// DB.Sync then run a sync round.
//
// badger's DB.Sync alone is not enough (checked against v4.9.6 db.go,
// memtable.go, value.go and ristretto's z.MmapFile). It msyncs the active
// memtable's WAL and the newest value log file, which covers what the
// current memtable holds. But when a memtable fills up, badger moves it to
// the immutable list and starts a new WAL file without syncing the old one
// (logFile.doneWriting syncs only with SyncWrites); the old WAL stays the
// only copy of its entries until the flush to a level 0 table completes. A
// NoSync commit that landed in it would not be made durable by a later
// DB.Sync, yet a later synced commit would be, losing the order of commits
// on a machine crash. Value log files, in contrast, are msynced by
// z.MmapFile.Truncate when badger rotates them. Nor does badger fsync the
// directory after creating WAL and value log files (z.OpenMmapFile's
// SyncDir is skipped for files created with a size) or level 0 tables from
// memtable flushes.
//
// A sync round (durableState.sync) therefore:
//
//  1. lists the directory and fsyncs, through a file descriptor of its own,
//     every WAL file but the newest (the active one) that it has not synced
//     since it became immutable;
//  2. calls badger's DB.Sync for the active WAL and the newest value log
//     file;
//  3. fsyncs the directory when files appeared since the last round.
//
// Any WAL file older than the newest one listed is immutable: badger writes
// from a single goroutine and creates the next WAL only after the last
// write to the previous one. A WAL file deleted meanwhile has been flushed
// to a level 0 table, which badger msyncs before it deletes the WAL.
//
// What a round cannot do is order the kernel's write-back of the mapped
// pages before it runs: after a machine crash, NoSync commits (and a Sync
// commit not yet acknowledged) may be lost out of order when badger
// switched WAL files since the last round, and a WAL entry may survive
// while the value log bytes it points to do not (badger issue #1954). The
// latter is why values stay in the LSM tree, inside the WAL entry, up to
// 1 MiB by default (Options.ValueThreshold).
//
// Group commit: concurrent callers share rounds through syncGroup, so a
// burst of synced commits costs about two rounds of fsyncs, not one each.

// syncGroup runs a sync function for concurrent callers, sharing each run
// among the callers that arrived before it started. A caller's sync starts
// after its call, which makes it cover every commit that returned before
// the call.
type syncGroup struct {
	mu sync.Mutex
	// cond is signalled when a round finishes. Its L is mu.
	cond    *sync.Cond
	running bool
	// next is the round that callers arriving now join: it starts when
	// the running round (if any) is over. nil when nobody waits.
	next *syncRound
}

type syncRound struct {
	done bool
	err  error
}

// do runs fn, or waits for a run of fn that starts after do was called,
// and returns that run's error.
func (g *syncGroup) do(fn func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	if g.next == nil {
		g.next = &syncRound{}
	}
	r := g.next
	for g.running && !r.done {
		g.cond.Wait()
	}
	if r.done {
		return r.err
	}
	// Lead round r. Later callers join a new round.
	g.next = nil
	g.running = true
	g.mu.Unlock()
	err := errors.New("badger: sync: panicked")
	defer func() {
		g.mu.Lock()
		r.done, r.err = true, err
		g.running = false
		g.cond.Broadcast()
	}()
	err = fn()
	return err
}

// memExt is the suffix of badger's write-ahead log (memtable) files, named
// by a decimal file number.
const memExt = ".mem"

// durableState is what sync rounds remember between rounds. Only the
// running round of DB.syncs uses it.
type durableState struct {
	dir string
	// synced holds the numbers of the immutable WAL files fsynced since
	// they became immutable.
	synced map[uint64]struct{}
	// names holds the directory's entries at the last directory fsync.
	names map[string]struct{}
}

func newDurableState(dir string) durableState {
	return durableState{dir: dir, synced: make(map[uint64]struct{})}
}

// sync makes every commit that returned before it was called durable. See
// the comment at the top of this file.
func (s *durableState) sync(db *bdg.DB) error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("badger: sync: %w", err)
	}
	names := make(map[string]struct{}, len(ents))
	mems := make(map[uint64]string)
	var newestMem uint64
	for _, e := range ents {
		name := e.Name()
		names[name] = struct{}{}
		if n, ok := fileNumber(name, memExt); ok {
			mems[n] = name
			newestMem = max(newestMem, n)
		}
	}

	for n, name := range mems {
		if _, done := s.synced[n]; done || n == newestMem {
			continue
		}
		if err := fsyncFile(filepath.Join(s.dir, name)); err != nil {
			return fmt.Errorf("badger: sync: %w", err)
		}
		s.synced[n] = struct{}{}
	}
	for n := range s.synced {
		if _, ok := mems[n]; !ok {
			delete(s.synced, n)
		}
	}

	if err := db.Sync(); err != nil {
		return fmt.Errorf("badger: sync: %w", err)
	}

	for name := range names {
		if _, ok := s.names[name]; !ok {
			if err := engine.SyncDir(s.dir); err != nil {
				return fmt.Errorf("badger: sync: directory: %w", err)
			}
			s.names = names
			break
		}
	}
	return nil
}

// fileNumber parses badger file names such as "000012.mem".
func fileNumber(name, ext string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || base == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 64)
	return n, err == nil
}

// fsyncFile fsyncs the file at path. A file that no longer exists is
// skipped: badger deletes a WAL only after flushing it to a synced table.
func fsyncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
