package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/strata-kv/strata/internal/freeport"
)

// BenchSummary is what etcd's benchmark tool (tools/benchmark, "bench")
// prints after a run.
type BenchSummary struct {
	Total     time.Duration
	ReqPerSec float64
	Average   time.Duration
	Slowest   time.Duration
	// Percentiles maps "50", "99", "99.9"... to the latency below which
	// that share of requests finished. The tool leaves out percentiles it
	// has too few samples for (99.9 below 1000 requests).
	Percentiles map[string]time.Duration
	// Errors is the tool's "Error distribution:": failed requests by
	// error message. Failed requests count in neither Requests/sec nor
	// the latencies.
	Errors map[string]int
}

// P99 is the 99th percentile latency, zero when absent.
func (s BenchSummary) P99() time.Duration { return s.Percentiles["99"] }

// Failed is the number of failed requests.
func (s BenchSummary) Failed() int {
	n := 0
	for _, c := range s.Errors {
		n += c
	}
	return n
}

func secs(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}

// BenchOutput is every summary etcd's benchmark tool printed, keyed by the
// heading above it. put, txn-put and range print one summary under no
// heading (""); watch-latency prints "Put summary" and "Watch events
// summary".
type BenchOutput map[string]BenchSummary

// ParseEtcdBenchOutput parses what etcd's benchmark tool writes to stdout:
// each "Summary:" block with its "Latency distribution:" and "Error
// distribution:", under the heading line ("Put summary:") before it. A
// block that failed every request has errors and no summary. It fails
// when the output holds neither a summary nor errors.
func ParseEtcdBenchOutput(r io.Reader) (BenchOutput, error) {
	out, _, err := parseBenchOutput(r)
	return out, err
}

// parseBenchOutput is ParseEtcdBenchOutput, also returning the headings
// in the order they appeared.
func parseBenchOutput(r io.Reader) (BenchOutput, []string, error) {
	sums := map[string]*BenchSummary{}
	var order []string
	section, mode := "", ""
	cur := func() *BenchSummary {
		s := sums[section]
		if s == nil {
			s = &BenchSummary{Percentiles: map[string]time.Duration{}}
			sums[section] = s
			order = append(order, section)
		}
		return s
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
		case line == "Summary:":
			cur()
			mode = "summary"
		case line == "Response time histogram:":
			mode = "histogram"
		case line == "Latency distribution:":
			mode = "latency"
		case line == "Error distribution:":
			cur()
			mode = "errors"
		case raw == line && strings.HasSuffix(line, ":"):
			// An unindented heading: "Put summary:", "Watch events summary:".
			section, mode = strings.TrimSuffix(line, ":"), ""
		case mode == "summary":
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSuffix(strings.TrimSpace(v), "secs.")
			s := cur()
			var err error
			switch k {
			case "Total":
				s.Total, err = secs(v)
			case "Average":
				s.Average, err = secs(v)
			case "Slowest":
				s.Slowest, err = secs(v)
			case "Requests/sec":
				s.ReqPerSec, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("bench: parse %q: %w", line, err)
			}
		case mode == "latency":
			// "99% in 0.0212 secs."
			pct, rest, ok := strings.Cut(line, "% in ")
			if !ok {
				continue
			}
			d, err := secs(strings.TrimSuffix(rest, "secs."))
			if err != nil {
				return nil, nil, fmt.Errorf("bench: parse %q: %w", line, err)
			}
			cur().Percentiles[pct] = d
		case mode == "errors":
			// "[12]\tetcdserver: mvcc: database space exceeded"
			if n, msg, ok := strings.Cut(strings.TrimPrefix(line, "["), "]"); ok && strings.HasPrefix(line, "[") {
				c, err := strconv.Atoi(n)
				if err != nil {
					return nil, nil, fmt.Errorf("bench: parse %q: %w", line, err)
				}
				s := cur()
				if s.Errors == nil {
					s.Errors = map[string]int{}
				}
				s.Errors[strings.TrimSpace(msg)] += c
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	out := BenchOutput{}
	for _, k := range order {
		s := sums[k]
		if s.ReqPerSec == 0 && len(s.Errors) == 0 {
			return nil, nil, fmt.Errorf("bench: summary %q without Requests/sec", k)
		}
		out[k] = *s
	}
	if len(out) == 0 {
		return nil, nil, errors.New("bench: no summary with Requests/sec in the benchmark output")
	}
	return out, order, nil
}

// ParseEtcdBench parses the summary etcd's benchmark tool writes to
// stdout: the "Summary:" block and the "Latency distribution:" block. For
// output with several summaries it returns the one under no heading, or
// else the first.
func ParseEtcdBench(r io.Reader) (BenchSummary, error) {
	out, order, err := parseBenchOutput(r)
	if err != nil {
		return BenchSummary{}, err
	}
	s, ok := out[""]
	if !ok {
		s = out[order[0]]
	}
	if s.ReqPerSec == 0 {
		return s, errors.New("bench: no summary with Requests/sec in the benchmark output")
	}
	return s, nil
}

// VersusOptions are the benchmark tool's settings every workload shares.
type VersusOptions struct {
	Conns, Clients int
	// Total is the number of requests of put, txn-put and range.
	Total            int
	KeySize, ValSize int
	// KeySpace is the key space of put and txn-put.
	KeySpace int
	// WatchPutTotal puts at WatchPutRate a second drive watch-latency, to
	// WatchStreams streams of WatchersPerStream watchers each.
	WatchPutTotal, WatchPutRate     int
	WatchStreams, WatchersPerStream int
}

// DefaultVersusOptions are the performance bar's settings: --conns=10
// --clients=100, 8-byte keys and 256-byte values, 10000 keys; a moderate
// watch-latency run (5 s of puts, 100 watchers).
func DefaultVersusOptions() VersusOptions {
	return VersusOptions{Conns: 10, Clients: 100, Total: 100000, KeySize: 8, ValSize: 256, KeySpace: 10000,
		WatchPutTotal: 500, WatchPutRate: 100, WatchStreams: 10, WatchersPerStream: 10}
}

// VersusRangeKey is the key the range workloads read; it is put (with a
// value of ValSize bytes) with etcdctl before they run, as etcd's
// benchmark docs do.
const VersusRangeKey = "foo"

// VersusWorkload is one of etcd's benchmark tool's commands, with the bar
// Strata must meet against etcd.
type VersusWorkload struct {
	Name string
	// Section is the summary in the tool's output that measures the
	// workload ("" for the only one).
	Section string
	// Preload: put VersusRangeKey before the run.
	Preload bool
	// MinThroughput is the lowest acceptable median Strata/etcd
	// throughput ratio, MaxP99 the highest acceptable median p99 ratio;
	// zero means no bar on that figure.
	MinThroughput, MaxP99 float64
	args                  func(o VersusOptions) []string
}

func flagArgs(kv ...any) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, fmt.Sprintf("--%s=%v", kv[i], kv[i+1]))
	}
	return out
}

