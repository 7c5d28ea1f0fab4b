// Package gcpace paces Go's garbage collector as if part of the heap were
// not there.
//
// The collector lets the heap grow by GOGC percent of what the last cycle
// found live (plus stacks and globals) before it starts the next cycle. A
// buffer that lives as long as the process and holds no pointers, such as
// badger's memtable arena (a 42 MiB []byte), costs the collector nothing to
// mark, but it counts as live: at GOGC=100 it lets as much garbage again
// pile up, which is resident memory and nothing else. A Pacer watches the
// collector's cycles and, after each, sets the percentage so that the room
// left for garbage is Percent of the heap without the pinned bytes: the
// collector then runs as often as it would without the buffer.
package gcpace

import (
	"errors"
	"fmt"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// ErrInvalidOptions is returned by Start for options out of range.
var ErrInvalidOptions = errors.New("gcpace: invalid options")

// Defaults for zero Options fields.
const (
	// DefaultPercent is Go's own default GOGC.
	DefaultPercent = 100
	// DefaultInterval is how often a Pacer looks for a finished cycle.
	DefaultInterval = 20 * time.Millisecond
	// DefaultMinRest is the smallest heap, besides the pinned bytes, the
	// room for garbage is computed from: Go's own minimum heap (4 MiB).
	DefaultMinRest = 4 << 20
)

// Options configure a Pacer.
type Options struct {
	// Pinned is the number of heap bytes held for the life of the process
	// in buffers without pointers. It must be positive.
	Pinned uint64
	// Percent is the GOGC the rest of the heap is paced at.
	// Default: DefaultPercent (100).
	Percent int
	// Max is the highest percentage the Pacer sets: a cap on the room for
	// garbage relative to the whole heap, pinned bytes included, for
	// heaps whose rest also holds long-lived buffers. Default: Percent.
	Max int
	// MinRest is the smallest size of the rest of the heap the room for
	// garbage is computed from. Default: DefaultMinRest (4 MiB).
	MinRest uint64
	// Interval is how often the Pacer reads the collector's cycle count.
	// Default: DefaultInterval (20 ms).
	Interval time.Duration
}

// Clone returns a copy of o; a nil o gives all defaults.
func (o *Options) Clone() *Options {
	if o == nil {
		return &Options{}
	}
	c := *o
	return &c
}

// EnsureDefaults sets the zero fields of o to their defaults. Start calls
// it on its own copy of the caller's options.
func (o *Options) EnsureDefaults() {
	if o.Percent == 0 {
		o.Percent = DefaultPercent
	}
	if o.Max == 0 {
		o.Max = o.Percent
	}
	if o.MinRest == 0 {
		o.MinRest = DefaultMinRest
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
}

// Validate reports options that cannot work, with an error wrapping
// ErrInvalidOptions. It expects EnsureDefaults to have run.
func (o *Options) Validate() error {
	switch {
	case o.Pinned == 0:
		return fmt.Errorf("%w: Pinned must be positive", ErrInvalidOptions)
	case o.Percent < 0:
		return fmt.Errorf("%w: Percent %d is negative", ErrInvalidOptions, o.Percent)
	case o.Max < 0:
		return fmt.Errorf("%w: Max %d is negative", ErrInvalidOptions, o.Max)
	case o.Interval < 0:
		return fmt.Errorf("%w: Interval %v is negative", ErrInvalidOptions, o.Interval)
	}
	return nil
}

// Percent returns the GOGC that leaves room for percent of the heap without
// pinned bytes, for a cycle that found live bytes of heap, stacks and
// globals: percent * max(live-pinned, minRest) / live, at least 1 and at
// most percent.
func Percent(percent int, live, pinned, minRest uint64) int {
	if live == 0 {
		return percent
	}
	rest := minRest
	if live > pinned && live-pinned > rest {
		rest = live - pinned
	}
	p := uint64(percent) * rest / live
	switch {
	case p < 1:
		return 1
	case p > uint64(percent):
		return percent
	}
	return int(p)
}

// A Pacer sets the collector's percentage after each cycle until Close.
type Pacer struct {
	o    *Options
	prev int
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start starts pacing the collector. The Pacer owns one goroutine, stopped
// by Close, which also puts back the percentage Start found.
func Start(o *Options) (*Pacer, error) {
	c := o.Clone()
	c.EnsureDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Pacer{o: c, stop: make(chan struct{}), done: make(chan struct{})}
	p.prev = debug.SetGCPercent(min(c.Percent, c.Max))
	go p.run()
	return p, nil
}

// metric names read after each cycle; their sum is what GOGC applies to.
var samples = [...]string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/gc/scan/stack:bytes",
	"/gc/scan/globals:bytes",
}

func (p *Pacer) run() {
	defer close(p.done)
	s := make([]metrics.Sample, len(samples))
	for i, name := range samples {
		s[i].Name = name
	}
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	var cycles uint64
	cur := min(p.o.Percent, p.o.Max)
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 || s[0].Value.Uint64() == cycles {
			continue
		}
		cycles = s[0].Value.Uint64()
		var live uint64
		for _, v := range s[1:] {
			if v.Value.Kind() == metrics.KindUint64 {
				live += v.Value.Uint64()
			}
		}
		if pct := min(Percent(p.o.Percent, live, p.o.Pinned, p.o.MinRest), p.o.Max); pct != cur {
			debug.SetGCPercent(pct)
			cur = pct
		}
	}
}

// Close stops the Pacer and puts back the percentage Start found.
func (p *Pacer) Close() error {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		debug.SetGCPercent(p.prev)
	})
	return nil
}
