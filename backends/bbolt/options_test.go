package bbolt_test

import (
	"errors"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/internal/optionstest"
)

func TestOptionsValidate(t *testing.T) {
	optionstest.Validate(t, bbolt.ErrInvalidOptions, []optionstest.Case[bbolt.Options]{
		{Name: "defaults", Opts: bbolt.Options{}, OK: true},
		{Name: "set", Opts: bbolt.Options{InitialMmapSize: 1 << 20, LockTimeout: time.Second, DefragTxKeys: 10}, OK: true},
		{Name: "negative mmap", Opts: bbolt.Options{InitialMmapSize: -1}},
		{Name: "negative lock timeout", Opts: bbolt.Options{LockTimeout: -time.Second}},
		{Name: "negative defrag keys", Opts: bbolt.Options{DefragTxKeys: -1}},
		{Name: "fill percent 1", Opts: bbolt.Options{FillPercent: 1}, OK: true},
		{Name: "fill percent too low", Opts: bbolt.Options{FillPercent: 0.05}},
		{Name: "fill percent above 1", Opts: bbolt.Options{FillPercent: 1.5}},
	})
}

// TestOpenKeepsCallerOptions checks that Open fills in defaults on a copy.
func TestOpenKeepsCallerOptions(t *testing.T) {
	opts := &bbolt.Options{LockTimeout: time.Second}
	want := *opts
	db, err := bbolt.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if *opts != want {
		t.Fatalf("Open changed the caller's options to %+v, want %+v", *opts, want)
	}
	if _, err := bbolt.Open(t.TempDir(), &bbolt.Options{DefragTxKeys: -1}); !errors.Is(err, bbolt.ErrInvalidOptions) {
		t.Fatalf("Open with DefragTxKeys -1: %v, want ErrInvalidOptions", err)
	}
}
