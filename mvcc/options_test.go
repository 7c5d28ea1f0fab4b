package mvcc

import (
	"errors"
	"reflect"
	"testing"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/internal/optionstest"
)

func TestOptionsValidate(t *testing.T) {
	optionstest.Validate(t, ErrInvalidOptions, []optionstest.Case[Options]{
		{Name: "defaults", Opts: Options{}, OK: true},
		{Name: "no pauses, no checkpoints", Opts: Options{CompactionSleepInterval: -1, LeaseCheckpointInterval: -1}, OK: true},
		{Name: "minimum lease TTL", Opts: Options{MinLeaseTTL: 5}, OK: true},
		{Name: "negative minimum lease TTL", Opts: Options{MinLeaseTTL: -1}},
	})
}

func TestWatchStreamOptionsValidate(t *testing.T) {
	optionstest.Validate(t, ErrInvalidOptions, []optionstest.Case[WatchStreamOptions]{
		{Name: "defaults", Opts: WatchStreamOptions{}, OK: true},
		{Name: "no progress notifications", Opts: WatchStreamOptions{ProgressNotifyInterval: -1}, OK: true},
		{Name: "fragments", Opts: WatchStreamOptions{FragmentBytes: 1 << 20}, OK: true},
		{Name: "negative fragment size", Opts: WatchStreamOptions{FragmentBytes: -1}},
	})
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
	if !reflect.DeepEqual(*wopts, wwant) {
		t.Fatalf("NewWatchStream changed the caller's options to %+v, want %+v", *wopts, wwant)
	}
	if _, err := s.NewWatchStream(&WatchStreamOptions{FragmentBytes: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("NewWatchStream with FragmentBytes -1: %v, want ErrInvalidOptions", err)
	}
}
