package badger

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
)

// Free space
//
// Badger writes its write-ahead logs (the ".mem" files behind the
// memtables), its value log files and its tables through memory-mapped
// files (checked against v4.9.6 memtable.go, value.go, table/table.go and
// ristretto's z.OpenMmapFile): each is created with ftruncate, sparse, at
// 2 x MemTableSize, 2 x ValueLogFileSize or the table's size, then filled
// by copying into the mapping. No disk block is allocated before the first
// store to a page, and when the file system cannot allocate one the store
// faults: SIGBUS, which the Go runtime turns into "fatal error: fault" and
// the death of the process. An error is never returned. The failing store
// may be badger's write goroutine filling the write-ahead log, a memtable
// flush or a compaction writing a table, or Close flushing the memtables.
//
// fallocate(2) on each new file before badger writes to it would turn that
// into ENOSPC, but badger creates, maps and starts writing a file in one
// call on its own goroutine, with no hook, so it cannot be done without a
// race; badger has no option to write without mmap either. So the engine
// keeps badger away from a full disk instead (spaceGuard): every commit is
// charged with the bytes it may write (its entries with badger's overhead,
// for the write-ahead log and the value log both), and while the charges
// since the last measure are within a budget, and that measure is recent,
// nothing else happens. Otherwise the free space is measured (statfs) and
// compared with what badger may still write without further commits (the
// reserve):
//
//   - a level 0 table for every memtable: the active one as large as it
//     can grow (MemTableSize plus one batch), the full ones waiting for
//     their flush as large as their write-ahead logs;
//   - a compaction of level 0 into the base level (both rewritten whole)
//     and one other compaction, of a table with the tables of the next
//     level it may overlap (a second compactor runs it meanwhile);
//   - spaceSlack for the rest: new files' first pages, the manifest, the
//     discard statistics, page rounding.
//
// A commit that does not fit in the free space minus the reserve fails
// with an error wrapping syscall.ENOSPC ("no space left on device"), as a
// failed write(2) would, before badger sees it: reads go on, and the
// commit can be tried again once space is freed. The budget granted at a
// measure is at most spaceChunk and lasts at most spaceMaxAge, so that the
// check stays cheap (one statfs, one listing of the directory and
// badger's level sizes, about 20us on a small store, per spaceChunk bytes
// of commits or per spaceMaxAge) while another process filling the disk
// can make the engine overrun its estimate by no more than the budget,
// and only within spaceMaxAge of a measure.
// Defrag checks for the space its rewrites take before each step, and
// Restore and bulk loads charge what they write like commits.
//
// The reserve is an estimate of badger's behaviour, not a bound badger
// guarantees: a compaction larger than estimated on a disk filled to the
// reserve can still fault.

const (
	// spaceChunk is the most that commits may charge between two
	// measures of the free space.
	spaceChunk = 1 << 20
	// spaceMaxAge is how long a measure of the free space stands.
	spaceMaxAge = time.Second
	// spaceSlack is reserved on top of the flushes and compactions
	// estimated.
	spaceSlack = 8 << 20
	// entryOverhead bounds what badger adds to an entry's key and value
	// in the write-ahead log or the value log: a header of at most 22
	// bytes, the 8-byte version appended to the key and a 4-byte CRC.
	entryOverhead = 48
	// txnOverhead bounds a transaction's commit marker entry.
	txnOverhead = 64
)

// spaceGuard keeps the free space badger's memory-mapped files need. See
// the comment at the top of this file. It is safe for concurrent use.
type spaceGuard struct {
	dir string
	// walMax is the most a write-ahead log is filled: MemTableSize, at
	// which badger starts a new one, plus one batch.
	walMax int64

	mu sync.Mutex
	// budget is what commits may still charge before the next measure,
	// if it is before spaceMaxAge since the last one, measured.
	budget   int64
	measured time.Time
}

