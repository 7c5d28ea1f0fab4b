package pebble_test

import (
	"errors"
	"testing"

	"github.com/strata-kv/strata/backends/pebble"
	"github.com/strata-kv/strata/internal/optionstest"
)

func TestOptionsValidate(t *testing.T) {
	optionstest.Validate(t, pebble.ErrInvalidOptions, []optionstest.Case[pebble.Options]{
		{Name: "defaults", Opts: pebble.Options{}, OK: true},
		{Name: "negative sizes take defaults", Opts: pebble.Options{CacheSize: -1, MaxOpenFiles: -1, MaxConcurrentCompactions: -1}, OK: true},
		{Name: "largest memtable", Opts: pebble.Options{MemTableSize: 4<<30 - 1}, OK: true},
		{Name: "memtable of 4 GiB", Opts: pebble.Options{MemTableSize: 4 << 30}},
		{Name: "one memtable before a stall", Opts: pebble.Options{MemTableStopWritesThreshold: 1}},
	})
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
