package enginetest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-kv/strata/engine"
)

// crashChildEnv tells a re-executed test binary to act as the crash child,
// writing into the directory the variable names.
const crashChildEnv = "STRATA_ENGINETEST_CRASH_CHILD"

// crashSyncEvery is how often the NoSync crash child calls Backend.Sync.
const crashSyncEvery = 10

// crashAck prefixes the child's acknowledgement lines on stdout.
const crashAck = "strata-crash-ack "

// crashKeysPerBatch is how many keys each crash batch writes.
const crashKeysPerBatch = 8

// crashBatch builds batch n of the crash workload: it sets the counter to n,
// writes batch n's keys (one with a large value) and deletes batch n-1's
// keys with a range delete, so the whole keyspace after batch n is a known
// function of n.
func crashBatch(b *engine.Batch, n int) {
	b.Reset()
	b.Set([]byte("crash/counter"), []byte(strconv.Itoa(n)))
	if n > 0 {
		b.DeleteRange(fmt.Appendf(nil, "crash/b/%08d/", n-1), fmt.Appendf(nil, "crash/b/%08d0", n-1))
	}
	for j := range crashKeysPerBatch {
		b.Set(fmt.Appendf(nil, "crash/b/%08d/%02d", n, j), crashValue(n, j))
	}
}

func crashValue(n, j int) []byte {
	v := fmt.Appendf(nil, "%d.%d.", n, j)
	if j == 0 {
		// A value large enough to leave the LSM for a value log.
		v = append(v, strings.Repeat("x", 4096)...)
	}
	return v
}

func crashModel(n int) model {
	m := model{}
	if n < 0 {
		return m
	}
	var b engine.Batch
	crashBatch(&b, n)
	m.apply(&b)
	return m
}

// testCrashDurability starts a child process that commits synced batches and
// acknowledges each on stdout, kills it with SIGKILL at a random moment, and
// checks after reopen that the data is exactly the state after the last
// acknowledged batch or the one after it: nothing acknowledged is lost and no
// batch is half applied. It does this for several rounds on the same data.
func (s *suite) testCrashDurability(t *testing.T) { s.crashTest(t, true) }

// testCrashPrefixNoSync is the same with NoSync commits and a Backend.Sync
// every crashSyncEvery batches, acknowledged after Sync returns. After a
// kill -9 the data must be the state after some batch at or after the last
// synced one: a process crash may lose unsynced commits, but only a suffix of
// them, never one in the middle and never half a batch. Replication relies on
// this to commit its batches without fsync.
func (s *suite) testCrashPrefixNoSync(t *testing.T) { s.crashTest(t, false) }

func (s *suite) crashTest(t *testing.T, sync bool) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		s.crashChild(t, dir, sync)
		return
	}
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(baseSeed(), 8))
	var parts []string
	for _, p := range strings.Split(t.Name(), "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	pattern := strings.Join(parts, "/")

	last := -1
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run="+pattern, "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 20 + r.IntN(200)
		acked := last
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, crashAck) {
				continue
			}
			n, err := strconv.Atoi(strings.TrimPrefix(line, crashAck))
			if err != nil {
				t.Fatalf("bad ack line %q", line)
			}
			if n <= acked || (sync && n != acked+1) {
				t.Fatalf("child acknowledged %d after %d", n, acked)
			}
			acked = n
			if seen++; seen == killAfter {
				// Let it get into the middle of the next commit.
				time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		// Acks written before the kill may still sit in the pipe.
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, crashAck) {
				if n, err := strconv.Atoi(strings.TrimPrefix(line, crashAck)); err == nil && n > acked {
					acked = n
				}
			}
		}
		err = cmd.Wait()
		if seen < killAfter {
			t.Fatalf("child exited after %d acks (%v) before it was killed", seen, err)
		}

		b := s.open(t, dir)
		snap := mustSnapshot(t, b)
		got, err := readAll(snap)
		if err != nil {
			t.Fatal(err)
		}
		cv, err := snap.Get([]byte("crash/counter"))
		if err != nil {
			t.Fatalf("round %d: counter missing after crash (last ack %d): %v", round, acked, err)
		}
		n, _ := strconv.Atoi(string(cv))
		snap.Close()
		b.Close()
		switch {
		case sync && n != acked && n != acked+1:
			t.Fatalf("round %d: recovered batch %d, last acknowledged %d: acknowledged batches lost", round, n, acked)
		case !sync && n < acked:
			t.Fatalf("round %d: recovered batch %d, last synced %d: synced batches lost", round, n, acked)
		}
		if d := diffKVs(got, crashModel(n).scan(nil)); d != "" {
			t.Fatalf("round %d: state after recovery is not the state after batch %d: %s", round, n, d)
		}
		t.Logf("round %d: killed after ack %d, recovered batch %d intact (sync=%v)", round, acked, n, sync)
		last = n
	}
}

// crashChild is the child side: open dir, continue the workload from the
// recovered counter, acknowledge each durable point. It runs until killed,
// or gives up after a while so a lost parent does not leave it running.
func (s *suite) crashChild(t *testing.T, dir string, sync bool) {
	b := s.open(t, dir)
	next := 0
	if snap, err := b.NewSnapshot(); err == nil {
		if v, err := snap.Get([]byte("crash/counter")); err == nil {
			n, _ := strconv.Atoi(string(v))
			next = n + 1
		}
		snap.Close()
	}
	w := bufio.NewWriter(os.Stdout)
	var batch engine.Batch
	deadline := time.Now().Add(time.Minute)
	o := engine.Sync
	if !sync {
		o = engine.NoSync
	}
	for n := next; time.Now().Before(deadline); n++ {
		crashBatch(&batch, n)
		if err := b.Commit(&batch, o); err != nil {
			t.Fatalf("child commit %d: %v", n, err)
		}
		if !sync {
			if n%crashSyncEvery != 0 {
				continue
			}
			if err := b.Sync(); err != nil {
				t.Fatalf("child sync after %d: %v", n, err)
			}
		}
		fmt.Fprintf(w, "%s%d\n", crashAck, n)
		w.Flush()
	}
	b.Close()
	t.Fatalf("crash child was not killed within a minute")
}
