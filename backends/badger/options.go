package badger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	bdg "github.com/dgraph-io/badger/v4"

	"github.com/strata-kv/strata/engine"
)

// Defaults used for zero Options fields. They target a small machine (two
// cores, a few GiB of memory) serving an etcd-like workload: many small
// writes, point reads and short range scans. Badger's own defaults (64 MiB
// memtables x 5, a 256 MiB block cache, every table index held in memory
// without bound, 1 GiB value log files, 4 compactors) are sized for Dgraph
// on a large server.
const (
	// DefaultMemTableSize is the size of one memtable. Badger refuses a
	// transaction whose estimated size reaches 15% of it (ErrTxnTooBig),
	// so 32 MiB admits batches of about 4.8 MiB: three times etcd's 1.5 MiB
	// request limit. Values stored in the value log count only as a
	// pointer towards that limit.
	DefaultMemTableSize = 32 << 20
	// DefaultNumMemtables is the number of memtables that may be full and
	// queued for flushing before writes stall; one more is being written.
	// Each takes about 1.3 x MemTableSize of memory.
	DefaultNumMemtables = 2
	// DefaultBlockCacheSize is the size of the cache of decompressed data
	// blocks.
	DefaultBlockCacheSize = 32 << 20
	// DefaultIndexCacheSize bounds the memory for table indexes and bloom
	// filters. Badger's default (0) keeps all of them in memory, which grows
	// with the data.
	DefaultIndexCacheSize = 16 << 20
	// DefaultValueThreshold is the value size from which a value is stored
	// in the value log instead of in the LSM tree: badger's maximum (and
	// own default), 1 MiB. With SyncWrites off, the value log is written
	// back to disk independently of the write-ahead log, and after a
	// machine crash a WAL entry can survive while the value it points to
	// does not (badger issue #1954): the key then reads an error, or, once
	// new values reuse the space, another value. A value inside the LSM tree
	// is part of its WAL entry, covered by the entry's checksum and its
	// transaction's commit marker, so only values of 1 MiB or more (above
	// most of etcd's, whose requests are limited to 1.5 MiB) are exposed.
	// The cost is compaction rewriting mid-sized values and counting them
	// fully against the transaction size limit. If MemTableSize is small,
	// the default is lowered to that limit (15% of MemTableSize), which
	// badger requires.
	DefaultValueThreshold = 1 << 20
	// DefaultValueLogFileSize is the size at which a value log file is
	// closed and a new one started. Value log garbage collection works file
	// by file and never on the file being written, so smaller files give
	// space back sooner. It must be at least engine.MaxValueSize: badger
	// refuses larger values.
	DefaultValueLogFileSize = 64 << 20
	// DefaultNumLevelZeroTables is the number of level 0 tables that
	// triggers a compaction into the next level. Few level 0 tables keep
	// reads and index memory low.
	DefaultNumLevelZeroTables = 3
	// DefaultNumLevelZeroTablesStall is the number of level 0 tables at
	// which writes stall until compaction catches up.
	DefaultNumLevelZeroTablesStall = 8
	// DefaultNumCompactors is the number of compaction goroutines. Badger
	// rejects 1 (compactor 0 only compacts level 0); 2 matches a two-core
	// machine.
	DefaultNumCompactors = 2
)

// Options configure a badger store. The zero value (and a nil *Options)
// selects every default.
type Options struct {
	// MemTableSize is the size in bytes of one memtable, and so of the
	// write-ahead log file behind it. It also bounds batches: Commit
	// returns engine.ErrBatchTooLarge for a batch whose badger size
	// estimate reaches 15% of it.
	// Default: DefaultMemTableSize (32 MiB).
	MemTableSize int64

	// NumMemtables is the number of full memtables that may wait for a
	// flush before writes stall.
	// Default: DefaultNumMemtables (2).
	NumMemtables int

	// BlockCacheSize is the size in bytes of the block cache.
	// Default: DefaultBlockCacheSize (32 MiB).
	BlockCacheSize int64

	// IndexCacheSize is the size in bytes of the cache for table indexes
	// and bloom filters.
	// Default: DefaultIndexCacheSize (16 MiB).
	IndexCacheSize int64

	// ValueThreshold is the size in bytes from which values are stored in
	// the value log rather than in the LSM tree. At most 1 MiB and at most
	// 15% of MemTableSize. Lower values cut compaction work for mid-sized
	// values at the crash-safety cost explained at DefaultValueThreshold.
	// Default: DefaultValueThreshold (1 MiB), or 15% of MemTableSize if
	// that is less.
	ValueThreshold int64

	// ValueLogFileSize is the size in bytes at which a value log file is
	// rotated. At least engine.MaxValueSize and below 2 GiB.
	// Default: DefaultValueLogFileSize (64 MiB).
	ValueLogFileSize int64

	// NumLevelZeroTables is the number of level 0 tables that starts a
	// compaction of level 0.
	// Default: DefaultNumLevelZeroTables (3).
	NumLevelZeroTables int

	// NumLevelZeroTablesStall is the number of level 0 tables at which
	// writes stall. It must exceed NumLevelZeroTables.
	// Default: DefaultNumLevelZeroTablesStall (8).
	NumLevelZeroTablesStall int

	// NumCompactors is the number of compaction goroutines, at least 2.
	// Default: DefaultNumCompactors (2).
	NumCompactors int

	// NoSync makes every commit a NoSync one and Sync do nothing: no
	// sync round runs (etcd's --unsafe-no-fsync). Unsafe: a crash of the
	// machine may lose any write.
	// Default: false.
	NoSync bool

	// Logger receives badger's log lines at the matching slog levels
	// (errors, warnings, info, debug).
	// Default: nil, which discards them.
	Logger *slog.Logger
}

