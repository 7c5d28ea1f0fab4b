package mvcc

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// compactor, the watch loops and every WatchStream's goroutine must stop
// with their Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
