package engine

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"time"
)

// Options are the settings every engine understands. Engine packages offer
// finer options of their own through their Open functions.
type Options struct {
	// CacheSize is the block or page cache budget in bytes for engines that
	// keep one. Zero picks the engine's Strata default.
	CacheSize int64
	// Logger receives the engine's own log lines. Nil discards them.
	Logger *slog.Logger
	// NoSync makes every Commit a NoSync one and Backend.Sync do nothing,
	// so the engine never waits for the disk (etcd's --unsafe-no-fsync,
	// which opens bbolt with NoSync). Unsafe: a crash of the machine may
	// lose any write. The default value is false.
	NoSync bool
	// Verify makes Open check the engine's files whole before it returns
	// (block checksums, page structure), as far as the engine can: damage
	// fails Open with an error wrapping ErrCorrupt. It costs a read of
	// the whole store (etcd's InitialCorruptCheck feature gate sets it).
	Verify bool
	// Mlock locks the engine's memory-mapped data file in RAM, so that it
	// is never swapped out (etcd's --memory-mlock, which opens bbolt with
	// Mlock). Only bbolt maps its file; the other engines' Open fails with
	// ErrMlockUnsupported. It needs RLIMIT_MEMLOCK above the file's size.
	// The default value is false.
	Mlock bool
	// BatchInterval and BatchLimit bound how long, and for how many
	// operations, an engine that writes every commit to its files (bbolt;
	// the LSM engines keep commits in a memtable of their own and ignore
	// them) may hold NoSync commits in memory before it writes them
	// together: etcd's --backend-batch-interval and --backend-batch-limit.
	// Zero picks the engine's default (100 ms and 10000, as etcd's); a
	// negative interval writes every commit at once.
	BatchInterval time.Duration
	BatchLimit    int
}

// Engine describes one storage engine to a Registry.
type Engine struct {
	// Name is the name callers select the engine by, e.g. "pebble".
	Name string
	// Open opens or creates the engine's data in dir.
	Open func(dir string, opts Options) (Backend, error)
	// Restore recreates in dir (which must be empty or missing) the data a
	// Backend.Backup of this engine wrote to r.
	Restore func(dir string, r io.Reader) error
	// PinnedHeap is how many bytes of the Go heap a store opened with
	// default options keeps for as long as it is open in buffers without
	// pointers (badger's memtable arena), whatever the load. They cost the
	// garbage collector nothing to mark, but count towards its goal: a
	// program may pace the collector without them (internal/gcpace).
	PinnedHeap uint64
}

// Registry maps engine names to engines. Build one with NewRegistry; the
// backends package offers one holding every engine Strata ships. A Registry is
// read-only after construction and safe for concurrent use.
type Registry struct {
	engines map[string]Engine
}

// NewRegistry returns a registry holding engines. It panics on a duplicate or
// incomplete entry, which is a programming error.
func NewRegistry(engines ...Engine) *Registry {
	r := &Registry{engines: make(map[string]Engine, len(engines))}
	for _, e := range engines {
		if e.Name == "" || e.Open == nil || e.Restore == nil {
			panic(fmt.Sprintf("engine: incomplete registry entry %q", e.Name))
		}
		if _, dup := r.engines[e.Name]; dup {
			panic(fmt.Sprintf("engine: engine %q registered twice", e.Name))
		}
		r.engines[e.Name] = e
	}
	return r
}

// Names returns the registered engine names in sorted order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.engines))
	for n := range r.engines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the engine registered under name.
func (r *Registry) Lookup(name string) (Engine, error) {
	e, ok := r.engines[name]
	if !ok {
		return Engine{}, fmt.Errorf("%w %q (have %v)", ErrUnknownEngine, name, r.Names())
	}
	return e, nil
}

// Has reports whether name is registered.
func (r *Registry) Has(name string) bool {
	return slices.Contains(r.Names(), name)
}

// Open opens the engine registered under name on dir.
func (r *Registry) Open(name, dir string, opts Options) (Backend, error) {
	e, err := r.Lookup(name)
	if err != nil {
		return nil, err
	}
	return e.Open(dir, opts)
}

// Restore rebuilds dir from a backup stream of the engine registered under name.
func (r *Registry) Restore(name, dir string, rd io.Reader) error {
	e, err := r.Lookup(name)
	if err != nil {
		return err
	}
	return e.Restore(dir, rd)
}
