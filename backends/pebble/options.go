package pebble

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"
)

// Defaults used for zero Options fields. They target a small machine (two
// cores, a few GiB of memory) serving an etcd-like workload: many small
// writes, point reads and short range scans.
const (
	// DefaultCacheSize is the block cache size. Pebble's own default (8 MiB)
	// is tuned for tests; 64 MiB keeps the index and filter blocks of a few
	// GiB of data resident without weighing on a small machine.
	DefaultCacheSize = 64 << 20
	// DefaultMemTableSize is the steady-state memtable size (Pebble's
	// default). Larger memtables flush less often, but they cost memory and
	// disk: Pebble preallocates each WAL file to 1.1 * MemTableSize and keeps
	// up to MemTableStopWritesThreshold+1 old WAL files for reuse, a fixed
	// disk overhead that Defrag cannot give back. At 4 MiB that overhead
	// stays around 15 MiB. Memtables start at 256 KiB and double up to this
	// size, so short-lived stores stay small.
	DefaultMemTableSize = 4 << 20
	// DefaultMemTableStopWritesThreshold is the number of memtables that may
	// queue for flushing before writes stall (Pebble's default): one being
	// flushed while the next fills.
	DefaultMemTableStopWritesThreshold = 2
	// DefaultMaxConcurrentCompactions caps background compactions. Pebble
	// runs one normally and raises the count up to this cap when L0 or
	// compaction debt builds up; two matches a two-core machine.
	DefaultMaxConcurrentCompactions = 2
	// DefaultMaxOpenFiles is the soft limit on open sstable files (Pebble's
	// default), well under common ulimit settings.
	DefaultMaxOpenFiles = 1000
)

// Options configure a pebble store. The zero value (and a nil *Options)
// selects every default.
type Options struct {
	// CacheSize is the size in bytes of the block cache.
	// Default: DefaultCacheSize (64 MiB).
	CacheSize int64

	// MemTableSize is the steady-state size in bytes of one memtable.
	// Batches of at least half this size bypass the memtable and are
	// flushed as their own table.
	// Default: DefaultMemTableSize (4 MiB).
	MemTableSize uint64

	// MemTableStopWritesThreshold is the number of queued memtables at which
	// writes stall until a flush completes. At least 2: one being flushed
	// while the next fills.
	// Default: DefaultMemTableStopWritesThreshold (2).
	MemTableStopWritesThreshold int

	// MaxConcurrentCompactions is the largest number of background
	// compactions Pebble may run at once; it runs one when it is keeping up.
	// Default: DefaultMaxConcurrentCompactions (2).
	MaxConcurrentCompactions int

	// MaxOpenFiles is a soft limit on the number of files the store keeps
	// open.
	// Default: DefaultMaxOpenFiles (1000).
	MaxOpenFiles int

	// WALMinSyncInterval, when positive, delays WAL fsyncs so that they are
	// at least this far apart, letting more concurrent Sync commits share
	// one fsync at the cost of commit latency (Pebble suggests 500µs).
	// Default: 0, no delay.
	WALMinSyncInterval time.Duration

	// NoSync makes every commit a NoSync one and Sync do nothing, so the
	// store never waits for its WAL's fsync (etcd's --unsafe-no-fsync).
	// Unsafe: a crash of the machine may lose any write.
	// Default: false.
	NoSync bool

	// Logger receives Pebble's log lines: general messages at Info, errors at
	// Error, and flush/compaction/WAL events at Debug.
	// Default: nil, which discards them.
	Logger *slog.Logger
}

// maxMemTableSize bounds MemTableSize: Pebble refuses 4 GiB and more.
const maxMemTableSize = 4 << 30

// ErrInvalidOptions is wrapped by the errors of Options.Validate.
var ErrInvalidOptions = errors.New("pebble: invalid options")

// Clone returns a copy of o; a nil o gives zero Options.
func (o *Options) Clone() *Options {
	if o == nil {
		return &Options{}
	}
	c := *o
	return &c
}

// EnsureDefaults sets the zero (or negative) fields of o to their default
// values. Open calls it on its own copy of the caller's options.
func (o *Options) EnsureDefaults() {
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MemTableStopWritesThreshold <= 0 {
		o.MemTableStopWritesThreshold = DefaultMemTableStopWritesThreshold
	}
	if o.MaxConcurrentCompactions <= 0 {
		o.MaxConcurrentCompactions = DefaultMaxConcurrentCompactions
	}
	if o.MaxOpenFiles <= 0 {
		o.MaxOpenFiles = DefaultMaxOpenFiles
	}
}

// Validate reports options that cannot work (ones Pebble would refuse to
// open with), with an error wrapping ErrInvalidOptions. It expects
// EnsureDefaults to have run.
func (o *Options) Validate() error {
	switch {
	case o.MemTableSize >= maxMemTableSize:
		return fmt.Errorf("%w: MemTableSize %d is not below %d", ErrInvalidOptions, o.MemTableSize, uint64(maxMemTableSize))
	case o.MemTableStopWritesThreshold < 2:
		return fmt.Errorf("%w: MemTableStopWritesThreshold %d is below 2", ErrInvalidOptions, o.MemTableStopWritesThreshold)
	}
	return nil
}

// pebbleOptions builds the Pebble options for o, which must have had
// EnsureDefaults and Validate. cache is the block cache to use; the caller keeps its own
// reference and must Unref it.
func (o *Options) pebbleOptions(cache *pdb.Cache) *pdb.Options {
	maxCompactions := o.MaxConcurrentCompactions
	po := &pdb.Options{
		Cache: cache,
		// Pinned by name; see the package documentation.
		FormatMajorVersion:          pdb.FormatValueSeparation,
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: o.MemTableStopWritesThreshold,
		MaxOpenFiles:                o.MaxOpenFiles,
		CompactionConcurrencyRange: func() (int, int) {
			return 1, maxCompactions
		},
		Logger: newLogger(o.Logger, false),
	}
	el := pdb.EventListener{}
	if o.Logger != nil {
		// Flushes, compactions, WAL and table events at Debug; background
		// errors and write stalls through the logger's own levels.
		el = pdb.MakeLoggingEventListener(newLogger(o.Logger, true))
	}
	// Pebble's default for a damaged file is to stop the process
	// (Logger.Fatalf); the read fails with a corruption error anyway, which
	// Strata reports (engine.ErrCorrupt, the CORRUPT alarm).
	el.DataCorruption = func(info pdb.DataCorruptionInfo) {
		if o.Logger != nil {
			o.Logger.Error("pebble: on-disk corruption", "path", info.Path, "error", info.Details)
		}
	}
	po.EventListener = &el
	if d := o.WALMinSyncInterval; d > 0 {
		po.WALMinSyncInterval = func() time.Duration { return d }
	}
	// Everything else keeps Pebble's defaults: Snappy compression, 2 MiB L0
	// target files doubling per level, 64 MiB Lbase, L0 compaction at 4
	// sublevels and write stop at 12, value separation off (Strata's values
	// are mostly small MVCC records).
	return po
}
