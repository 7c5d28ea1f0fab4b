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
