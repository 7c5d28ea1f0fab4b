package bbolt_test

import (
	"errors"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts bbolt.Options
		ok   bool
	}{
		{"defaults", bbolt.Options{}, true},
		{"set", bbolt.Options{InitialMmapSize: 1 << 20, LockTimeout: time.Second, DefragTxKeys: 10}, true},
		{"negative mmap", bbolt.Options{InitialMmapSize: -1}, false},
		{"negative lock timeout", bbolt.Options{LockTimeout: -time.Second}, false},
		{"negative defrag keys", bbolt.Options{DefragTxKeys: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts.Clone()
			o.EnsureDefaults()
			err := o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, bbolt.ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
		})
	}
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
