package gcpace

import (
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strata-kv/strata/internal/optionstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		name                  string
		percent               int
		live, pinned, minRest uint64
		want                  int
	}{
		{"nothing pinned", 100, 50 * mib, 0, 4 * mib, 100},
		{"badger idle: arena and 6 MiB", 100, 50 * mib, 44 * mib, 4 * mib, 12},
		{"rest below the minimum", 100, 46 * mib, 44 * mib, 4 * mib, 8},
		{"all of it pinned", 100, 44 * mib, 44 * mib, 4 * mib, 9},
		{"live below pinned (not yet allocated)", 100, 10 * mib, 44 * mib, 4 * mib, 40},
		{"large rest", 100, 444 * mib, 44 * mib, 4 * mib, 90},
		{"percent 50", 50, 88 * mib, 44 * mib, 4 * mib, 25},
		{"minimum larger than live", 100, 2 * mib, 44 * mib, 4 * mib, 100},
		{"never below 1", 100, 1 << 40, 1<<40 - 1, 1, 1},
		{"no cycle yet", 100, 0, 44 * mib, 4 * mib, 100},
	} {
		if got := Percent(c.percent, c.live, c.pinned, c.minRest); got != c.want {
			t.Errorf("%s: Percent(%d, %d, %d, %d) = %d, want %d", c.name, c.percent, c.live, c.pinned, c.minRest, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	optionstest.Validate(t, ErrInvalidOptions, []optionstest.Case[Options]{
		{Name: "defaults and pinned", Opts: Options{Pinned: 1}, OK: true},
		{Name: "all set", Opts: Options{Pinned: 44 * mib, Percent: 100, Max: 50, MinRest: mib, Interval: time.Second}, OK: true},
		{Name: "nothing pinned", Opts: Options{}},
		{Name: "negative percent", Opts: Options{Pinned: 1, Percent: -1}},
		{Name: "negative max", Opts: Options{Pinned: 1, Max: -1}},
		{Name: "negative interval", Opts: Options{Pinned: 1, Interval: -time.Second}},
	})
	if p, err := Start(nil); !errors.Is(err, ErrInvalidOptions) {
		if p != nil {
			p.Close()
		}
		t.Errorf("Start(nil): %v, want ErrInvalidOptions", err)
	}
}

func gogc(t *testing.T) int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatal("no /gc/gogc:percent metric")
	}
	return int(s[0].Value.Uint64())
}

// TestPacerSetsPercent pins a real pointer-free buffer, as badger's arena,
// and checks that after a cycle the collector's percentage leaves room for
// the rest of the heap only, and that Close puts the old one back.
func TestPacerSetsPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	arena := make([]byte, 64*mib)
	p, err := Start(&Options{Pinned: uint64(len(arena)), Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if got := gogc(t); got < 100 {
			// The live heap is the arena and a few MiB: room for about
			// MinRest, so well under a third of 100.
			if got > 30 {
				t.Errorf("GOGC %d with 64 MiB pinned of a heap of about 70 MiB, want at most 30", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pacer did not lower GOGC after a collection")
		}
	}
	runtime.KeepAlive(arena)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := gogc(t); got != 100 {
		t.Errorf("GOGC after Close: %d, want the 100 Start found", got)
	}
}

// TestPacerMax checks the cap: with nothing much pinned the percentage
// would stay at Percent, but Max bounds it from the start.
func TestPacerMax(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	p, err := Start(&Options{Pinned: 1, Max: 50, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := gogc(t); got != 50 {
		t.Errorf("GOGC after Start with Max 50: %d", got)
	}
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if got := gogc(t); got != 50 {
		t.Errorf("GOGC after a cycle with Max 50 and 1 byte pinned: %d", got)
	}
}
