package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// simple tokens' expiry loop must stop with disable and Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