// ErrInvalidOptions is wrapped by the errors of Options.Validate.
var ErrInvalidOptions = errors.New("badger: invalid options")

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
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.NumMemtables <= 0 {
		o.NumMemtables = DefaultNumMemtables
	}
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.IndexCacheSize <= 0 {
		o.IndexCacheSize = DefaultIndexCacheSize
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = min(DefaultValueThreshold, maxBatchSize(o.MemTableSize))
	}
	if o.ValueLogFileSize <= 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.NumLevelZeroTables <= 0 {
		o.NumLevelZeroTables = DefaultNumLevelZeroTables
	}
	if o.NumLevelZeroTablesStall <= 0 {
		o.NumLevelZeroTablesStall = max(DefaultNumLevelZeroTablesStall, o.NumLevelZeroTables+1)
	}
	if o.NumCompactors <= 0 {
		o.NumCompactors = DefaultNumCompactors
	}
}

// maxBatchSize is badger's transaction size limit for a memtable size.
func maxBatchSize(memTableSize int64) int64 { return 15 * memTableSize / 100 }

// Validate reports options that cannot work, with an error wrapping
// ErrInvalidOptions: the constraints badger does not check itself, or
// checks with a panic. It expects EnsureDefaults to have run.
func (o *Options) Validate() error {
	switch {
	case o.ValueLogFileSize < engine.MaxValueSize:
		return fmt.Errorf("%w: ValueLogFileSize %d is below engine.MaxValueSize (%d)",
			ErrInvalidOptions, o.ValueLogFileSize, engine.MaxValueSize)
	case o.NumLevelZeroTablesStall <= o.NumLevelZeroTables:
		return fmt.Errorf("%w: NumLevelZeroTablesStall %d must exceed NumLevelZeroTables %d",
			ErrInvalidOptions, o.NumLevelZeroTablesStall, o.NumLevelZeroTables)
	case o.NumCompactors < 2:
		return fmt.Errorf("%w: NumCompactors %d is below 2", ErrInvalidOptions, o.NumCompactors)
	}
	return nil
}

// badgerOptions builds the badger options for a store in dir. o must have
// had EnsureDefaults and Validate.
func (o *Options) badgerOptions(dir string) bdg.Options {
	bo := bdg.DefaultOptions(dir)
	bo.MemTableSize = o.MemTableSize
	bo.NumMemtables = o.NumMemtables
	bo.BlockCacheSize = o.BlockCacheSize
	bo.IndexCacheSize = o.IndexCacheSize
	bo.ValueThreshold = o.ValueThreshold
	bo.ValueLogFileSize = o.ValueLogFileSize
	bo.NumLevelZeroTables = o.NumLevelZeroTables
	bo.NumLevelZeroTablesStall = o.NumLevelZeroTablesStall
	bo.NumCompactors = o.NumCompactors
	// Durability is explicit: Commit with engine.Sync and DB.Sync make
	// commits durable themselves (see sync.go). With SyncWrites badger
	// would msync the write-ahead log after every request, NoSync ones too.
	bo.SyncWrites = false
	// The engine contract has no transactional conflicts: batches are
	// blind writes applied in commit order. Without conflict detection
	// badger neither tracks read keys nor aborts a commit whose range
	// delete read keys another commit wrote meanwhile.
	bo.DetectConflicts = false
	// Badger's metrics are process-wide expvar counters keyed by directory;
	// Strata reports its own statistics.
	bo.MetricsEnabled = false
	bo.NumVersionsToKeep = 1
	// Check the CRC of every value read from the value log, so that a
	// value lost in a machine crash (see DefaultValueThreshold) mostly
	// reads as an error rather than as garbage. Values there are at least
	// ValueThreshold bytes, which the CRC costs little next to.
	bo.VerifyValueChecksum = true
	// Everything else keeps badger's defaults: Snappy compression, 4 KiB
	// blocks, 1% bloom filter false positives, 2 MiB base tables, 10 MiB
	// base level, 7 levels.
	bo.Logger = nil
	if o.Logger != nil {
		bo.Logger = slogLogger{o.Logger}
	}
	return bo
}

// slogLogger adapts a *slog.Logger to badger's Logger interface.
type slogLogger struct{ l *slog.Logger }

var _ bdg.Logger = slogLogger{}

func (s slogLogger) log(level slog.Level, format string, args ...any) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	s.l.Log(context.Background(), level, msg, slog.String("engine", Name))
}

// Errorf implements bdg.Logger.
func (s slogLogger) Errorf(format string, args ...any) { s.log(slog.LevelError, format, args...) }

// Warningf implements bdg.Logger.
func (s slogLogger) Warningf(format string, args ...any) { s.log(slog.LevelWarn, format, args...) }

// Infof implements bdg.Logger.
func (s slogLogger) Infof(format string, args ...any) { s.log(slog.LevelInfo, format, args...) }

// Debugf implements bdg.Logger.
func (s slogLogger) Debugf(format string, args ...any) { s.log(slog.LevelDebug, format, args...) }
