package wal

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

const (
	crashDirEnv  = "WAL_CRASH_DIR"
	crashSeedEnv = "WAL_CRASH_SEED"
	crashSegment = 256 << 10
)

var keyCrashTerm = []byte("crash-term")

// TestCrashKill9 runs a child process that appends batches (and deletes at
// both ends) and announces each operation on stdout before starting it and
// again when it has returned (appends with StoreLogs or StoreLogsNoSync,
// and SyncLogs). The parent SIGKILLs the child at a random
// moment, reopens the store and checks that every acknowledged operation is
// there and intact, and that the one in flight either happened, did not, or
// (for an append) left a prefix of its batch: never anything else. Several
// rounds run on the same directory.
func TestCrashKill9(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	rounds := 6
	if n, _ := strconv.Atoi(os.Getenv("WAL_CRASH_ROUNDS")); n > 0 {
		rounds = n
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(42, uint64(rounds)))
	var m crashModel
	partial := 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashSeedEnv, round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 20 + r.IntN(300)
		sc := bufio.NewScanner(out)
		acks := 0
		for sc.Scan() {
			if m.line(t, sc.Text()) {
				acks++
			}
			// Once enough operations are acknowledged, kill the child soon
			// after it announces the next one: usually in the middle of it.
			if acks >= killAfter && m.pending != nil {
				time.Sleep(time.Duration(r.IntN(1000)) * time.Microsecond)
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		for sc.Scan() { // lines written before the kill may still be in the pipe
			m.line(t, sc.Text())
		}
		werr := cmd.Wait()
		if acks < killAfter {
			t.Fatalf("round %d: child exited after %d acks (%v) before it was killed", round, acks, werr)
		}
		if m.verify(t, dir) {
			partial++
		}
		f, l := m.bounds()
		t.Logf("round %d: killed after %d acks with %q pending; recovered log [%d, %d], term %d", round, acks, m.pending, f, l, m.term)
		m.pending = nil
	}
	t.Logf("%d of %d rounds recovered a partial batch", partial, rounds)
}

// crashModel is the parent's record of what the child acknowledged.
type crashModel struct {
	first   uint64
	terms   []uint64 // term of entry first+i
	term    uint64   // acknowledged crash-term
	pending []string // fields of the operation announced but not acknowledged
}

func (m *crashModel) last() uint64 {
	if len(m.terms) == 0 {
		return 0
	}
	return m.first + uint64(len(m.terms)) - 1
}

// line applies one line from the child; it reports whether it was an ack.
func (m *crashModel) line(t *testing.T, line string) bool {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	num := func(i int) uint64 {
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		return n
	}
	switch f[0] {
	case "begin":
		if m.pending != nil {
			t.Fatalf("%q while %q pending", line, m.pending)
		}
		m.pending = f[1:]
		return false
	case "done":
	default:
		return false // test framework output
	}
	if m.pending == nil {
		t.Fatalf("%q with nothing pending", line)
	}
	p := m.pending
	f = p
	switch p[0] {
	case "append":
		from, to, term := num(1), num(2), num(3)
		if len(m.terms) == 0 {
			m.first = from
		} else if from != m.last()+1 {
			t.Fatalf("child appended %d after %d", from, m.last())
		}
		for range to - from + 1 {
			m.terms = append(m.terms, term)
		}
	case "head":
		k := num(1) - m.first
		m.terms = m.terms[k:]
		m.first += k
	case "tail":
		m.terms = m.terms[:num(1)-m.first]
	case "all":
		m.terms = nil
	case "term":
		m.term = num(1)
	}
	m.pending = nil
	return true
}

// verify reopens the store after a kill, checks it against the model and
// the pending operation, and adopts the recovered state. It reports whether
// a pending append survived only in part.
func (m *crashModel) verify(t *testing.T, dir string) (partial bool) {
	s := mustOpen(t, dir, &Options{SegmentSize: crashSegment})
	defer s.Close()
	first, last := bounds(t, s)
	term, err := s.GetUint64(keyCrashTerm)
	if err != nil {
		t.Fatal(err)
	}
	mFirst, mLast := m.first, m.last()
	if len(m.terms) == 0 {
		mFirst = 0
	}
	bad := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("after kill with %q pending: model [%d, %d] term %d, store [%d, %d] term %d: %s",
			m.pending, mFirst, mLast, m.term, first, last, term, fmt.Sprintf(format, args...))
	}
	op := ""
	if m.pending != nil {
		op = m.pending[0]
	}
	num := func(i int) uint64 { n, _ := strconv.ParseUint(m.pending[i], 10, 64); return n }
	if term != m.term && !(op == "term" && term == num(1)) {
		bad("term lost")
	}
	m.term = term
	switch op {
	case "append":
		from, to, pterm := num(1), num(2), num(3)
		if last == mLast {
			break // nothing of the batch survived
		}
		if last < from || last > to || (mFirst != 0 && first != mFirst) || (mFirst == 0 && first != from) {
			bad("bounds do not fit the pending append [%d, %d]", from, to)
		}
		if len(m.terms) == 0 {
			m.first = from
		}
		for range last - from + 1 {
			m.terms = append(m.terms, pterm)
		}
		partial = last != to
	case "head":
		if last != mLast || (first != mFirst && first != num(1)) {
			bad("bounds do not fit the pending head deletion")
		}
		m.terms = m.terms[first-m.first:]
		m.first = first
	case "tail":
		if first != mFirst || last > mLast || last+1 < num(1) {
			bad("bounds do not fit the pending tail deletion")
		}
		m.terms = m.terms[:last+1-m.first]
	case "all":
		if first == 0 && last == 0 {
			m.terms = nil
			break
		}
		if first != mFirst || last != mLast {
			bad("bounds do not fit the pending deletion of everything")
		}
	default:
		if first != mFirst || last != mLast {
			bad("acknowledged state not recovered")
		}
	}
	mf, ml := m.bounds()
	wantBounds(t, s, mf, ml)
	var l raft.Log
	for i := first; i <= last && last != 0; i++ {
		if err := s.GetLog(i, &l); err != nil {
			bad("GetLog(%d): %v", i, err)
		}
		if err := checkLog(&l, i, m.terms[i-m.first]); err != nil {
			bad("GetLog(%d): %v", i, err)
		}
	}
	for _, i := range []uint64{first - 1, last + 1} {
		if err := s.GetLog(i, &l); err != raft.ErrLogNotFound && i != 0 {
			bad("GetLog(%d) outside the log: %v", i, err)
		}
	}
	return partial
}

