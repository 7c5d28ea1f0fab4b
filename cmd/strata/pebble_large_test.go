package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/internal/freeport"
)

// The manual run of a keyspace far past etcd's recommended 8 GiB on
// pebble: one strata process, loaded through the etcd v3 API with 20 GiB
// of values that do not compress, its memory sampled throughout; then a
// count over the whole keyspace, random gets (linearizable and
// serializable), and restarts after SIGTERM and after SIGKILL, each timed
// from the process's start to its "ready to serve client requests".
//
//	STRATA_PEBBLE_LARGE=1 go test -run TestPebbleLarge -timeout 3h -v ./cmd/strata
//
// STRATA_PEBBLE_LARGE_GIB (default 20) is the logical size loaded (keys
// times value size), STRATA_PEBBLE_LARGE_VALUE (default 8192) the value
// size, STRATA_PEBBLE_LARGE_CLIENTS (default 64) the concurrent writers,
// each sending one Put at a time, or a Txn of STRATA_PEBBLE_LARGE_BATCH
// puts (one raft entry either way); STRATA_PEBBLE_LARGE_DIR the directory
// the member's data goes in (default the test's temporary directory;
// removed after the run either way); the load stops and the test fails if
// the file system there has less than STRATA_PEBBLE_LARGE_MIN_FREE_GIB
// (default 25) free. STRATA_PEBBLE_LARGE_SETTLE_SECS (default 60) is the
// wait after the load before the settled memory is read.
// STRATA_PEBBLE_LARGE_DROP_CACHES=1 (root) adds a restart after dropping
// the kernel's page cache, the cold case. STRATA_PEBBLE_LARGE_ETCD=path
// runs the same against that etcd binary (bbolt) instead, for comparison.
// STRATA_PEBBLE_LARGE_FLAGS adds flags to the member's command line
// (--enable-pprof, say).
func TestPebbleLarge(t *testing.T) {
	if os.Getenv("STRATA_PEBBLE_LARGE") != "1" {
		t.Skip("the manual 20 GiB pebble run: set STRATA_PEBBLE_LARGE=1")
	}
	gib := envFloat(t, "STRATA_PEBBLE_LARGE_GIB", 20)
	valueSize := int(envFloat(t, "STRATA_PEBBLE_LARGE_VALUE", 8192))
	clients := int(envFloat(t, "STRATA_PEBBLE_LARGE_CLIENTS", 64))
	batch := int(envFloat(t, "STRATA_PEBBLE_LARGE_BATCH", 1))
	minFree := int64(envFloat(t, "STRATA_PEBBLE_LARGE_MIN_FREE_GIB", 25) * (1 << 30))
	root := os.Getenv("STRATA_PEBBLE_LARGE_DIR")
	if root == "" {
		root = t.TempDir()
	}
	dir := filepath.Join(root, "pebble-large.strata")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logical := int64(gib * (1 << 30))
	keys := int(logical / int64(valueSize))
	// The quota counts the engine's files; raise it well past what the
	// load writes (etcd's recommended maximum is 8 GiB).
	quota := max(int64(64)<<30, 3*logical)

	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	client, peer := "http://"+addrs[0], "http://"+addrs[1]
	args := []string{"--name", "s", "--data-dir", dir,
		"--quota-backend-bytes", strconv.FormatInt(quota, 10),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "s=" + peer}
	args = append(args, strings.Fields(os.Getenv("STRATA_PEBBLE_LARGE_FLAGS"))...)
	bin := os.Getenv("STRATA_PEBBLE_LARGE_ETCD")
	if bin == "" {
		args = append(args, "--backend", "pebble")
	} else {
		t.Logf("driving the real etcd: %s", bin)
	}
	t.Logf("%d keys of %d-byte values (%.1f GiB), %d clients, %d puts a request, quota %d GiB, data in %s",
		keys, valueSize, float64(logical)/(1<<30), clients, batch, quota>>30, dir)

	var report []string
	say := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		t.Log(line)
		report = append(report, line)
	}

	p, ready := startReady(t, bin, args)
	say("first start: ready in %v", ready.Round(time.Millisecond))
	cli := largeClient(t, client)
	mem := startMemSampler(p.cmd.Process.Pid)
	t.Cleanup(func() { mem.stop() })

	took := loadPebbleLarge(t, cli, p, keys, valueSize, clients, batch, dir, minFree, mem)
	peak := mem.stop()
	say("load: %d keys x %d B = %.2f GiB in %v: %.1f MiB/s, %.0f keys/s",
		keys, valueSize, float64(int64(keys)*int64(valueSize))/(1<<30), took.Round(time.Second),
		float64(int64(keys)*int64(valueSize))/(1<<20)/took.Seconds(), float64(keys)/took.Seconds())
	say("load: peak RSS %s (anon %s, file %s), VmHWM %s", mib(peak.rss), mib(peak.anon), mib(peak.file), mib(peak.hwm))
	say("after load: %s", diskUse(t, dir))

	settle := time.Duration(envFloat(t, "STRATA_PEBBLE_LARGE_SETTLE_SECS", 60) * float64(time.Second))
	time.Sleep(settle)
	now := readProcMem(p.cmd.Process.Pid)
	say("settled %v after the load: RSS %s (anon %s, file %s); %s", settle, mib(now.rss), mib(now.anon), mib(now.file), heapMetrics(client))
	say("after settling: %s", diskUse(t, dir))

	measureReads := func(when string) {
		countRange(t, cli, keys, say, when)
		// One reader for the latency alone, 16 (kvbench's default) under
		// concurrency.
		for _, r := range []struct{ readers, gets int }{{1, 5000}, {16, 20000}} {
			for _, ser := range []bool{false, true} {
				getLatency(t, cli, keys, valueSize, ser, r.gets, r.readers, say, when)
			}
		}
		m := readProcMem(p.cmd.Process.Pid)
		say("%s: after the reads RSS %s (anon %s, file %s), VmHWM %s", when, mib(m.rss), mib(m.anon), mib(m.file), mib(m.hwm))
	}
	measureReads("before restart")

	restart := func(how string, kill func(*proc), dropCaches bool) {
		cli.Close()
		stopStart := time.Now()
		kill(p)
		select {
		case <-p.done:
		case <-time.After(5 * time.Minute):
			p.cmd.Process.Kill()
			<-p.done
			t.Fatalf("member did not stop after %s", how)
		}
		stopped := time.Since(stopStart)
		if dropCaches {
			syscall.Sync()
			if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
				t.Fatalf("drop caches: %v", err)
			}
		}
		p, ready = startReady(t, bin, args)
		say("restart after %s: stopped in %v; start to ready %v", how, stopped.Round(time.Millisecond), ready.Round(time.Millisecond))
		cli = largeClient(t, client)
		m := readProcMem(p.cmd.Process.Pid)
		say("restart after %s: at ready RSS %s (anon %s, file %s), VmHWM %s; %s", how, mib(m.rss), mib(m.anon), mib(m.file), mib(m.hwm), heapMetrics(client))
		measureReads("after " + how)
	}
	restart("SIGTERM", func(p *proc) { p.cmd.Process.Signal(syscall.SIGTERM) }, false)
	restart("SIGKILL", func(p *proc) { p.cmd.Process.Kill() }, false)
	if os.Getenv("STRATA_PEBBLE_LARGE_DROP_CACHES") == "1" {
		restart("SIGTERM and dropping the page cache", func(p *proc) { p.cmd.Process.Signal(syscall.SIGTERM) }, true)
	}
	cli.Close()
	p.stop(t)
	t.Logf("summary:\n%s", strings.Join(report, "\n"))
}

