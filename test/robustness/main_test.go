package robustness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// strataBin is the cmd/strata binary the members run, built once per test
// binary by TestMain.
var strataBin string

// TestMain builds cmd/strata into a temporary directory, runs the tests and
// fails the package if a test leaves a goroutine behind.
//
// The binary is built with -race when this test binary is: under `make
// test` the race-instrumented packages are then already in the build
// cache, and a data race in a member under faults fails the test (see
// member.check). A race-built member is slower (about 2-5x CPU), which the
// timeouts here allow for.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-robustness-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strataBin = filepath.Join(dir, "strata")
	args := []string{"build", "-o", strataBin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/strata-kv/strata/cmd/strata")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cmd/strata:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}
