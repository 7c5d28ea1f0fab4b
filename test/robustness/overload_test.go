package robustness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssAll returns every running member's RSS in MiB, by name.
func (c *cluster) rssAll(t *testing.T) map[string]int64 {
	out := map[string]int64{}
	for _, m := range c.members {
		if pid := m.pid(); pid != 0 {
			out[m.name] = rss(t, pid) >> 20
		}
	}
	return out
}

// TestOverload puts a running cluster under loads a member must shed or
// bear with bounded memory while it keeps serving others: many leases
// (5k, 100k in the long form), a flood of idle connections, slowloris
// on the HTTP port. Each case logs the members' RSS before and after.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newCluster(t, "bbolt", 3)
	cli := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("leases", func(t *testing.T) {
		n := 5000
		if longDuration(t) > 0 {
			n = 100000
		}
		before := c.rssAll(t)
		start := time.Now()
		var granted, failed atomic.Int64
		var wg sync.WaitGroup
		const workers = 32
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					if _, err := cli.Grant(ctx, 600); err != nil {
						failed.Add(1)
						continue
					}
					granted.Add(1)
				}
			})
		}
		wg.Wait()
		leases, err := cli.Leases(ctx)
		if err != nil {
			t.Fatalf("list leases: %v", err)
		}
		after := c.rssAll(t)
		t.Logf("%d leases granted (%d failed) in %v; %d listed; RSS MiB before %v, after %v",
			granted.Load(), failed.Load(), time.Since(start).Round(time.Millisecond), len(leases.Leases), before, after)
		if failed.Load() > 0 || len(leases.Leases) < n {
			t.Errorf("%d grants failed, %d leases listed, want %d", failed.Load(), len(leases.Leases), n)
		}
		if _, err := cli.Put(ctx, "after-leases", "v"); err != nil {
			t.Errorf("put after the leases: %v", err)
		}
	})

	t.Run("connection flood", func(t *testing.T) {
		const conns = 3000
		m := c.members[0]
		before := c.rssAll(t)
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range conns {
			conn, err := net.DialTimeout("tcp", m.client, 2*time.Second)
			if err != nil {
				t.Logf("dial after %d connections: %v", len(open), err)
				break
			}
			open = append(open, conn)
		}
		// Half of them start an HTTP/2 connection and stop there.
		for i, conn := range open {
			if i%2 == 0 {
				_, _ = conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			}
		}
		mc := c.client("http://" + m.client)
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := mc.Put(pctx, "during-flood", "v")
		pcancel()
		if err != nil {
			t.Errorf("put on %s with %d idle connections open: %v", m.name, len(open), err)
		}
		during := c.rssAll(t)
		t.Logf("%d idle connections to %s; RSS MiB before %v, during %v", len(open), m.name, before, during)
		if grew := during[m.name] - before[m.name]; grew > 512 {
			t.Errorf("%s grew %d MiB for %d idle connections", m.name, grew, len(open))
		}
		if !m.running() {
			t.Fatalf("%s exited under the flood: %v", m.name, m.err)
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		const conns = 500
		m := c.members[1]
		before := c.rssAll(t)
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range conns {
			conn, err := net.DialTimeout("tcp", m.client, 2*time.Second)
			if err != nil {
				break
			}
			_, _ = conn.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n"))
			open = append(open, conn)
		}
		// A header line a second, never finishing the request, while a
		// well-behaved client asks for /health.
		hc := &http.Client{Timeout: 5 * time.Second}
		defer hc.CloseIdleConnections()
		var served int
		for i := range 5 {
			for _, conn := range open {
				_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = fmt.Fprintf(conn, "X-Slow-%d: y\r\n", i)
			}
			resp, err := hc.Get("http://" + m.client + "/health")
			if err != nil {
				t.Errorf("/health of %s under slowloris: %v", m.name, err)
			} else {
				resp.Body.Close()
				served++
			}
			time.Sleep(time.Second)
		}
		during := c.rssAll(t)
		t.Logf("%d slowloris connections to %s; /health served %d of 5; RSS MiB before %v, during %v", len(open), m.name, served, before, during)
		if grew := during[m.name] - before[m.name]; grew > 256 {
			t.Errorf("%s grew %d MiB for %d slow connections", m.name, grew, len(open))
		}
	})

	for _, m := range c.members {
		if !m.running() {
			t.Errorf("%s exited: %v", m.name, m.err)
		}
	}
	c.checkLogs()
}