func newSpaceGuard(dir string, o *Options) *spaceGuard {
	return &spaceGuard{
		dir:    dir,
		walMax: o.MemTableSize + maxBatchSize(o.MemTableSize),
	}
}

// entryCost is the charge for an entry with key k and value v: written
// once to the write-ahead log, or to the value log with a pointer in the
// write-ahead log, with the namespace prefix added to k.
func entryCost(k, v []byte) int64 {
	return int64(2*(len(k)+1+entryOverhead) + len(v))
}

// take charges n bytes about to be written, or returns an error wrapping
// syscall.ENOSPC when they do not fit beside the reserve.
func (g *spaceGuard) take(db *bdg.DB, n int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n <= g.budget && time.Since(g.measured) < spaceMaxAge {
		g.budget -= n
		return nil
	}
	g.budget = 0
	spare, err := g.spare(db, n)
	if err != nil {
		return err
	}
	g.budget = min(spare-n, spaceChunk)
	g.measured = time.Now()
	return nil
}

// ensure returns an error wrapping syscall.ENOSPC unless n bytes fit
// beside the reserve now. It charges nothing: it is for rewrites whose
// space is given back when they end (Defrag's).
func (g *spaceGuard) ensure(db *bdg.DB, n int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, err := g.spare(db, n)
	return err
}

// spare measures the free space beyond the reserve and checks that n
// bytes fit in it. g.mu is held.
func (g *spaceGuard) spare(db *bdg.DB, n int64) (int64, error) {
	avail, ok, err := freeSpace(g.dir)
	if err != nil {
		return 0, fmt.Errorf("free space on %s: %w", g.dir, err)
	}
	if !ok {
		return spaceChunk + n, nil
	}
	reserve, err := g.reserve(db)
	if err != nil {
		return 0, fmt.Errorf("free space on %s: %w", g.dir, err)
	}
	if avail-reserve < n {
		return 0, fmt.Errorf("%d bytes free on the disk of %s, %d needed for %d bytes of writes and for badger's flushes and compactions: %w",
			avail, g.dir, reserve+n, n, syscall.ENOSPC)
	}
	return avail - reserve, nil
}

// reserve estimates what badger may write without further commits: see
// the comment at the top of this file.
func (g *spaceGuard) reserve(db *bdg.DB) (int64, error) {
	ents, err := os.ReadDir(g.dir)
	if err != nil {
		return 0, err
	}
	// The newest write-ahead log is the active memtable's, the others
	// wait for their flush.
	var newest uint64
	var newestSize, waiting int64
	for _, e := range ents {
		n, ok := fileNumber(e.Name(), memExt)
		if !ok {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed meanwhile
		}
		if err != nil {
			return 0, err
		}
		size := diskUsage(fi)
		waiting += size
		if n >= newest {
			newest, newestSize = n, size
		}
	}
	flush := g.walMax + waiting - newestSize
	return flush + compactionReserve(db.Levels(), db.Opts().LevelSizeMultiplier) + spaceSlack, nil
}

// compactionReserve estimates the space the compactions badger may run
// at once take: one of level 0 into the base level, which rewrites both
// whole (level 0 with the tables the flushes add, whose space the flush
// reserve covers and their write-ahead logs give back), and the largest other one, of a table of level i with the tables
// of level i+1 it overlaps (at most mult, the ratio of the levels' sizes,
// of level i+1's table size, or the whole level). A compaction frees its
// input only when it ends.
func compactionReserve(levels []bdg.LevelInfo, mult int) int64 {
	var l0, base, other int64
	for i, l := range levels {
		switch {
		case i == 0:
			l0 = l.Size
		case l.IsBaseLevel:
			base = l.Size
		}
		if i == 0 || l.Size == 0 || i+1 == len(levels) {
			continue
		}
		next := levels[i+1]
		other = max(other, min(l.Size, 2*l.TargetFileSize)+min(next.Size, int64(mult)*next.TargetFileSize))
	}
	return l0 + base + other
}
