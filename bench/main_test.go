package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a run's
// workers, its progress reporting and the in-process clusters it starts
// must all stop before Run and the stores' Close return.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
