package main

import (
	"os"
	"testing"
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

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		backend, gogc string
		want          int
	}{
		{"badger", "", badgerGCPercent},
		{"badger", "100", 0}, // the operator's GOGC wins
		{"badger", "off", 0},
		{"bbolt", "", 0},
		{"pebble", "", 0},
	} {
		getenv := func(k string) string {
			if k == "GOGC" {
				return c.gogc
			}
			return ""
		}
		if got := gcPercent(c.backend, getenv); got != c.want {
			t.Errorf("gcPercent(%q) with GOGC=%q: %d, want %d", c.backend, c.gogc, got, c.want)
		}
	}
}