func envFloat(t *testing.T, name string, def float64) float64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return f
}

// startReady starts a member (strata, or the binary bin if it is not
// empty) and waits for its "ready to serve client requests", returning
// the time from the process's start to that line.
func startReady(t *testing.T, bin string, args []string) (*proc, time.Duration) {
	t.Helper()
	start := time.Now()
	var p *proc
	if bin == "" {
		p = startProc(t, args...)
	} else {
		p = startCmd(t, exec.Command(bin, args...))
	}
	deadline := time.After(30 * time.Minute)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			t.Fatalf("member exited before it was ready: %v\n%s", p.err, p.out.String())
		case <-deadline:
			t.Fatalf("member not ready after 30 minutes:\n%s", p.out.String())
		case <-tick.C:
			if strings.Contains(p.out.String(), "ready to serve client requests") {
				return p, time.Since(start)
			}
		}
	}
}

func largeClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), MaxCallSendMsgSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// largeKeyName is key i's name: a bijection of i, so the keys arrive in
// no order (the engine's keys are revisions, written in order whatever
// the names; the key index is not).
func largeKeyName(i uint64) string {
	z := i + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return fmt.Sprintf("/registry/large/%016x", z)
}

// loadPebbleLarge writes keys keys with clients concurrent writers, each
// sending a Put, or a Txn of batch puts, at a time; the values are slices
// of a random pool at random offsets, so they do not compress.
func loadPebbleLarge(t *testing.T, cli *clientv3.Client, p *proc, keys, valueSize, clients, batch int, dir string, minFree int64, mem *memSampler) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var next, done atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 1))
			pool := make([]byte, 4<<20)
			for i := 0; i+8 <= len(pool); i += 8 {
				u := r.Uint64()
				for j := range 8 {
					pool[i+j] = byte(u >> (8 * j))
				}
			}
			ops := make([]clientv3.Op, 0, batch)
			for ctx.Err() == nil {
				first := int(next.Add(int64(batch))) - batch
				if first >= keys {
					return
				}
				ops = ops[:0]
				for i := first; i < min(first+batch, keys); i++ {
					off := r.IntN(len(pool) - valueSize)
					ops = append(ops, clientv3.OpPut(largeKeyName(uint64(i)), string(pool[off:off+valueSize])))
				}
				tctx, tcancel := context.WithTimeout(ctx, time.Minute)
				var err error
				if len(ops) == 1 {
					_, err = cli.Do(tctx, ops[0])
				} else {
					_, err = cli.Txn(tctx).Then(ops...).Commit()
				}
				tcancel()
				if err != nil {
					cancel(fmt.Errorf("txn of keys %d-%d: %w", first, first+len(ops)-1, err))
					return
				}
				done.Add(int64(len(ops)))
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if err := context.Cause(ctx); err != nil {
				t.Fatalf("load: %v\nmember output (tail):\n%s", err, tail(p.out.String(), 4000))
			}
			return time.Since(start)
		case <-p.done:
			cancel(errors.New("member exited"))
			<-finished
			t.Fatalf("member exited during the load: %v\n%s", p.err, tail(p.out.String(), 4000))
		case <-tick.C:
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				t.Fatal(err)
			}
			free := int64(st.Bavail) * int64(st.Bsize)
			n := done.Load()
			el := time.Since(start)
			m := readProcMem(p.cmd.Process.Pid)
			t.Logf("load %v: %d/%d keys, %.1f MiB/s; RSS %s (anon %s, file %s), peak %s; %s; %.1f GiB free",
				el.Round(time.Second), n, keys, float64(n*int64(valueSize))/(1<<20)/el.Seconds(),
				mib(m.rss), mib(m.anon), mib(m.file), mib(mem.peak().rss), diskUse(t, dir), float64(free)/(1<<30))
			if free < minFree {
				cancel(fmt.Errorf("%.1f GiB free on the data directory's file system, under the %.1f GiB floor", float64(free)/(1<<30), float64(minFree)/(1<<30)))
			}
		}
	}
}

