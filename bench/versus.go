package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// BenchSummary is what etcd's benchmark tool (tools/benchmark, "bench")
// prints after a run.
type BenchSummary struct {
	Total     time.Duration
	ReqPerSec float64
	Average   time.Duration
	Slowest   time.Duration
	// Percentiles maps "50", "99", "99.9"... to the latency below which
	// that share of requests finished.
	Percentiles map[string]time.Duration
}

// P99 is the 99th percentile latency, zero when absent.
func (s BenchSummary) P99() time.Duration { return s.Percentiles["99"] }

func secs(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Second)), nil
}

// ParseEtcdBench parses the summary etcd's benchmark tool writes to
// stdout: the "Summary:" block and the "Latency distribution:" block.
func ParseEtcdBench(r io.Reader) (BenchSummary, error) {
	s := BenchSummary{Percentiles: map[string]time.Duration{}}
	sc := bufio.NewScanner(r)
	sawSummary := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "Summary:" {
			sawSummary = true
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok && sawSummary {
			v = strings.TrimSuffix(strings.TrimSpace(v), "secs.")
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
				return s, fmt.Errorf("bench: parse %q: %w", line, err)
			}
			continue
		}
		// "99% in 0.0212 secs."
		if pct, rest, ok := strings.Cut(line, "% in "); ok {
			d, err := secs(strings.TrimSuffix(rest, "secs."))
			if err != nil {
				return s, fmt.Errorf("bench: parse %q: %w", line, err)
			}
			s.Percentiles[pct] = d
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if !sawSummary || s.ReqPerSec == 0 {
		return s, errors.New("bench: no summary with Requests/sec in the benchmark output")
	}
	return s, nil
}

// VersusConfig sets up a head-to-head of Strata and etcd on etcd's own
// benchmark tool.
type VersusConfig struct {
	Etcd, Strata, Bench string // binaries
	// StrataArgs are extra flags for Strata (e.g. --backend=pebble).
	StrataArgs []string
	Rounds     int
	// BenchArgs is the benchmark command after the endpoint flags, e.g.
	// put --key-size=8 --val-size=256 --key-space-size=10000 --total=100000.
	BenchArgs []string
	// Dir holds the servers' data directories (a temporary one when empty).
	Dir string
	// Log receives progress lines and the servers' failures.
	Log io.Writer
}

// VersusRun is one benchmark run against one server.
type VersusRun struct {
	Round   int
	Target  string // "etcd" or "strata"
	Summary BenchSummary
	PeakRSS int64
}

// VersusResult holds every run, in the order they were made.
type VersusResult struct {
	Runs []VersusRun
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procServer is one fresh single-member server process.
type procServer struct {
	cmd    *exec.Cmd
	client string // host:port
	exited chan error
	out    bytes.Buffer
}

func startServer(ctx context.Context, bin string, extra []string, dir string) (*procServer, error) {
	cp, err := freePort()
	if err != nil {
		return nil, err
	}
	pp, err := freePort()
	if err != nil {
		return nil, err
	}
	curl := fmt.Sprintf("http://127.0.0.1:%d", cp)
	purl := fmt.Sprintf("http://127.0.0.1:%d", pp)
	args := []string{"--name=default", "--data-dir=" + dir,
		"--listen-client-urls=" + curl, "--advertise-client-urls=" + curl,
		"--listen-peer-urls=" + purl, "--initial-advertise-peer-urls=" + purl,
		"--initial-cluster=default=" + purl, "--log-level=error"}
	args = append(args, extra...)
	s := &procServer{client: fmt.Sprintf("127.0.0.1:%d", cp), exited: make(chan error, 1)}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.exited <- s.cmd.Wait() }()
	// Ready when /health answers 200.
	deadline := time.Now().Add(20 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("%s exited early: %v\n%s", bin, err, s.out.String())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := hc.Get(curl + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not healthy after 20s\n%s", bin, s.out.String())
		}
	}
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

// RunVersus runs cfg.Rounds rounds; each round starts a fresh etcd and a
// fresh Strata, one at a time, and runs the benchmark once against each.
// The order alternates between rounds (etcd first in odd rounds), so
// neither side always gets the warmer machine.
func RunVersus(ctx context.Context, cfg VersusConfig) (*VersusResult, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
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
	res := &VersusResult{}
	for round := 1; round <= cfg.Rounds; round++ {
		order := []string{"etcd", "strata"}
		if round%2 == 0 {
			order = []string{"strata", "etcd"}
		}
		for _, target := range order {
			bin, extra := cfg.Etcd, []string(nil)
			if target == "strata" {
				bin, extra = cfg.Strata, cfg.StrataArgs
			}
			data := filepath.Join(dir, fmt.Sprintf("%s-%d", target, round))
			fmt.Fprintf(logw, "round %d: %s\n", round, target)
			run, err := versusOnce(ctx, cfg, bin, extra, data)
			os.RemoveAll(data)
			if err != nil {
				return res, fmt.Errorf("round %d, %s: %w", round, target, err)
			}
			run.Round, run.Target = round, target
			res.Runs = append(res.Runs, run)
		}
	}
	return res, nil
}

func versusOnce(ctx context.Context, cfg VersusConfig, bin string, extra []string, data string) (VersusRun, error) {
	srv, err := startServer(ctx, bin, extra, data)
	if err != nil {
		return VersusRun{}, err
	}
	defer srv.stop()
	rss := StartRSS(srv.cmd.Process.Pid, 0)
	args := append([]string{"--endpoints=" + srv.client}, cfg.BenchArgs...)
	cmd := exec.CommandContext(ctx, cfg.Bench, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	peak := rss.Stop()
	if err != nil {
		tail := stderr.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return VersusRun{}, fmt.Errorf("%s: %w\n%s", cfg.Bench, err, tail)
	}
	sum, err := ParseEtcdBench(&stdout)
	if err != nil {
		return VersusRun{}, err
	}
	return VersusRun{Summary: sum, PeakRSS: peak}, nil
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

// Ratios returns the medians over rounds of Strata/etcd for throughput
// (higher is better for Strata) and p99 latency (lower is better), each
// round's pair compared with itself.
func (r *VersusResult) Ratios() (throughput, p99 float64) {
	byRound := map[int]map[string]VersusRun{}
	for _, run := range r.Runs {
		if byRound[run.Round] == nil {
			byRound[run.Round] = map[string]VersusRun{}
		}
		byRound[run.Round][run.Target] = run
	}
	var tp, lat []float64
	for _, m := range byRound {
		e, eok := m["etcd"]
		s, sok := m["strata"]
		if !eok || !sok || e.Summary.ReqPerSec == 0 || e.Summary.P99() == 0 {
			continue
		}
		tp = append(tp, s.Summary.ReqPerSec/e.Summary.ReqPerSec)
		lat = append(lat, float64(s.Summary.P99())/float64(e.Summary.P99()))
	}
	return median(tp), median(lat)
}

// WriteTable prints every run and the median ratios.
func (r *VersusResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\ttarget\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tpeak RSS\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	med := map[string][][]float64{}
	for _, run := range r.Runs {
		s := run.Summary
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t\n", run.Round, run.Target, s.ReqPerSec,
			ms(s.Percentiles["50"]), ms(s.P99()), ms(s.Percentiles["99.9"]), bytesString(run.PeakRSS))
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
			fmt.Fprintf(tw, "median\t%s\t%.0f\t\t%s\t\t%s\t\n", t, median(m[0]), ms(time.Duration(median(m[1]))),
				bytesString(int64(median(m[2]))))
		}
	}
	tw.Flush()
	tp, p99 := r.Ratios()
	fmt.Fprintf(w, "\nmedian of per-round ratios, strata/etcd: throughput %.2fx (higher is better), p99 %.2fx (lower is better)\n", tp, p99)
}
