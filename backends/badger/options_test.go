package badger_test

import (
	"errors"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts badger.Options
		ok   bool
	}{
		{"defaults", badger.Options{}, true},
		{"small memtable lowers the value threshold", badger.Options{MemTableSize: 1 << 20}, true},
		{"stall follows a raised level 0 trigger", badger.Options{NumLevelZeroTables: 10}, true},
		{"value log file below the value limit", badger.Options{ValueLogFileSize: engine.MaxValueSize - 1}, false},
		{"one compactor", badger.Options{NumCompactors: 1}, false},
		{"stall at the level 0 trigger", badger.Options{NumLevelZeroTables: 4, NumLevelZeroTablesStall: 4}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts.Clone()
			o.EnsureDefaults()
			err := o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, badger.ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestOpenKeepsCallerOptions checks that Open fills in defaults on a copy
// and refuses invalid options before it touches the directory.
func TestOpenKeepsCallerOptions(t *testing.T) {
	opts := &badger.Options{MemTableSize: 16 << 20}
	want := *opts
	db, err := badger.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if *opts != want {
		t.Fatalf("Open changed the caller's options to %+v, want %+v", *opts, want)
	}
	if _, err := badger.Open(t.TempDir(), &badger.Options{NumCompactors: 1}); !errors.Is(err, badger.ErrInvalidOptions) {
		t.Fatalf("Open with NumCompactors 1: %v, want ErrInvalidOptions", err)
	}
}