// TestDamagedFilesOnRestart damages a stopped member's raft log and engine
// file the ways a crash or a bad disk does, and restarts it: a torn tail
// (garbage after the last record) is erased and the member catches up; a
// flipped byte in an acknowledged record or a truncated engine file is
// refused at start with a message saying what is wrong, never a panic,
// and the member, wiped, removed and added back, serves again.
func TestDamagedFilesOnRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newCluster(t, "bbolt", 3)
	w := startAckWriters(c.client(), "damage/", 4, 200)
	defer w.stop()
	w.waitAcked(t, 200, 30*time.Second)
	s := &scenario{t: t, c: c, rec: newRecorder(), admin: c.client()}

	follower := func() *member {
		l := c.waitLeader(30 * time.Second)
		for _, m := range c.members {
			if m != l {
				return m
			}
		}
		return nil
	}
	tail := func(m *member) string {
		segs, _ := filepath.Glob(filepath.Join(m.dataDir, "member", "raft", "log", "*.wal"))
		sort.Strings(segs)
		if len(segs) == 0 {
			t.Fatalf("%s has no raft log segment", m.name)
		}
		return segs[len(segs)-1]
	}
	refused := func(m *member, what string) {
		t.Helper()
		code := c.waitExit(t, m, 30*time.Second)
		b, _ := os.ReadFile(m.logPath)
		last := string(b)
		if i := strings.LastIndex(last, "=== "); i >= 0 {
			last = last[i:]
		}
		if code == 0 || strings.Contains(last, "panic:") {
			t.Errorf("%s with %s: exit status %d, want a refusal without a panic\n%s", m.name, what, code, c.logTail(m, 15))
		}
		t.Logf("%s with %s refused to start (status %d): %s", m.name, what, code, lastLine(last))
		s.replaceMember(m)
	}

	t.Run("torn tail", func(t *testing.T) {
		m := follower()
		c.kill(m)
		f, err := os.OpenFile(tail(m), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Garbage after the last complete record, where an append was
		// torn by the crash.
		fi, _ := f.Stat()
		data := make([]byte, fi.Size())
		_, _ = f.ReadAt(data, 0)
		end := len(strings.TrimRight(string(data), "\x00"))
		_, _ = f.WriteAt([]byte("torn record \xff\xfe garbage"), int64(end))
		f.Close()
		c.start(m)
		w.waitAcked(t, 50, 30*time.Second)
		c.waitHealthy(60 * time.Second)
	})

	t.Run("flipped byte in the raft log", func(t *testing.T) {
		m := follower()
		c.kill(m)
		path := tail(m)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		end := len(strings.TrimRight(string(data), "\x00"))
		data[end/3] ^= 0xff
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c.start(m)
		refused(m, "a flipped byte in its raft log")
		w.waitAcked(t, 50, 60*time.Second)
	})

	t.Run("truncated engine file", func(t *testing.T) {
		m := follower()
		c.kill(m)
		path := filepath.Join(m.dataDir, "member", "data", "data.db")
		if err := os.Truncate(path, 1000); err != nil {
			t.Fatal(err)
		}
		c.start(m)
		refused(m, "a truncated engine file")
		w.waitAcked(t, 50, 60*time.Second)
	})

	acked := w.stop()
	c.checkAcked(t, "damage/", acked)
	t.Logf("%d acknowledged writes, none lost", len(acked))
	c.checkLogs()
}

// lastLine returns s's last non-empty line, shortened.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}