// countRange times a count-only range over the whole keyspace,
// linearizable and serializable.
func countRange(t *testing.T, cli *clientv3.Client, keys int, say func(string, ...any), when string) {
	t.Helper()
	for _, ser := range []bool{false, true} {
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
		if ser {
			opts = append(opts, clientv3.WithSerializable())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		start := time.Now()
		resp, err := cli.Get(ctx, "/registry/large/", opts...)
		d := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("%s: count: %v", when, err)
		}
		if resp.Count != int64(keys) {
			t.Errorf("%s: count %d, want %d", when, resp.Count, keys)
		}
		say("%s: count-only range over %d keys (serializable %v): %v", when, resp.Count, ser, d.Round(time.Microsecond))
	}
}

// getLatency sends n single-key gets of uniformly random keys from
// clients goroutines and reports the latency's percentiles.
func getLatency(t *testing.T, cli *clientv3.Client, keys, valueSize int, serializable bool, n, clients int, say func(string, ...any), when string) {
	t.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	fail := func(err error) { failed.CompareAndSwap(nil, &err) }
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 2))
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key := largeKeyName(uint64(r.IntN(keys)))
				var opts []clientv3.OpOption
				if serializable {
					opts = append(opts, clientv3.WithSerializable())
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				s := time.Now()
				resp, err := cli.Get(ctx, key, opts...)
				lat[i] = time.Since(s)
				cancel()
				switch {
				case err != nil:
					fail(fmt.Errorf("get %s: %w", key, err))
					return
				case len(resp.Kvs) != 1 || len(resp.Kvs[0].Value) != valueSize:
					fail(fmt.Errorf("get %s: %d kvs", key, len(resp.Kvs)))
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if err := failed.Load(); err != nil {
		t.Fatalf("%s: %v", when, *err)
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	kind := "linearizable"
	if serializable {
		kind = "serializable"
	}
	say("%s: %d random %s gets, %d clients: %.0f gets/s, p50 %v, p99 %v, p99.9 %v, max %v", when, n, kind, clients,
		float64(n)/el.Seconds(), pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond),
		pct(0.999).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}

// procMem is a process's memory from /proc/PID/status, in bytes.
type procMem struct{ rss, anon, file, hwm int64 }

func readProcMem(pid int) procMem {
	var m procMem
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		case "RssFile":
			dst = &m.file
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		if fs := bytes.Fields(rest); len(fs) > 0 {
			kb, _ := strconv.ParseInt(string(fs[0]), 10, 64)
			*dst = kb << 10
		}
	}
	return m
}

// memSampler keeps the peak of each of a process's memory figures,
// sampled every 250 ms.
type memSampler struct {
	mu   sync.Mutex
	max  procMem
	quit chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func startMemSampler(pid int) *memSampler {
	s := &memSampler{quit: make(chan struct{})}
	s.wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			m := readProcMem(pid)
			s.mu.Lock()
			s.max = procMem{rss: max(s.max.rss, m.rss), anon: max(s.max.anon, m.anon),
				file: max(s.max.file, m.file), hwm: max(s.max.hwm, m.hwm)}
			s.mu.Unlock()
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *memSampler) peak() procMem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// stop ends the sampling (again: no-op) and returns the peaks.
func (s *memSampler) stop() procMem {
	s.once.Do(func() { close(s.quit) })
	s.wg.Wait()
	return s.peak()
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// diskUse is the space the member's directories take (as du counts it).
func diskUse(t *testing.T, dir string) string {
	t.Helper()
	member := filepath.Join(dir, "member")
	ents, err := os.ReadDir(member)
	if err != nil {
		return "du: " + err.Error()
	}
	parts := []string{fmt.Sprintf("du %s", mib(duOf(dir)))}
	for _, e := range ents {
		if e.IsDir() {
			parts = append(parts, fmt.Sprintf("member/%s %s", e.Name(), mib(duOf(filepath.Join(member, e.Name())))))
		}
	}
	return strings.Join(parts, ", ")
}

// duOf is bench.DU (which counts files removed during the walk as 0, as
// a running member removes compacted tables) for a log line: 0 on error.
func duOf(dir string) int64 {
	n, _ := bench.DU(dir)
	return n
}

// heapMetrics reads the member's Go heap figures from its /metrics.
func heapMetrics(endpoint string) string {
	resp, err := http.Get(endpoint + "/metrics")
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "metrics: " + err.Error()
	}
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_heap_sys_bytes ", "strata_engine_block_cache_bytes"} {
			if strings.HasPrefix(line, name) {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				parts = append(parts, strings.TrimSpace(f[0])+" "+mib(int64(v)))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
