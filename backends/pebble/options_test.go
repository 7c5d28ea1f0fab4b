package pebble_test

import (
	"errors"
	"testing"

	"github.com/strata-kv/strata/backends/pebble"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts pebble.Options
		ok   bool
	}{
		{"defaults", pebble.Options{}, true},
		{"negative sizes take defaults", pebble.Options{CacheSize: -1, MaxOpenFiles: -1, MaxConcurrentCompactions: -1}, true},
		{"largest memtable", pebble.Options{MemTableSize: 4<<30 - 1}, true},
		{"memtable of 4 GiB", pebble.Options{MemTableSize: 4 << 30}, false},
		{"one memtable before a stall", pebble.Options{MemTableStopWritesThreshold: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts.Clone()
			o.EnsureDefaults()
			err := o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, pebble.ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestOpenKeepsCallerOptions checks that Open fills in defaults on a copy.
func TestOpenKeepsCallerOptions(t *testing.T) {
	opts := &pebble.Options{MemTableSize: 1 << 20}
	want := *opts
	db, err := pebble.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if *opts != want {
		t.Fatalf("Open changed the caller's options to %+v, want %+v", *opts, want)
	}
	if _, err := pebble.Open(t.TempDir(), &pebble.Options{MemTableStopWritesThreshold: 1}); !errors.Is(err, pebble.ErrInvalidOptions) {
		t.Fatalf("Open with MemTableStopWritesThreshold 1: %v, want ErrInvalidOptions", err)
	}
}