var versusWorkloads = []VersusWorkload{
	{Name: "put", MinThroughput: 1.3, MaxP99: 1, args: func(o VersusOptions) []string {
		return append([]string{"put"}, flagArgs("key-size", o.KeySize, "val-size", o.ValSize,
			"key-space-size", o.KeySpace, "total", o.Total)...)
	}},
	{Name: "txn-put", MinThroughput: 1.3, args: func(o VersusOptions) []string {
		return append([]string{"txn-put"}, flagArgs("key-size", o.KeySize, "val-size", o.ValSize,
			"key-space-size", o.KeySpace, "total", o.Total)...)
	}},
	{Name: "range-l", Preload: true, MinThroughput: 1.2, args: func(o VersusOptions) []string {
		return append([]string{"range", VersusRangeKey}, flagArgs("consistency", "l", "total", o.Total)...)
	}},
	{Name: "range-s", Preload: true, MinThroughput: 1.0, args: func(o VersusOptions) []string {
		return append([]string{"range", VersusRangeKey}, flagArgs("consistency", "s", "total", o.Total)...)
	}},
	{Name: "watch-latency", Section: "Watch events summary", MaxP99: 1, args: func(o VersusOptions) []string {
		return append([]string{"watch-latency"}, flagArgs("put-total", o.WatchPutTotal, "put-rate", o.WatchPutRate,
			"streams", o.WatchStreams, "watchers-per-stream", o.WatchersPerStream,
			"key-size", o.KeySize, "val-size", o.ValSize)...)
	}},
}

// VersusWorkloads lists the workloads versus knows, in the bar's order.
func VersusWorkloads() []VersusWorkload { return slices.Clone(versusWorkloads) }

// LookupVersusWorkload finds a workload by name.
func LookupVersusWorkload(name string) (VersusWorkload, bool) {
	for _, w := range versusWorkloads {
		if w.Name == name {
			return w, true
		}
	}
	return VersusWorkload{}, false
}

// Args is the benchmark tool's command line for w after --endpoints.
func (w VersusWorkload) Args(o VersusOptions) []string {
	args := flagArgs("conns", o.Conns, "clients", o.Clients)
	args = append(args, "--precise")
	if w.args == nil {
		return args
	}
	return append(args, w.args(o)...)
}

// Bar describes the bar, e.g. "throughput >= 1.30x, p99 <= 1.00x".
func (w VersusWorkload) Bar() string {
	var parts []string
	if w.MinThroughput > 0 {
		parts = append(parts, fmt.Sprintf("throughput >= %.2fx", w.MinThroughput))
	}
	if w.MaxP99 > 0 {
		parts = append(parts, fmt.Sprintf("p99 <= %.2fx", w.MaxP99))
	}
	return strings.Join(parts, ", ")
}

