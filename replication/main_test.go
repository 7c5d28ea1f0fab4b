package replication

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// goroutine a Node starts, and every wait on a raft future, must end with
// its Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
