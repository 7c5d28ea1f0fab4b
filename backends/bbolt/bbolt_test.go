package bbolt_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	enginetest.Run(t, bbolt.Engine(), enginetest.Options{})
}

func BenchmarkEngine(b *testing.B) { enginetest.RunBenchmarks(b, bbolt.Engine()) }
