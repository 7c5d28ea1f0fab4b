package badger_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine/enginetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	enginetest.Run(t, badger.Engine(), enginetest.Options{})
}

func BenchmarkEngine(b *testing.B) { enginetest.RunBenchmarks(b, badger.Engine()) }
