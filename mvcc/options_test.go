package mvcc

import (
	"errors"
	"reflect"
	"testing"

	"github.com/strata-kv/strata/backends/bbolt"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"no pauses, no checkpoints", Options{CompactionSleepInterval: -1, LeaseCheckpointInterval: -1}, true},
		{"minimum lease TTL", Options{MinLeaseTTL: 5}, true},
		{"negative minimum lease TTL", Options{MinLeaseTTL: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts.Clone()
			o.EnsureDefaults()
			err := o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestWatchStreamOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts WatchStreamOptions
		ok   bool
	}{
		{"defaults", WatchStreamOptions{}, true},
		{"no progress notifications", WatchStreamOptions{ProgressNotifyInterval: -1}, true},
		{"fragments", WatchStreamOptions{FragmentBytes: 1 << 20}, true},
		{"negative fragment size", WatchStreamOptions{FragmentBytes: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts.Clone()
			o.EnsureDefaults()
			err := o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestOpenKeepsCallerOptions checks that Open and NewWatchStream fill in
// defaults on copies of the caller's options, and refuse invalid ones.
func TestOpenKeepsCallerOptions(t *testing.T) {
	be := openBackend(t, bbolt.Engine(), t.TempDir())
	if _, err := Open(be, &Options{MinLeaseTTL: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Open with MinLeaseTTL -1: %v, want ErrInvalidOptions", err)
	}
	opts := &Options{CompactionBatchLimit: 10}
	want := *opts
	s, err := Open(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !reflect.DeepEqual(*opts, want) {
		t.Fatalf("Open changed the caller's options to %+v, want %+v", *opts, want)
	}

	wopts := &WatchStreamOptions{FragmentBytes: 100}
	wwant := *wopts
	ws, err := s.NewWatchStream(wopts)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if *wopts != wwant {
		t.Fatalf("NewWatchStream changed the caller's options to %+v, want %+v", *wopts, wwant)
	}
	if _, err := s.NewWatchStream(&WatchStreamOptions{FragmentBytes: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("NewWatchStream with FragmentBytes -1: %v, want ErrInvalidOptions", err)
	}
}
