package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for a server and for etcd's
// benchmark tool, so RunVersus can be tested without either.
func TestMain(m *testing.M) {
	switch os.Getenv("BENCH_FAKE") {
	case "server":
		fakeServer()
		return
	case "bench":
		fh, err := os.Open(os.Getenv("BENCH_FAKE_OUTPUT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(os.Stdout, fh)
		return
	}
	os.Exit(m.Run())
}

// fakeServer answers /health on --listen-client-urls until SIGTERM.
func fakeServer() {
	var addr string
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--listen-client-urls=http://"); ok {
			addr = v
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"health":"true"}`)
	})}
	go srv.ListenAndServe()
	<-stop
	srv.Close()
}

func TestParseEtcdBench(t *testing.T) {
	fh, err := os.Open("testdata/etcd-bench-put.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	s, err := ParseEtcdBench(fh)
	if err != nil {
		t.Fatal(err)
	}
	if s.ReqPerSec != 12529.3525 {
		t.Errorf("req/s %v", s.ReqPerSec)
	}
	if s.Total != 399100*time.Microsecond || s.Slowest != 23500*time.Microsecond || s.Average != 7700*time.Microsecond {
		t.Errorf("total %v slowest %v average %v", s.Total, s.Slowest, s.Average)
	}
	want := map[string]time.Duration{"10": 4200 * time.Microsecond, "50": 6900 * time.Microsecond,
		"99": 21200 * time.Microsecond, "99.9": 23300 * time.Microsecond}
	for k, v := range want {
		if s.Percentiles[k] != v {
			t.Errorf("p%s = %v, want %v", k, s.Percentiles[k], v)
		}
	}
	if s.P99() != want["99"] || len(s.Percentiles) != 8 {
		t.Errorf("p99 %v, %d percentiles", s.P99(), len(s.Percentiles))
	}
}

func TestParseEtcdBenchRejectsOther(t *testing.T) {
	if _, err := ParseEtcdBench(strings.NewReader("Error: context deadline exceeded\n")); err == nil {
		t.Fatal("parsed output without a summary")
	}
}

func TestVersusRatios(t *testing.T) {
	run := func(round int, target string, rps float64, p99ms int) VersusRun {
		return VersusRun{Round: round, Target: target, Summary: BenchSummary{ReqPerSec: rps,
			Percentiles: map[string]time.Duration{"99": time.Duration(p99ms) * time.Millisecond}}}
	}
	r := &VersusResult{Runs: []VersusRun{
		run(1, "etcd", 100, 10), run(1, "strata", 200, 5), // 2x, 0.5x
		run(2, "strata", 90, 10), run(2, "etcd", 100, 10), // 0.9x, 1x
		run(3, "etcd", 100, 10), run(3, "strata", 110, 20), // 1.1x, 2x
	}}
	tp, p99 := r.Ratios()
	if tp != 1.1 || p99 != 1 {
		t.Fatalf("ratios %v %v, want 1.1 1", tp, p99)
	}
	var b strings.Builder
	r.WriteTable(&b)
	if !strings.Contains(b.String(), "throughput 1.10x") || !strings.Contains(b.String(), "median") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestRunVersusWithFakes(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BENCH_FAKE_OUTPUT", "testdata/etcd-bench-put.txt")
	// The fakes tell their role from the environment, which both inherit;
	// wrap them in env(1) to set it per binary.
	env, err := exec.LookPath("env")
	if err != nil {
		t.Skip(err)
	}
	fake := func(role string) string {
		p := t.TempDir() + "/" + role
		script := fmt.Sprintf("#!/bin/sh\nexec %s BENCH_FAKE=%s %s \"$@\"\n", env, role, self)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var log strings.Builder
	res, err := RunVersus(context.Background(), VersusConfig{
		Etcd: fake("server"), Strata: fake("server"), Bench: fake("bench"),
		Rounds: 2, BenchArgs: []string{"put"}, Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range res.Runs {
		order = append(order, fmt.Sprintf("%d:%s", r.Round, r.Target))
		if r.Summary.ReqPerSec != 12529.3525 {
			t.Errorf("%+v", r)
		}
	}
	if got := strings.Join(order, " "); got != "1:etcd 1:strata 2:strata 2:etcd" {
		t.Fatalf("order %s", got)
	}
	if tp, p99 := res.Ratios(); tp != 1 || p99 != 1 {
		t.Fatalf("ratios %v %v", tp, p99)
	}
}
