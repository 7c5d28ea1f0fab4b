package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// goroutine a Server starts must end with its Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
