package badger_test

import (
	"errors"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/internal/optionstest"
)

func TestOptionsValidate(t *testing.T) {
	optionstest.Validate(t, badger.ErrInvalidOptions, []optionstest.Case[badger.Options]{
		{Name: "defaults", Opts: badger.Options{}, OK: true},
		{Name: "small memtable lowers the value threshold", Opts: badger.Options{MemTableSize: 1 << 20}, OK: true},
		{Name: "stall follows a raised level 0 trigger", Opts: badger.Options{NumLevelZeroTables: 10}, OK: true},
		{Name: "value log file below the value limit", Opts: badger.Options{ValueLogFileSize: engine.MaxValueSize - 1}},
		{Name: "one compactor", Opts: badger.Options{NumCompactors: 1}},
		{Name: "stall at the level 0 trigger", Opts: badger.Options{NumLevelZeroTables: 4, NumLevelZeroTablesStall: 4}},
	})
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
