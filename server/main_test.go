package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// goroutine a Server starts must end with its Close. The exception is
// lumberjack's: a rotating log file (NewRotatingLogger) starts one
// goroutine, on its first rotation, that its Close does not end
// (lumberjack v2.2.1; etcd's rotation has the same): one per logger.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}
