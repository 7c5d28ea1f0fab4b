package bench_test

import (
	"os"
	"testing"

	"github.com/strata-kv/strata/bench"
)

func TestReadRSS(t *testing.T) {
	n, err := bench.ReadRSS(0)
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if n < 1<<20 {
		t.Fatalf("RSS %d is implausibly small", n)
	}
	s := bench.StartRSS(os.Getpid(), 0)
	if peak := s.Stop(); peak.RSS < 1<<20 || peak.Anon < 1<<20 || peak.Anon > peak.RSS {
		t.Fatalf("peak RSS %d, anonymous %d: implausible", peak.RSS, peak.Anon)
	}
}