func (m *crashModel) bounds() (uint64, uint64) {
	if len(m.terms) == 0 {
		return 0, 0
	}
	return m.first, m.last()
}

// crashChild is the child side: it continues the workload from whatever it
// finds in dir until it is killed.
func crashChild(t *testing.T, dir string) {
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	r := rand.New(rand.NewPCG(seed, 7))
	s := mustOpen(t, dir, &Options{SegmentSize: crashSegment})
	defer s.Close()
	w := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
		w.Flush()
	}
	term, _ := s.GetUint64(keyCrashTerm)
	setTerm := func() {
		term++
		say("begin term %d", term)
		if err := s.SetUint64(keyCrashTerm, term); err != nil {
			t.Fatal(err)
		}
		say("done")
	}
	setTerm()
	restart := uint64(1) // where an empty log starts
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		first, last := bounds(t, s)
		switch p := r.IntN(100); {
		case p < 84 || last <= first+1:
			from := last + 1
			if last == 0 {
				from = restart
			}
			to := from + uint64(r.IntN(64))
			batch := make([]*raft.Log, 0, to-from+1)
			for i := from; i <= to; i++ {
				batch = append(batch, mkLog(i, term, r.IntN(4096)))
			}
			// Half the appends are the leader's (StoreLogsNoSync, then
			// sometimes SyncLogs as an operation of its own): written but
			// not yet synced, they survive a kill -9 all the same.
			deferred := r.IntN(2) == 0
			say("begin append %d %d %d", from, to, term)
			if deferred {
				if err := s.StoreLogsNoSync(batch); err != nil {
					t.Fatal(err)
				}
			} else {
				mustStore(t, s, batch)
			}
			say("done")
			if deferred && r.IntN(2) == 0 {
				say("begin sync")
				if err := s.SyncLogs(); err != nil {
					t.Fatal(err)
				}
				say("done")
			}
		case p < 91:
			max := first + uint64(r.IntN(int(last-first)/4+1))
			say("begin head %d", max+1)
			mustDelete(t, s, first, max)
			say("done")
		case p < 98:
			setTerm()
			min := first + 1 + uint64(r.IntN(int(last-first)))
			say("begin tail %d", min)
			mustDelete(t, s, min, last)
			say("done")
		default:
			setTerm()
			say("begin all")
			mustDelete(t, s, first, last)
			say("done")
			restart = first
		}
	}
	t.Fatalf("crash child was not killed within a minute")
}