// Met tells whether the median ratios meet the bar.
func (w VersusWorkload) Met(throughput, p99 float64) bool {
	if w.MinThroughput > 0 && !(throughput >= w.MinThroughput) {
		return false
	}
	if w.MaxP99 > 0 && !(p99 > 0 && p99 <= w.MaxP99) {
		return false
	}
	return true
}

// VersusConfig sets up a head-to-head of Strata and etcd on etcd's own
// benchmark tool.
type VersusConfig struct {
	Etcd, Strata, Bench string // binaries
	// Etcdctl puts the key the range workloads read; etcdctl next to
	// Etcd when empty.
	Etcdctl string
	// StrataArgs and EtcdArgs are extra flags for each server (e.g.
	// --backend=pebble), after versus's own.
	StrataArgs, EtcdArgs []string
	// Nodes is the cluster size, 1 (default) or 3; the benchmark tool is
	// pointed at every member.
	Nodes  int
	Rounds int
	// Workloads are names from VersusWorkloads; put when empty.
	Workloads []string
	Options   VersusOptions
	// BenchArgs, when set, replaces Workloads with one workload, "custom",
	// running exactly these arguments after --endpoints, e.g.
	// put --key-size=8 --val-size=256 --key-space-size=10000 --total=100000.
	BenchArgs []string
	// RunTimeout bounds one benchmark run (10 minutes when zero).
	RunTimeout time.Duration
	// Dir holds the servers' data directories (a temporary one when empty).
	Dir string
	// Log receives progress lines, each run's figures and the servers'
	// failures.
	Log io.Writer
}

// VersusRun is one benchmark run against one cluster.
type VersusRun struct {
	Workload string
	Nodes    int
	Round    int
	Target   string // "etcd" or "strata"
	// Summary is the workload's summary (Watch events summary for
	// watch-latency); Output holds every summary the tool printed.
	Summary BenchSummary
	Output  BenchOutput
	// PeakRSS is the sum over members of each one's peak RSS.
	PeakRSS int64
	// Err is why the run failed ("" when it did not): the benchmark tool
	// exited non-zero, or printed no summary.
	Err string
	// Stderr holds the tool's warnings and errors (gRPC's INFO lines and
	// the progress bar left out).
	Stderr []string
	// ServerLog is the tail of what the members printed at --log-level=error
	// (errors, panics) from their start to the benchmark's end, each line
	// prefixed with the member's name.
	ServerLog []string
	BenchArgs []string
}

// VersusResult holds every run, in the order they were made.
type VersusResult struct {
	Nodes int
	Runs  []VersusRun
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// procServer is one server process.
type procServer struct {
	name   string
	cmd    *exec.Cmd
	client string // host:port
	exited chan error
	out    *tailBuffer
}

func (s *procServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// procCluster is a fresh cluster of server processes on loopback.
type procCluster struct {
	members []*procServer
}

func (c *procCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return eps
}

func (c *procCluster) stop() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Go(m.stop)
	}
	wg.Wait()
}

// logTail returns the last lines each member printed, prefixed by its name.
func (c *procCluster) logTail(maxLines int) []string {
	var out []string
	for _, m := range c.members {
		lines := strings.Split(strings.TrimRight(m.out.String(), "\n"), "\n")
		if len(lines) == 1 && lines[0] == "" {
			continue
		}
		if len(lines) > maxLines {
			out = append(out, fmt.Sprintf("%s: (%d earlier lines left out)", m.name, len(lines)-maxLines))
			lines = lines[len(lines)-maxLines:]
		}
		for _, l := range lines {
			out = append(out, m.name+": "+l)
		}
	}
	return out
}

