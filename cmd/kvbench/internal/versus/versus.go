package versus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-kv/strata/bench"
)

// Config sets up a head-to-head of Strata and etcd on etcd's own
// benchmark tool.
type Config struct {
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
	// Workloads are names from Workloads; put when empty.
	Workloads []string
	Options   Options
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
	// TLS runs both servers with client and peer mTLS (https URLs, client
	// and peer certificate authentication), and the benchmark tool and
	// etcdctl with a client certificate: the cost of TLS on both sides.
	TLS bool

	// tls is the certificate TLS runs use, made in Dir.
	tls *tlsFiles
}

// BenchRun is one benchmark run against one cluster.
type BenchRun struct {
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
	// MemberCPU is the CPU time (user and system) each member used while
	// the benchmark tool ran, in member order; BenchCPU is the tool's own.
	// Zero where /proc is not available.
	MemberCPU []time.Duration
	BenchCPU  time.Duration
	// Resources are the resources workload's figures.
	Resources *Resources
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

// Result holds every run, in the order they were made.
type Result struct {
	Nodes int
	Runs  []BenchRun
}

type benchJob struct {
	w    Workload
	args []string // after --endpoints
}

// ErrInvalidConfig is wrapped by the errors of Config.Validate.
var ErrInvalidConfig = errors.New("versus: invalid config")

// EnsureDefaults sets the unset fields of c to their default values. Run
// calls it on its own copy of the caller's Config.
func (c *Config) EnsureDefaults() {
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Nodes <= 0 {
		c.Nodes = 1
	}
	if c.Options == (Options{}) {
		c.Options = DefaultOptions()
	}
	if c.RunTimeout <= 0 {
		c.RunTimeout = 10 * time.Minute
	}
	if len(c.BenchArgs) == 0 && len(c.Workloads) == 0 {
		c.Workloads = []string{"put"}
	}
	if c.Etcdctl == "" && len(c.BenchArgs) == 0 && slices.ContainsFunc(c.Workloads, func(name string) bool {
		w, ok := LookupWorkload(name)
		return ok && (w.Preload || w.Resources)
	}) {
		c.Etcdctl = filepath.Join(filepath.Dir(c.Etcd), "etcdctl")
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Validate reports a Config that cannot work, with an error wrapping
// ErrInvalidConfig that names kvbench's flag. It expects EnsureDefaults to
// have run.
func (c *Config) Validate() error {
	for _, f := range []struct{ flag, path string }{{"--etcd", c.Etcd}, {"--strata", c.Strata}, {"--bench", c.Bench}} {
		if f.path == "" {
			return fmt.Errorf("%w: %s is required", ErrInvalidConfig, f.flag)
		}
	}
	if c.Nodes != 1 && c.Nodes != 3 {
		return fmt.Errorf("%w: --nodes=%d: 1 or 3", ErrInvalidConfig, c.Nodes)
	}
	if len(c.BenchArgs) == 0 {
		for _, name := range c.Workloads {
			w, ok := LookupWorkload(name)
			if !ok {
				return fmt.Errorf("%w: --workload: unknown %q (have %s)", ErrInvalidConfig, name, strings.Join(WorkloadNames(), ", "))
			}
			if w.Preset == "" {
				continue
			}
			// kvbench's client store dials without TLS.
			if c.TLS {
				return fmt.Errorf("%w: --workload=%s runs kvbench's own client, which does not do TLS: drop --tls or the workload", ErrInvalidConfig, name)
			}
			if o := c.Options; o.K8sRecords <= 0 || o.K8sClients <= 0 || o.K8sDuration <= 0 {
				return fmt.Errorf("%w: --workload=%s: --k8s-records (%d), --k8s-clients (%d) and --k8s-duration (%s) must be positive",
					ErrInvalidConfig, name, o.K8sRecords, o.K8sClients, o.K8sDuration)
			}
		}
	}
	return nil
}

// Run runs cfg.Rounds rounds; in each, every workload runs once
// against a fresh etcd cluster and once against a fresh Strata cluster,
// started one at a time, stopped and deleted after the run. The order
// alternates between rounds (etcd first in odd rounds), so neither side
// always gets the warmer machine. A failed benchmark run is kept in the
// result, with its error, and the rounds go on; Run then returns an
// error naming the failed runs. A server that does not start ends it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.EnsureDefaults() // cfg is Run's own copy
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var jobs []benchJob
	if len(cfg.BenchArgs) > 0 {
		jobs = append(jobs, benchJob{w: Workload{Name: "custom"}, args: cfg.BenchArgs})
	} else {
		for _, name := range cfg.Workloads {
			w, _ := LookupWorkload(name) // known: validated
			jobs = append(jobs, benchJob{w: w, args: w.Args(cfg.Options)})
		}
	}
	logw := cfg.Log
	dir := cfg.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "kvbench-versus-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	if cfg.TLS {
		var err error
		if cfg.tls, err = makeTLSFiles(filepath.Join(dir, "pki")); err != nil {
			return nil, err
		}
	}
	res := &Result{Nodes: cfg.Nodes}
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
				run, err := runOnce(ctx, cfg, job, bin, extra, data)
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

func logRun(w io.Writer, rounds int, run BenchRun) {
	s := run.Summary
	if run.Err != "" {
		fmt.Fprintf(w, "round %d/%d %s %s: FAILED: %s\n", run.Round, rounds, run.Workload, run.Target, run.Err)
	} else {
		fmt.Fprintf(w, "round %d/%d %s %s: %.0f req/s, p50 %s ms, p99 %s ms, peak RSS %s\n", run.Round, rounds,
			run.Workload, run.Target, s.ReqPerSec, ms(s.Percentiles["50"]), ms(s.P99()), bench.FormatBytes(run.PeakRSS))
		if total, members := run.CPUPer1000(); len(members) > 0 {
			parts := make([]string, len(members))
			for i, v := range members {
				parts[i] = fmt.Sprintf("%.3f", v)
			}
			reqs := s.ReqPerSec * s.Total.Seconds()
			fmt.Fprintf(w, "  CPU s per 1000 requests: members %.3f (%s), benchmark tool %.3f\n",
				total, strings.Join(parts, " "), run.BenchCPU.Seconds()*1000/reqs)
		}
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

// membersCPU reads each member's CPU time so far (zero where it cannot).
func membersCPU(c *procCluster) []time.Duration {
	out := make([]time.Duration, len(c.members))
	for i, m := range c.members {
		out[i], _ = bench.ReadCPU(m.cmd.Process.Pid)
	}
	return out
}

// CPUPer1000 is the CPU seconds the members used together per 1000
// successful requests, and each member's share of it; zero when the run
// has no figures.
func (r BenchRun) CPUPer1000() (total float64, members []float64) {
	reqs := r.Summary.ReqPerSec * r.Summary.Total.Seconds()
	if reqs <= 0 || len(r.MemberCPU) == 0 {
		return 0, nil
	}
	for _, d := range r.MemberCPU {
		v := d.Seconds() * 1000 / reqs
		members = append(members, v)
		total += v
	}
	return total, members
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// runOnce starts a cluster, runs one benchmark against it and stops it.
// Its error is the cluster's failing to start; the benchmark's failure is
// the run's Err.
func runOnce(ctx context.Context, cfg Config, job benchJob, bin string, extra []string, data string) (BenchRun, error) {
	c, err := startCluster(ctx, bin, extra, data, cfg.Nodes, cfg.tls)
	if err != nil {
		return BenchRun{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()
	var samplers []*bench.RSSSampler
	for _, m := range c.members {
		samplers = append(samplers, bench.StartRSS(m.cmd.Process.Pid, 0))
	}
	peak := func() int64 {
		var sum int64
		for _, s := range samplers {
			sum += s.Stop().RSS
		}
		return sum
	}
	eps := strings.Join(c.endpoints(), ",")
	run := BenchRun{BenchArgs: job.args}
	if job.w.Preload {
		value := strings.Repeat("v", max(cfg.Options.ValSize, 1))
		cmd := exec.CommandContext(ctx, cfg.Etcdctl, append(append([]string{"--endpoints=" + eps}, cfg.tls.clientArgs()...), "put", RangeKey, value)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			run.Err = fmt.Sprintf("%s put %s: %v: %s", cfg.Etcdctl, RangeKey, err, strings.TrimSpace(string(out)))
		}
	}
	switch {
	case job.w.Resources:
		r, err := runResources(ctx, cfg, c, &run)
		if err != nil {
			run.Err = err.Error()
		}
		run.Resources = r
	case job.w.Preset != "":
		if err := runPreset(ctx, cfg, c, job.w, &run); err != nil {
			run.Err = err.Error()
		}
	case run.Err == "":
		rctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
		cmd := exec.CommandContext(rctx, cfg.Bench, append(append([]string{"--endpoints=" + eps}, cfg.tls.clientArgs()...), job.args...)...)
		var stdout bytes.Buffer
		stderr := &tailBuffer{max: 1 << 20}
		cmd.Stdout, cmd.Stderr = &stdout, stderr
		cpu0 := membersCPU(c)
		err = cmd.Run()
		cancel()
		run.MemberCPU = membersCPU(c)
		for i := range run.MemberCPU {
			run.MemberCPU[i] -= cpu0[i]
		}
		if cmd.ProcessState != nil {
			run.BenchCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
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
