package bbolt_test

import (
	"bufio"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
)

// mappedKB is the resident part of this process's mappings of path
// (their Rss lines in /proc/self/smaps).
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	var kb int
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) == 6 && fields[5] == path
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	return kb
}

// TestUnmap: appends in small commits leave the whole data file mapped
// (each commit reads the B+tree's right edge, and the kernel maps the pages
// around it) unless the commits drop the mapped pages
// (Options.UnmapInterval); dropped pages read back as they were written.
func TestUnmap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		mapped   func(kb, fileKB int) bool
	}{
		{"never", -1, func(kb, fileKB int) bool { return kb > fileKB/2 }},
		{"every commit", time.Nanosecond, func(kb, fileKB int) bool { return kb < fileKB/10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := bbolt.Open(dir, &bbolt.Options{NoSync: true, UnmapInterval: tc.interval, BatchInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			const keys, perCommit = 60000, 20
			val := make([]byte, 280)
			for i := 0; i < keys; i += perCommit {
				var b engine.Batch
				for j := i; j < i+perCommit; j++ {
					binary.BigEndian.PutUint64(val, uint64(j))
					b.Set(binary.BigEndian.AppendUint64([]byte("r"), uint64(j)), val)
				}
				if err := db.Commit(&b, engine.NoSync); err != nil {
					t.Fatal(err)
				}
			}
			fi, err := os.Stat(db.Path())
			if err != nil {
				t.Fatal(err)
			}
			kb, fileKB := mappedKB(t, db.Path()), int(fi.Size()>>10)
			t.Logf("%d kB of the %d kB data file mapped", kb, fileKB)
			if !tc.mapped(kb, fileKB) {
				t.Fatalf("%d kB of the %d kB data file mapped", kb, fileKB)
			}
			snap, err := db.NewSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			defer snap.Close()
			it, err := snap.NewIter(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			n := 0
			for ok := it.First(); ok; ok = it.Next() {
				if got := binary.BigEndian.Uint64(it.Value()); got != uint64(n) || binary.BigEndian.Uint64(it.Key()[1:]) != uint64(n) {
					t.Fatalf("record %d reads key %x value %d", n, it.Key(), got)
				}
				n++
			}
			if n != keys {
				t.Fatalf("read %d of %d records", n, keys)
			}
		})
	}
}
