package bbolt_test

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
)

// lockedKB is the process's locked memory, VmLck in /proc/self/status.
func lockedKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmLck:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no VmLck in /proc/self/status")
	return 0
}

// TestMlock: engine.Options.Mlock (etcd's --memory-mlock) locks bbolt's
// data file in RAM while it is open, as etcd's bbolt Mlock option does.
func TestMlock(t *testing.T) {
	before := lockedKB(t)
	b, err := bbolt.Engine().Open(t.TempDir(), engine.Options{Mlock: true})
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.EAGAIN) {
		t.Skipf("mlock refused here (RLIMIT_MEMLOCK): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var batch engine.Batch
	batch.Set([]byte("k"), make([]byte, 256<<10))
	if err := b.Commit(&batch, engine.Sync); err != nil {
		t.Fatal(err)
	}
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if locked := lockedKB(t) - before; int64(locked)*1024 < st.Size {
		t.Errorf("%d kB locked for a %d-byte file", locked, st.Size)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := lockedKB(t); after != before {
		t.Errorf("%d kB locked after Close, %d before Open", after, before)
	}
}