// startCluster starts n members of bin, each with its own data directory
// under dir, and waits until every member's /health answers 200.
func startCluster(ctx context.Context, bin string, extra []string, dir string, n int) (*procCluster, error) {
	addrs, err := freeport.Addrs(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, addrs[2*i+1]))
	}
	c := &procCluster{}
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		curl, purl := "http://"+addrs[2*i], "http://"+addrs[2*i+1]
		args := []string{"--name=" + name, "--data-dir=" + filepath.Join(dir, name),
			"--listen-client-urls=" + curl, "--advertise-client-urls=" + curl,
			"--listen-peer-urls=" + purl, "--initial-advertise-peer-urls=" + purl,
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new",
			"--log-level=error"}
		args = append(args, extra...)
		s := &procServer{name: name, client: addrs[2*i], exited: make(chan error, 1), out: &tailBuffer{max: 256 << 10}}
		s.cmd = exec.Command(bin, args...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			c.stop()
			return nil, err
		}
		go func() { s.exited <- s.cmd.Wait() }()
		c.members = append(c.members, s)
	}
	// Ready when every member's /health answers 200: it has a leader and
	// serves a linearizable read.
	timeout := 20 * time.Second
	if n > 1 {
		timeout = 40 * time.Second
	}
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	healthy := make([]bool, n)
	for {
		for _, m := range c.members {
			select {
			case err := <-m.exited:
				m.exited <- err
				c.stop()
				return nil, fmt.Errorf("%s %s exited early: %v\n%s", bin, m.name, err, m.out.String())
			default:
			}
		}
		all := true
		for i, m := range c.members {
			if healthy[i] {
				continue
			}
			if resp, err := hc.Get("http://" + m.client + "/health"); err == nil {
				resp.Body.Close()
				healthy[i] = resp.StatusCode == http.StatusOK
			}
			all = all && healthy[i]
		}
		if all {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s: not every member healthy after %v\n%s", bin, timeout, strings.Join(c.logTail(20), "\n"))
		}
		select {
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type versusJob struct {
	w    VersusWorkload
	args []string // after --endpoints
}

// RunVersus runs cfg.Rounds rounds; in each, every workload runs once
// against a fresh etcd cluster and once against a fresh Strata cluster,
// started one at a time, stopped and deleted after the run. The order
// alternates between rounds (etcd first in odd rounds), so neither side
// always gets the warmer machine. A failed benchmark run is kept in the
// result, with its error, and the rounds go on; RunVersus then returns an
// error naming the failed runs. A server that does not start ends it.
func RunVersus(ctx context.Context, cfg VersusConfig) (*VersusResult, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1
	}
	if cfg.Nodes != 1 && cfg.Nodes != 3 {
		return nil, fmt.Errorf("versus: --nodes=%d: 1 or 3", cfg.Nodes)
	}
	if cfg.Options == (VersusOptions{}) {
		cfg.Options = DefaultVersusOptions()
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = 10 * time.Minute
	}
	var jobs []versusJob
	if len(cfg.BenchArgs) > 0 {
		jobs = append(jobs, versusJob{w: VersusWorkload{Name: "custom"}, args: cfg.BenchArgs})
	} else {
		names := cfg.Workloads
		if len(names) == 0 {
			names = []string{"put"}
		}
		for _, name := range names {
			w, ok := LookupVersusWorkload(name)
			if !ok {
				return nil, fmt.Errorf("versus: unknown workload %q (have %s)", name, strings.Join(VersusWorkloadNames(), ", "))
			}
			jobs = append(jobs, versusJob{w: w, args: w.Args(cfg.Options)})
			if w.Preload && cfg.Etcdctl == "" {
				cfg.Etcdctl = filepath.Join(filepath.Dir(cfg.Etcd), "etcdctl")
			}
		}
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	dir := cfg.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "kvbench-versus-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	res := &VersusResult{Nodes: cfg.Nodes}
	var failed []string
	for round := 1; round <= cfg.Rounds; round++ {
		order := []string{"etcd", "strata"}
		if round%2 == 0 {
			order = []string{"strata", "etcd"}
		}
		for _, job := range jobs {
			for _, target := range order {
				bin, extra := cfg.Etcd, cfg.EtcdArgs
				if target == "strata" {
					bin, extra = cfg.Strata, cfg.StrataArgs
				}
				data := filepath.Join(dir, fmt.Sprintf("%s-%s-%d", target, job.w.Name, round))
				run, err := versusOnce(ctx, cfg, job, bin, extra, data)
				os.RemoveAll(data)
				run.Workload, run.Nodes, run.Round, run.Target = job.w.Name, cfg.Nodes, round, target
				if err != nil {
					return res, fmt.Errorf("round %d, %s, %s: %w", round, job.w.Name, target, err)
				}
				res.Runs = append(res.Runs, run)
				logRun(logw, cfg.Rounds, run)
				if run.Err != "" {
					failed = append(failed, fmt.Sprintf("round %d %s %s", round, job.w.Name, target))
				}
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
			}
		}
	}
	if failed != nil {
		return res, fmt.Errorf("versus: %d runs failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return res, nil
}

// VersusWorkloadNames lists the workloads' names.
func VersusWorkloadNames() []string {
	var names []string
	for _, w := range versusWorkloads {
		names = append(names, w.Name)
	}
	return names
}

func logRun(w io.Writer, rounds int, run VersusRun) {
	s := run.Summary
	if run.Err != "" {
		fmt.Fprintf(w, "round %d/%d %s %s: FAILED: %s\n", run.Round, rounds, run.Workload, run.Target, run.Err)
	} else {
		fmt.Fprintf(w, "round %d/%d %s %s: %.0f req/s, p50 %s ms, p99 %s ms, peak RSS %s\n", run.Round, rounds,
			run.Workload, run.Target, s.ReqPerSec, ms(s.Percentiles["50"]), ms(s.P99()), bytesString(run.PeakRSS))
	}
	for _, out := range sortedKeys(run.Output) {
		for _, msg := range sortedKeys(run.Output[out].Errors) {
			sect := ""
			if out != "" {
				sect = " (" + out + ")"
			}
			fmt.Fprintf(w, "  failed requests%s: [%d] %s\n", sect, run.Output[out].Errors[msg], msg)
		}
	}
	for _, l := range run.Stderr {
		fmt.Fprintf(w, "  bench stderr: %s\n", l)
	}
	for _, l := range run.ServerLog {
		fmt.Fprintf(w, "  %s log: %s\n", run.Target, l)
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// versusOnce starts a cluster, runs one benchmark against it and stops it.
// Its error is the cluster's failing to start; the benchmark's failure is
// the run's Err.
func versusOnce(ctx context.Context, cfg VersusConfig, job versusJob, bin string, extra []string, data string) (VersusRun, error) {
	c, err := startCluster(ctx, bin, extra, data, cfg.Nodes)
	if err != nil {
		return VersusRun{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()
	var samplers []*RSSSampler
	for _, m := range c.members {
		samplers = append(samplers, StartRSS(m.cmd.Process.Pid, 0))
	}
	peak := func() int64 {
		var sum int64
		for _, s := range samplers {
			sum += s.Stop()
		}
		return sum
	}
	eps := strings.Join(c.endpoints(), ",")
	run := VersusRun{BenchArgs: job.args}
	if job.w.Preload {
		value := strings.Repeat("v", max(cfg.Options.ValSize, 1))
		cmd := exec.CommandContext(ctx, cfg.Etcdctl, "--endpoints="+eps, "put", VersusRangeKey, value)
		if out, err := cmd.CombinedOutput(); err != nil {
			run.Err = fmt.Sprintf("%s put %s: %v: %s", cfg.Etcdctl, VersusRangeKey, err, strings.TrimSpace(string(out)))
		}
	}
	if run.Err == "" {
		rctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
		cmd := exec.CommandContext(rctx, cfg.Bench, append([]string{"--endpoints=" + eps}, job.args...)...)
		var stdout bytes.Buffer
		stderr := &tailBuffer{max: 1 << 20}
		cmd.Stdout, cmd.Stderr = &stdout, stderr
		err = cmd.Run()
		cancel()
		run.Stderr = benchStderr(stderr.String(), 20)
		out, perr := ParseEtcdBenchOutput(bytes.NewReader(stdout.Bytes()))
		run.Output = out
		switch {
		case err != nil:
			run.Err = fmt.Sprintf("%s: %v", cfg.Bench, err)
			if rctx.Err() == context.DeadlineExceeded {
				run.Err += fmt.Sprintf(" (run timeout %v)", cfg.RunTimeout)
			}
		case perr != nil:
			run.Err = perr.Error()
		default:
			s, ok := out[job.w.Section]
			if !ok {
				run.Err = fmt.Sprintf("bench: no %q in the benchmark output", job.w.Section)
			} else if s.ReqPerSec == 0 {
				run.Err = fmt.Sprintf("bench: every request failed (%d)", s.Failed())
			}
			run.Summary = s
		}
	}
	run.PeakRSS = peak()
	// What the members logged up to now; etcd logs errors about its
	// closed listeners when stopped, which say nothing about the run.
	run.ServerLog = c.logTail(20)
	c.stop()
	stopped = true
	return run, nil
}

var (
	grpcLogLine  = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR): `)
	progressBar  = regexp.MustCompile(`\d+ / \d+ \[[-_>=]*\] *[\d.]+% (\?|[\d.]+) p/s`)
	benchErrLine = regexp.MustCompile(`(?i)error|fail|panic|warn|timeout|refused`)
)

// clientLogLine renders a JSON log line of etcd's client ({"level":"warn",
// "msg":...}) without its timestamp and target, so repeats count as one;
// ok is false for other lines and for info and debug levels.
func clientLogLine(line string) (string, bool) {
	var l struct {
		Level, Msg, Method, Error string
	}
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &l) != nil || l.Msg == "" {
		return "", false
	}
	if l.Level == "info" || l.Level == "debug" {
		return "", false
	}
	out := l.Level + ": " + l.Msg
	if l.Error != "" {
		out += ": " + l.Error
	}
	if l.Method != "" {
		out += " (" + l.Method + ")"
	}
	return out, true
}

// benchStderr picks the benchmark tool's warnings and errors out of its
// stderr: gRPC's log lines other than INFO (INFO's JSON continuation lines
// left out), etcd client's JSON log lines above info, and other lines that
// look like errors. The progress bar is dropped. Repeated lines are
// counted, and at most maxLines kept.
func benchStderr(s string, maxLines int) []string {
	counts := map[string]int{}
	var order []string
	inInfo := false
	for _, line := range strings.Split(s, "\n") {
		// The progress bar is redrawn on the same line, and log lines
		// follow it there.
		if i := strings.LastIndexByte(line, '\r'); i >= 0 {
			line = line[i+1:]
		}
		line = strings.TrimRight(progressBar.ReplaceAllString(line, ""), " \t")
		if inInfo {
			// The JSON an INFO line ends with: indented, up to an
			// unindented "}".
			if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "}") {
				inInfo = !strings.HasPrefix(line, "}")
				continue
			}
			inInfo = false
		}
		if m := grpcLogLine.FindStringSubmatch(line); m != nil {
			if m[1] == "INFO" {
				inInfo = strings.HasSuffix(line, "{")
				continue
			}
			line = line[len("2006/01/02 15:04:05 "):]
		} else if line = strings.TrimSpace(line); line == "" {
			continue
		} else if l, ok := clientLogLine(line); ok {
			line = l
		} else if strings.HasPrefix(line, "{") || !benchErrLine.MatchString(line) {
			continue
		}
		if counts[line] == 0 {
			order = append(order, line)
		}
		counts[line]++
	}
	var out []string
	for _, l := range order {
		if len(out) == maxLines {
			out = append(out, fmt.Sprintf("(%d more distinct lines left out)", len(order)-maxLines))
			break
		}
		if c := counts[l]; c > 1 {
			l = fmt.Sprintf("%s (x%d)", l, c)
		}
		out = append(out, l)
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// roundRatios returns, per round with a successful run of each target,
// Strata/etcd of throughput and p99.
func roundRatios(runs []VersusRun) (rounds []int, tp, lat []float64) {
	byRound := map[int]map[string]VersusRun{}
	for _, run := range runs {
		if run.Err != "" {
			continue
		}
		if byRound[run.Round] == nil {
			byRound[run.Round] = map[string]VersusRun{}
		}
		byRound[run.Round][run.Target] = run
	}
	for _, r := range slices.Sorted(maps.Keys(byRound)) {
		m := byRound[r]
		e, eok := m["etcd"]
		s, sok := m["strata"]
		if !eok || !sok || e.Summary.ReqPerSec == 0 || e.Summary.P99() == 0 {
			continue
		}
		rounds = append(rounds, r)
		tp = append(tp, s.Summary.ReqPerSec/e.Summary.ReqPerSec)
		lat = append(lat, float64(s.Summary.P99())/float64(e.Summary.P99()))
	}
	return rounds, tp, lat
}

// Ratios returns the medians over rounds of Strata/etcd for throughput
// (higher is better for Strata) and p99 latency (lower is better), each
// round's pair compared with itself, over every run: for a result of one
// workload. RatiosFor picks a workload's runs.
func (r *VersusResult) Ratios() (throughput, p99 float64) {
	_, tp, lat := roundRatios(r.Runs)
	return median(tp), median(lat)
}

// RatiosFor is Ratios over one workload's runs.
func (r *VersusResult) RatiosFor(workload string) (throughput, p99 float64) {
	_, tp, lat := roundRatios(r.runsOf(workload))
	return median(tp), median(lat)
}

func (r *VersusResult) runsOf(workload string) []VersusRun {
	var out []VersusRun
	for _, run := range r.Runs {
		if run.Workload == workload {
			out = append(out, run)
		}
	}
	return out
}

// workloads lists the result's workloads in the order they first ran.
func (r *VersusResult) workloads() []string {
	var out []string
	for _, run := range r.Runs {
		if !slices.Contains(out, run.Workload) {
			out = append(out, run.Workload)
		}
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// msOrDash is ms, or "-" for a percentile the tool left out.
func msOrDash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return ms(d)
}

func nodesString(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

// WriteTable prints every run and the median ratios, per workload, then a
// summary of the workloads against the bar.
func (r *VersusResult) WriteTable(w io.Writer) {
	names := r.workloads()
	for i, name := range names {
		if i > 0 {
			fmt.Fprintln(w)
		}
		runs := r.runsOf(name)
		if name != "" {
			fmt.Fprintf(w, "== %s, %s: bench %s\n", name, nodesString(max(r.Nodes, 1)), strings.Join(runs[0].BenchArgs, " "))
		}
		if r.Nodes > 1 {
			fmt.Fprintf(w, "(peak RSS is the sum of the members')\n")
		}
		writeRuns(w, runs)
	}
	if len(names) > 1 || (len(names) == 1 && names[0] != "" && names[0] != "custom") {
		fmt.Fprintf(w, "\n== the bar, %s: median of per-round strata/etcd ratios\n", nodesString(max(r.Nodes, 1)))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "workload\trounds\tthroughput\tp99\tbar\tmet")
		for _, name := range names {
			wl, ok := LookupVersusWorkload(name)
			rounds, tp, lat := roundRatios(r.runsOf(name))
			met := "-"
			switch {
			case !ok:
			case len(rounds) == 0:
				met = "no runs"
			case wl.Met(median(tp), median(lat)):
				met = "yes"
			default:
				met = "NO"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2fx\t%.2fx\t%s\t%s\n", name, len(rounds), median(tp), median(lat), orDash(wl.Bar()), met)
		}
		tw.Flush()
	}
}

func writeRuns(w io.Writer, runs []VersusRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\ttarget\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tpeak RSS\tfailed\t")
	med := map[string][][]float64{}
	for _, run := range runs {
		s := run.Summary
		if run.Err != "" {
			fmt.Fprintf(tw, "%d\t%s\tFAILED\t\t\t\t\t%s\t%d\t\n", run.Round, run.Target, bytesString(run.PeakRSS), s.Failed())
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", run.Round, run.Target, s.ReqPerSec,
			msOrDash(s.Percentiles["50"]), msOrDash(s.Percentiles["90"]), msOrDash(s.P99()), msOrDash(s.Percentiles["99.9"]),
			bytesString(run.PeakRSS), s.Failed())
		m := med[run.Target]
		if m == nil {
			m = make([][]float64, 3)
		}
		m[0] = append(m[0], s.ReqPerSec)
		m[1] = append(m[1], float64(s.P99()))
		m[2] = append(m[2], float64(run.PeakRSS))
		med[run.Target] = m
	}
	for _, t := range []string{"etcd", "strata"} {
		if m := med[t]; m != nil {
			fmt.Fprintf(tw, "median\t%s\t%.0f\t\t\t%s\t\t%s\t\t\n", t, median(m[0]), ms(time.Duration(median(m[1]))),
				bytesString(int64(median(m[2]))))
		}
	}
	tw.Flush()
	_, tps, lats := roundRatios(runs)
	tp, p99 := median(tps), median(lats)
	fmt.Fprintf(w, "median of per-round ratios, strata/etcd: throughput %.2fx (higher is better), p99 %.2fx (lower is better)\n", tp, p99)
	if len(runs) > 0 {
		if wl, ok := LookupVersusWorkload(runs[0].Workload); ok {
			verdict := "met"
			if len(tps) == 0 {
				verdict = "no complete round"
			} else if !wl.Met(tp, p99) {
				verdict = "NOT met"
			}
			fmt.Fprintf(w, "bar: %s: %s\n", wl.Bar(), verdict)
		}
	}
}

// VersusJSON is what --json writes: every run and, per workload, the
// medians and the bar.
type VersusJSON struct {
	Started    time.Time          `json:"started"`
	GoVersion  string             `json:"go_version"`
	CPUs       int                `json:"cpus"`
	Args       []string           `json:"args,omitempty"`
	Nodes      int                `json:"nodes"`
	Etcd       string             `json:"etcd,omitempty"`
	Strata     string             `json:"strata,omitempty"`
	Bench      string             `json:"bench,omitempty"`
	EtcdArgs   []string           `json:"etcd_args,omitempty"`
	StrataArgs []string           `json:"strata_args,omitempty"`
	Runs       []VersusRunJSON    `json:"runs"`
	Medians    []VersusMedianJSON `json:"medians"`
}

// VersusStatsJSON are one run's figures, or medians over runs. Latencies
// are in milliseconds; an absent percentile is left out.
type VersusStatsJSON struct {
	Throughput float64 `json:"throughput"` // requests (events for watch-latency) a second
	P50        float64 `json:"p50_ms,omitempty"`
	P90        float64 `json:"p90_ms,omitempty"`
	P99        float64 `json:"p99_ms,omitempty"`
	P999       float64 `json:"p99_9_ms,omitempty"`
	PeakRSS    int64   `json:"peak_rss_bytes,omitempty"`
}

// VersusRunJSON is one run. ThroughputRatio and P99Ratio are this round's
// Strata/etcd, on both targets' runs, when both succeeded.
type VersusRunJSON struct {
	Workload string `json:"workload"`
	Nodes    int    `json:"nodes"`
	Round    int    `json:"round"`
	Target   string `json:"target"`
	VersusStatsJSON
	ThroughputRatio float64        `json:"throughput_ratio,omitempty"`
	P99Ratio        float64        `json:"p99_ratio,omitempty"`
	Failed          int            `json:"failed_requests,omitempty"`
	Errors          map[string]int `json:"errors,omitempty"`
	Err             string         `json:"error,omitempty"`
	Stderr          []string       `json:"bench_stderr,omitempty"`
	ServerLog       []string       `json:"server_log,omitempty"`
	BenchArgs       []string       `json:"bench_args,omitempty"`
}

// VersusMedianJSON is one workload's medians over rounds.
type VersusMedianJSON struct {
	Workload string          `json:"workload"`
	Nodes    int             `json:"nodes"`
	Rounds   int             `json:"rounds"` // rounds with both runs successful
	Etcd     VersusStatsJSON `json:"etcd"`
	Strata   VersusStatsJSON `json:"strata"`
	// Median of the per-round ratios.
	ThroughputRatio float64 `json:"throughput_ratio"`
	P99Ratio        float64 `json:"p99_ratio"`
	MinThroughput   float64 `json:"bar_min_throughput_ratio,omitempty"`
	MaxP99          float64 `json:"bar_max_p99_ratio,omitempty"`
	Met             *bool   `json:"bar_met,omitempty"`
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func statsOf(s BenchSummary, rss int64) VersusStatsJSON {
	return VersusStatsJSON{Throughput: s.ReqPerSec, P50: msf(s.Percentiles["50"]), P90: msf(s.Percentiles["90"]),
		P99: msf(s.P99()), P999: msf(s.Percentiles["99.9"]), PeakRSS: rss}
}

// JSON returns the result as written by WriteJSON, with cfg's binaries
// and flags for the record.
func (r *VersusResult) JSON(cfg VersusConfig, args []string) VersusJSON {
	out := VersusJSON{Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Args: args,
		Nodes: max(r.Nodes, 1), Etcd: cfg.Etcd, Strata: cfg.Strata, Bench: cfg.Bench,
		EtcdArgs: cfg.EtcdArgs, StrataArgs: cfg.StrataArgs, Runs: []VersusRunJSON{}, Medians: []VersusMedianJSON{}}
	for _, name := range r.workloads() {
		runs := r.runsOf(name)
		rounds, tps, lats := roundRatios(runs)
		perRound := map[int][2]float64{}
		for i, rd := range rounds {
			perRound[rd] = [2]float64{tps[i], lats[i]}
		}
		med := map[string][]VersusStatsJSON{}
		for _, run := range runs {
			st := statsOf(run.Summary, run.PeakRSS)
			var errs map[string]int
			for sect, s := range run.Output {
				for msg, c := range s.Errors {
					if errs == nil {
						errs = map[string]int{}
					}
					if sect != "" {
						msg = sect + ": " + msg
					}
					errs[msg] += c
				}
			}
			rj := VersusRunJSON{Workload: run.Workload, Nodes: run.Nodes, Round: run.Round, Target: run.Target,
				VersusStatsJSON: st, Failed: run.Summary.Failed(), Errors: errs, Err: run.Err,
				Stderr: run.Stderr, ServerLog: run.ServerLog, BenchArgs: run.BenchArgs}
			if pr, ok := perRound[run.Round]; ok {
				rj.ThroughputRatio, rj.P99Ratio = pr[0], pr[1]
			}
			out.Runs = append(out.Runs, rj)
			if run.Err == "" {
				med[run.Target] = append(med[run.Target], st)
			}
		}
		mj := VersusMedianJSON{Workload: name, Nodes: max(r.Nodes, 1), Rounds: len(rounds),
			Etcd: medianStats(med["etcd"]), Strata: medianStats(med["strata"]),
			ThroughputRatio: median(tps), P99Ratio: median(lats)}
		if wl, ok := LookupVersusWorkload(name); ok {
			mj.MinThroughput, mj.MaxP99 = wl.MinThroughput, wl.MaxP99
			met := len(rounds) > 0 && wl.Met(mj.ThroughputRatio, mj.P99Ratio)
			mj.Met = &met
		}
		out.Medians = append(out.Medians, mj)
	}
	return out
}

func medianStats(ss []VersusStatsJSON) VersusStatsJSON {
	pick := func(f func(VersusStatsJSON) float64) float64 {
		var xs []float64
		for _, s := range ss {
			if v := f(s); v > 0 {
				xs = append(xs, v)
			}
		}
		return median(xs)
	}
	return VersusStatsJSON{
		Throughput: pick(func(s VersusStatsJSON) float64 { return s.Throughput }),
		P50:        pick(func(s VersusStatsJSON) float64 { return s.P50 }),
		P90:        pick(func(s VersusStatsJSON) float64 { return s.P90 }),
		P99:        pick(func(s VersusStatsJSON) float64 { return s.P99 }),
		P999:       pick(func(s VersusStatsJSON) float64 { return s.P999 }),
		PeakRSS:    int64(pick(func(s VersusStatsJSON) float64 { return float64(s.PeakRSS) })),
	}
}

// WriteJSON writes r.JSON(cfg, args), indented.
func (r *VersusResult) WriteJSON(w io.Writer, cfg VersusConfig, args []string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSON(cfg, args))
}
