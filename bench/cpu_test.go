package bench_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/strata-kv/strata/bench"
)

func TestReadCPU(t *testing.T) {
	before, err := bench.ReadCPU(0)
	if err != nil {
		t.Skip("no /proc:", err)
	}
	// Burn CPU until the kernel's clock-tick accounting must have seen it.
	buf := make([]byte, 1<<16)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		sum := sha256.Sum256(buf)
		buf[0] = sum[0]
	}
	after, err := bench.ReadCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("CPU time went from %v to %v after 300ms of hashing", before, after)
	}
	if _, err := bench.ReadCPU(-1); err == nil {
		t.Fatal("ReadCPU(-1) did not fail")
	}
}
