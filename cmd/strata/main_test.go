package main

import (
	"os"
	"testing"

	"github.com/strata-kv/strata/backends"
)

// runAsMainEnv makes the test binary run as the strata command (main), so
// that tests start members as real processes without building one.
const runAsMainEnv = "STRATA_TEST_RUN_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestGCPacing(t *testing.T) {
	eng, err := backends.Registry().Lookup("badger")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		backend, gogc string
		want          uint64 // pinned bytes; 0: Go's pacing
	}{
		{"badger", "", eng.PinnedHeap},
		{"badger", "100", 0}, // the operator's GOGC wins
		{"badger", "off", 0},
		{"bbolt", "", 0},
		{"pebble", "", 0},
		{"nosuch", "", 0},
	} {
		getenv := func(k string) string {
			if k == "GOGC" {
				return c.gogc
			}
			return ""
		}
		var got uint64
		if o := gcPacing(c.backend, getenv); o != nil {
			got = o.Pinned
			if o.Max != pinnedMaxGCPercent {
				t.Errorf("gcPacing(%q): Max %d, want %d", c.backend, o.Max, pinnedMaxGCPercent)
			}
		}
		if got != c.want {
			t.Errorf("gcPacing(%q) with GOGC=%q: pinned %d, want %d", c.backend, c.gogc, got, c.want)
		}
	}
	if eng.PinnedHeap < 32<<20 {
		t.Errorf("badger's PinnedHeap %d is below its 32 MiB memtable", eng.PinnedHeap)
	}
}
