package versus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain lets the test binary stand in for a server and for etcd's
// benchmark tool, so Run can be tested without either.
func TestMain(m *testing.M) {
	switch os.Getenv("BENCH_FAKE") {
	case "server":
		fakeServer()
		return
	case "bench":
		fakeBench()
		return
	case "etcdctl":
		recordFakeArgs("etcdctl")
		if slices.Contains(os.Args, "--write-out=json") {
			fmt.Println(`{"header":{"revision":42}}`)
		} else {
			fmt.Println("OK")
		}
		return
	}
	// A run must stop every process and goroutine it starts.
	goleak.VerifyTestMain(m)
}

// recordFakeArgs appends the fake's command line to $BENCH_FAKE_ARGS, one
// line per call.
func recordFakeArgs(role string) {
	if p := os.Getenv("BENCH_FAKE_ARGS"); p != "" {
		fh, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(fh, role+" "+strings.Join(os.Args[1:], " "))
			fh.Close()
		}
	}
}

// fakeBench prints $BENCH_FAKE_OUTPUT, or when that is a directory the
// captured output of the subcommand it was given (testdata/etcd-bench-
// <put|txn-put|range-l|range-s|watch-latency>.txt), and copies
// $BENCH_FAKE_STDERR, if set, to stderr.
func fakeBench() {
	recordFakeArgs("bench")
	out := os.Getenv("BENCH_FAKE_OUTPUT")
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		sub := ""
		for _, a := range os.Args[1:] {
			switch {
			case sub == "" && !strings.HasPrefix(a, "-"):
				sub = a
			case a == "--consistency=l" || a == "--consistency=s":
				sub += "-" + a[len(a)-1:]
			}
		}
		out = filepath.Join(out, "etcd-bench-"+sub+".txt")
	}
	fh, err := os.Open(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	io.Copy(os.Stdout, fh)
	fh.Close()
	if p := os.Getenv("BENCH_FAKE_STDERR"); p != "" {
		if b, err := os.ReadFile(p); err == nil {
			os.Stderr.Write(b)
		}
	}
}

// fakeServer answers /health on --listen-client-urls until SIGTERM. It
// writes a file of 4 KiB into its --data-dir, and appends its command line
// to $BENCH_FAKE_SERVER_ARGS when set.
func fakeServer() {
	var addr string
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--listen-client-urls=http://"); ok {
			addr = v
		}
		if v, ok := strings.CutPrefix(a, "--data-dir="); ok {
			os.MkdirAll(v, 0o700)
			os.WriteFile(filepath.Join(v, "db"), make([]byte, 4096), 0o600)
		}
	}
	if p := os.Getenv("BENCH_FAKE_SERVER_ARGS"); p != "" {
		if fh, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, strings.Join(os.Args[1:], " "))
			fh.Close()
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
	run := func(round int, target string, rps float64, p99ms int) BenchRun {
		return BenchRun{Round: round, Target: target, Summary: BenchSummary{ReqPerSec: rps,
			Percentiles: map[string]time.Duration{"99": time.Duration(p99ms) * time.Millisecond}}}
	}
	r := &Result{Runs: []BenchRun{
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
	t.Setenv("BENCH_FAKE_OUTPUT", "testdata/etcd-bench-put.txt")
	fake := fakeBinaries(t)
	var log strings.Builder
	res, err := Run(context.Background(), Config{
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
	for _, r := range res.Runs {
		if len(r.MemberCPU) != 1 {
			t.Errorf("%s round %d: CPU of %d members, want 1", r.Target, r.Round, len(r.MemberCPU))
		}
	}
	if got := strings.Count(log.String(), "CPU s per 1000 requests: members "); got != 4 {
		t.Errorf("%d CPU lines in the log, want 4:\n%s", got, log.String())
	}
}

func TestCPUPer1000(t *testing.T) {
	sum := BenchSummary{Total: 2 * time.Second, ReqPerSec: 5000} // 10000 requests
	for _, tc := range []struct {
		name    string
		run     BenchRun
		total   float64
		members []float64
	}{
		{"three members", BenchRun{Summary: sum, MemberCPU: []time.Duration{800 * time.Millisecond, 400 * time.Millisecond, 300 * time.Millisecond}}, 0.15, []float64{0.08, 0.04, 0.03}},
		{"no CPU figures", BenchRun{Summary: sum}, 0, nil},
		{"no requests", BenchRun{MemberCPU: []time.Duration{time.Second}}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			total, members := tc.run.CPUPer1000()
			near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
			if !near(total, tc.total) || len(members) != len(tc.members) {
				t.Fatalf("got %v %v, want %v %v", total, members, tc.total, tc.members)
			}
			for i := range members {
				if !near(members[i], tc.members[i]) {
					t.Fatalf("got %v, want %v", members, tc.members)
				}
			}
		})
	}
}

// fakeBinaries returns a function making a fake binary in role "server",
// "bench" or "etcdctl": this test binary, told its role by BENCH_FAKE.
// The fakes tell their role from the environment, which all inherit; they
// are wrapped in env(1) to set it per binary.
func fakeBinaries(t *testing.T) func(role string) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env, err := exec.LookPath("env")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	return func(role string) string {
		p := filepath.Join(dir, role)
		script := fmt.Sprintf("#!/bin/sh\nexec %s BENCH_FAKE=%s %s \"$@\"\n", env, role, self)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func msd(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// TestParseEtcdBenchWorkloads parses the tool's real output (etcd v3.7.3,
// --precise, --conns=10 --clients=100) of every workload versus runs.
func TestParseEtcdBenchWorkloads(t *testing.T) {
	for _, tc := range []struct {
		file     string
		sections []string
		section  string // the workload's
		rps      float64
		p50, p99 time.Duration
		pcts     int
	}{
		{"etcd-bench-precise-put.txt", []string{""}, "", 4570.225802905781, 11507371, 107726622, 8},
		{"etcd-bench-txn-put.txt", []string{""}, "", 5388.132799153847, 12699878, 61961472, 8},
		{"etcd-bench-range-l.txt", []string{""}, "", 12216.800216247137, 5446370, 31899301, 8},
		{"etcd-bench-range-s.txt", []string{""}, "", 18095.892304830373, 3763520, 30883526, 8},
		// Scientific notation, and no 10% and 25% (0 latencies are left out).
		{"etcd-bench-watch-latency.txt", []string{"Put summary", "Watch events summary"}, "Watch events summary",
			65903.05108917215, 84035, 2540634, 6},
		{"etcd-bench-put.txt", []string{""}, "", 12529.3525, msd(6.9), msd(21.2), 8},
	} {
		t.Run(tc.file, func(t *testing.T) {
			fh, err := os.Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			out, err := ParseEtcdBenchOutput(fh)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for k := range out {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.sections) {
				t.Fatalf("sections %q, want %q", got, tc.sections)
			}
			s := out[tc.section]
			if s.ReqPerSec != tc.rps || s.P99() != tc.p99 || len(s.Percentiles) != tc.pcts || s.Failed() != 0 {
				t.Errorf("req/s %v p99 %v, %d percentiles, %d failed; want %v %v %d", s.ReqPerSec, s.P99(),
					len(s.Percentiles), s.Failed(), tc.rps, tc.p99, tc.pcts)
			}
			if tc.p50 >= 0 && s.Percentiles["50"] != tc.p50 {
				t.Errorf("p50 %v, want %v", s.Percentiles["50"], tc.p50)
			}
			if s.Total <= 0 || s.Average <= 0 || s.Slowest < s.P99() {
				t.Errorf("total %v average %v slowest %v", s.Total, s.Average, s.Slowest)
			}
		})
	}
	// ParseEtcdBench picks the first summary when none is unheaded.
	fh, err := os.Open("testdata/etcd-bench-watch-latency.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if s, err := ParseEtcdBench(fh); err != nil || s.ReqPerSec != 673.9035915408871 {
		t.Fatalf("%v %v", s.ReqPerSec, err)
	}
}

// TestParseEtcdBenchErrors parses real runs with failed requests: against
// an etcd with a 1 MiB quota (some puts fail with NOSPACE) and with
// --max-request-bytes=1024 (every put fails, so no summary).
func TestParseEtcdBenchErrors(t *testing.T) {
	fh, err := os.Open("testdata/etcd-bench-put-errors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	out, err := ParseEtcdBenchOutput(fh)
	if err != nil {
		t.Fatal(err)
	}
	s := out[""]
	if s.ReqPerSec != 3748.450849029031 || s.P99() != 39723251 || s.Failed() != 2872 ||
		s.Errors["etcdserver: mvcc: database space exceeded"] != 2872 {
		t.Fatalf("%+v", s)
	}

	b, err := os.ReadFile("testdata/etcd-bench-put-allfailed.txt")
	if err != nil {
		t.Fatal(err)
	}
	out, err = ParseEtcdBenchOutput(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if s := out[""]; s.ReqPerSec != 0 || s.Errors["etcdserver: request is too large"] != 300 {
		t.Fatalf("%+v", s)
	}
	if _, err := ParseEtcdBench(strings.NewReader(string(b))); err == nil {
		t.Fatal("ParseEtcdBench accepted a run without a summary")
	}
}

// TestBenchStderr keeps the tool's warnings out of a real stderr excerpt
// (the quota run's): gRPC INFO lines, their JSON and the progress bar go;
// etcd client's retry warnings stay, counted, without timestamps.
func TestBenchStderr(t *testing.T) {
	b, err := os.ReadFile("testdata/etcd-bench-put-errors.stderr")
	if err != nil {
		t.Fatal(err)
	}
	got := benchStderr(string(b), 20)
	want := []string{"warn: retrying of unary invoker failed: rpc error: code = ResourceExhausted desc = " +
		"etcdserver: mvcc: database space exceeded (/etcdserverpb.KV/Put)"}
	if len(got) != 1 || !strings.HasPrefix(got[0], want[0]+" (x") {
		t.Fatalf("got %q, want %q (xN)", got, want)
	}
	got = benchStderr("2026/11/26 00:39:36 WARNING: [core] grpc: addrConn.createTransport failed\n"+
		"panic: boom\n{\"level\":\"info\",\"msg\":\"fine\"}\nall good\n", 1)
	if want := []string{"WARNING: [core] grpc: addrConn.createTransport failed", "(1 more distinct lines left out)"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestVersusWorkloads(t *testing.T) {
	o := DefaultOptions()
	o.Total = 20000
	want := map[string]string{
		"put":           "--conns=10 --clients=100 --precise put --key-size=8 --val-size=256 --key-space-size=10000 --total=20000",
		"txn-put":       "--conns=10 --clients=100 --precise txn-put --key-size=8 --val-size=256 --key-space-size=10000 --total=20000",
		"range-l":       "--conns=10 --clients=100 --precise range foo --consistency=l --total=20000",
		"range-s":       "--conns=10 --clients=100 --precise range foo --consistency=s --total=20000",
		"watch-latency": "--conns=10 --clients=100 --precise watch-latency --put-total=500 --put-rate=100 --streams=10 --watchers-per-stream=10 --key-size=8 --val-size=256",
		"resources":     "--conns=10 --clients=100 --precise", // runs its own commands
		"k8s":           "--mode=endpoints --workload=k8s --records=10000 --clients=16 --duration=10s",
	}
	if names := WorkloadNames(); len(names) != len(want) {
		t.Fatalf("workloads %q", names)
	}
	for name, args := range want {
		w, ok := LookupWorkload(name)
		if !ok {
			t.Fatalf("no workload %s", name)
		}
		if got := strings.Join(w.Args(o), " "); got != args {
			t.Errorf("%s: %s\nwant %s", name, got, args)
		}
	}
	put, _ := LookupWorkload("put")
	for _, tc := range []struct {
		tp, p99 float64
		met     bool
	}{{1.3, 1, true}, {1.29, 0.5, false}, {2, 1.01, false}, {2, 0, false}} {
		if got := put.Met(tc.tp, tc.p99); got != tc.met {
			t.Errorf("put.Met(%v, %v) = %v", tc.tp, tc.p99, got)
		}
	}
	if wl, _ := LookupWorkload("watch-latency"); !wl.Met(0.1, 0.99) || wl.Met(5, 1.2) || wl.Bar() != "p99 <= 1.00x" {
		t.Errorf("watch-latency bar %q", wl.Bar())
	}
	if rs, _ := LookupWorkload("range-s"); !rs.Met(1.2, 3) || rs.Met(1.19, 0.5) {
		t.Error("range-s bar")
	}
	if rl, _ := LookupWorkload("range-l"); !rl.Met(1.3, 3) || rl.Met(1.29, 0.5) {
		t.Error("range-l bar")
	}
	if k, _ := LookupWorkload("k8s"); k.Preset != "k8s" || !k.Met(1.3, 2) || k.Met(1.29, 0.5) {
		t.Errorf("k8s workload %+v", k)
	}
}

// TestRunVersusWorkloadsWithFakes runs every workload on fake 3-member
// clusters: the tool gets all three endpoints, the range key is put with
// etcdctl first, watch-latency is measured by its watch events, and the
// JSON carries every run and the medians.
// One round: 30 fake processes, each a start of this race-instrumented test
// binary; TestRunVersusWithFakes covers alternating rounds.
func TestRunVersusWorkloadsWithFakes(t *testing.T) {
	dir := t.TempDir()
	argsLog := filepath.Join(dir, "args")
	t.Setenv("BENCH_FAKE_OUTPUT", "testdata")
	t.Setenv("BENCH_FAKE_ARGS", argsLog)
	t.Setenv("BENCH_FAKE_STDERR", "testdata/etcd-bench-put-errors.stderr")
	fake := fakeBinaries(t)
	var log strings.Builder
	cfg := Config{
		Etcd: fake("server"), Strata: fake("server"), Bench: fake("bench"), Etcdctl: fake("etcdctl"),
		Nodes: 3, Rounds: 1, Workloads: benchToolWorkloads(),
		Options: DefaultOptions(), Log: &log, StrataArgs: []string{"--backend=pebble"},
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 1*2*5 {
		t.Fatalf("%d runs", len(res.Runs))
	}
	for _, r := range res.Runs {
		if r.Err != "" || r.Nodes != 3 || len(r.Stderr) != 1 || !strings.Contains(r.Stderr[0], "database space exceeded") {
			t.Errorf("%+v", r)
		}
		if r.Workload == "watch-latency" && r.Summary.ReqPerSec != 65903.05108917215 {
			t.Errorf("watch-latency measured by %+v", r.Summary)
		}
	}
	if tp, p99 := res.RatiosFor("range-l"); tp != 1 || p99 != 1 {
		t.Errorf("range-l ratios %v %v", tp, p99)
	}
	b, err := os.ReadFile(argsLog)
	if err != nil {
		t.Fatal(err)
	}
	var benches, puts int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		eps, ok := strings.CutPrefix(f[1], "--endpoints=")
		if !ok || len(strings.Split(eps, ",")) != 3 {
			t.Fatalf("not every member's endpoint: %s", line)
		}
		switch f[0] {
		case "bench":
			benches++
		case "etcdctl":
			puts++
			if len(f) != 5 || f[2] != "put" || f[3] != RangeKey || f[4] != strings.Repeat("v", 256) {
				t.Errorf("etcdctl %q", f[1:])
			}
		}
	}
	if benches != 10 || puts != 4 {
		t.Errorf("%d benchmark runs, %d etcdctl puts", benches, puts)
	}

	var table strings.Builder
	res.WriteTable(&table)
	for _, want := range []string{"== watch-latency, 3 nodes: bench --conns=10", "== the bar, 3 nodes",
		"bar: throughput >= 1.30x, p99 <= 1.00x: NOT met", "bar: p99 <= 1.00x: met", "range-s        1       1.00x       1.00x  throughput >= 1.20x                NO"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	var js strings.Builder
	if err := res.WriteJSON(&js, cfg, []string{"kvbench", "versus"}); err != nil {
		t.Fatal(err)
	}
	var back ResultJSON
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil {
		t.Fatal(err)
	}
	if back.Nodes != 3 || len(back.Runs) != 10 || len(back.Medians) != 5 || !slices.Equal(back.StrataArgs, cfg.StrataArgs) {
		t.Fatalf("nodes %d, %d runs, %d medians, strata args %q", back.Nodes, len(back.Runs), len(back.Medians), back.StrataArgs)
	}
	r0 := back.Runs[0]
	if r0.Workload != "put" || r0.Round != 1 || r0.Target != "etcd" || r0.Throughput != 12529.3525 ||
		r0.P99 != 21.2 || r0.P999 != 23.3 || r0.ThroughputRatio != 1 || r0.P99Ratio != 1 {
		t.Errorf("first run %+v", r0)
	}
	for _, m := range back.Medians {
		wantMet := m.Workload == "watch-latency"
		if m.Met == nil || *m.Met != wantMet || m.Rounds != 1 || m.ThroughputRatio != 1 || m.Strata.Throughput == 0 {
			t.Errorf("median %+v", m)
		}
	}
}

// benchToolWorkloads are the workloads etcd's benchmark tool runs, the ones
// the fake tool can stand in for: not resources (TestRunVersusResourcesWithFakes)
// nor kvbench's presets, which need a real server (TestRunVersusPresetStrata).
func benchToolWorkloads() []string {
	return slices.DeleteFunc(WorkloadNames(), func(n string) bool {
		w, _ := LookupWorkload(n)
		return w.Resources || w.Preset != ""
	})
}

// TestRunVersusRecordsFailures: a run whose requests all fail is kept,
// with its errors, and the rounds go on; Run then fails.
func TestRunVersusRecordsFailures(t *testing.T) {
	t.Setenv("BENCH_FAKE_OUTPUT", "testdata/etcd-bench-put-allfailed.txt")
	fake := fakeBinaries(t)
	var log strings.Builder
	res, err := Run(context.Background(), Config{
		Etcd: fake("server"), Strata: fake("server"), Bench: fake("bench"), Rounds: 1, Log: &log,
	})
	if err == nil || !strings.Contains(err.Error(), "2 runs failed") {
		t.Fatalf("err %v", err)
	}
	if len(res.Runs) != 2 || !strings.Contains(res.Runs[1].Err, "every request failed (300)") {
		t.Fatalf("%+v", res.Runs)
	}
	if !strings.Contains(log.String(), "failed requests: [300] etcdserver: request is too large") {
		t.Errorf("log:\n%s", log.String())
	}
	var table strings.Builder
	res.WriteTable(&table)
	if !strings.Contains(table.String(), "FAILED") || !strings.Contains(table.String(), "no runs") {
		t.Errorf("table:\n%s", table.String())
	}
}

// TestVersusRealBinaries runs versus for real, tiny: every workload on one
// node and put on three, against etcd and a freshly built Strata. It needs
// etcd's binaries: STRATA_ETCD (etcd) and STRATA_ETCD_BENCH (the benchmark
// tool); etcdctl is taken from STRATA_ETCDCTL or next to etcd.
func TestVersusRealBinaries(t *testing.T) {
	etcd, tool := os.Getenv("STRATA_ETCD"), os.Getenv("STRATA_ETCD_BENCH")
	if etcd == "" || tool == "" {
		t.Skip("STRATA_ETCD and STRATA_ETCD_BENCH are not both set: set them to etcd's and its benchmark tool's binaries (v3.7) to run this test")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	strata := filepath.Join(t.TempDir(), "strata")
	build := exec.Command("go", "build", "-o", strata, "github.com/strata-kv/strata/cmd/strata")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := DefaultOptions()
	o.Total, o.WatchPutTotal, o.WatchPutRate = 500, 50, 100
	o.ResourceKeys, o.ResourceRevisions = 2000, 2000
	o.K8sRecords, o.K8sClients, o.K8sDuration = 500, 4, 2*time.Second
	for _, tc := range []struct {
		nodes     int
		workloads []string
	}{{1, WorkloadNames()}, {3, []string{"put"}}} {
		t.Run(fmt.Sprintf("nodes=%d", tc.nodes), func(t *testing.T) {
			var log strings.Builder
			res, err := Run(context.Background(), Config{Etcd: etcd, Strata: strata, Bench: tool,
				Etcdctl: os.Getenv("STRATA_ETCDCTL"), Nodes: tc.nodes, Rounds: 1, Workloads: tc.workloads, Options: o, Log: &log})
			var table strings.Builder
			if res != nil {
				res.WriteTable(&table)
			}
			t.Logf("\n%s\n%s", table.String(), log.String())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Runs {
				if r.Workload == "resources" && (r.Resources == nil || r.Resources.RSS <= 0 || r.Resources.Disk <= 0 ||
					r.Resources.RestartSecs <= 0 || r.Resources.RestartRSS <= 0 || r.Resources.CompactDisk <= 0) {
					t.Errorf("round %d resources %s: %+v", r.Round, r.Target, r.Resources)
				}
				if r.Summary.ReqPerSec <= 0 || r.Summary.P99() <= 0 || r.Summary.Failed() != 0 {
					t.Errorf("round %d %s %s: %+v", r.Round, r.Workload, r.Target, r.Summary)
				}
			}
		})
	}
}

// TestRunVersusResourcesWithFakes runs the resources workload on fake
// 3-member clusters: the keys are loaded in order, then the revisions put;
// the members are restarted with the same command lines; the store is
// compacted at its revision and defragmented; every figure is recorded
// and compared.
func TestRunVersusResourcesWithFakes(t *testing.T) {
	dir := t.TempDir()
	argsLog, serverLog := filepath.Join(dir, "args"), filepath.Join(dir, "servers")
	t.Setenv("BENCH_FAKE_OUTPUT", "testdata")
	t.Setenv("BENCH_FAKE_ARGS", argsLog)
	t.Setenv("BENCH_FAKE_SERVER_ARGS", serverLog)
	fake := fakeBinaries(t)
	o := DefaultOptions()
	o.ResourceKeys, o.ResourceRevisions = 1000, 3000
	var log strings.Builder
	cfg := Config{Etcd: fake("server"), Strata: fake("server"), Bench: fake("bench"), Etcdctl: fake("etcdctl"),
		Nodes: 3, Rounds: 1, Workloads: []string{"resources"}, Options: o, Log: &log}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(res.Runs) != 2 {
		t.Fatalf("%d runs", len(res.Runs))
	}
	for _, r := range res.Runs {
		rs := r.Resources
		if r.Err != "" || rs == nil || rs.Keys != 1000 || rs.Revisions != 3000 || rs.RSS <= 0 || rs.RestartRSS <= 0 ||
			rs.Disk < 3*4096 || rs.CompactDisk < 3*4096 || rs.RestartSecs <= 0 || rs.LoadSecs <= 0 || r.Summary.ReqPerSec != 12529.3525 {
			t.Errorf("%s: %+v %+v", r.Target, r, rs)
		}
	}
	b, err := os.ReadFile(argsLog)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		var rest []string
		for _, a := range f[1:] {
			if !strings.HasPrefix(a, "--endpoints=") && !strings.HasPrefix(a, "--command-timeout=") &&
				!strings.HasPrefix(a, "--conns=") && !strings.HasPrefix(a, "--clients=") && a != "--precise" {
				rest = append(rest, a)
			}
		}
		calls = append(calls, f[0]+" "+strings.Join(rest, " "))
	}
	one := []string{
		"bench put --sequential-keys --key-size=16 --val-size=256 --key-space-size=1000 --total=1000",
		"bench put --key-size=16 --val-size=256 --key-space-size=1000 --total=3000",
		"etcdctl get foo --write-out=json",
		"etcdctl compact 42 --physical",
		"etcdctl defrag",
	}
	if want := append(slices.Clone(one), one...); !slices.Equal(calls, want) {
		t.Errorf("calls\n%s\nwant\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	// Each member started twice, the second time with the same command line.
	sb, err := os.ReadFile(serverLog)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(sb)), "\n") {
		starts[line]++
	}
	if len(starts) != 6 {
		t.Errorf("%d distinct member command lines, want 6: %v", len(starts), starts)
	}
	for line, n := range starts {
		if n != 2 {
			t.Errorf("started %d times: %s", n, line)
		}
	}
	var table strings.Builder
	res.WriteTable(&table)
	for _, want := range []string{"disk after compact+defrag", "median of per-round ratios, strata/etcd (lower is better): RSS ",
		"bar: each <= 1.00x:", "resources  1 "} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js strings.Builder
	if err := res.WriteJSON(&js, cfg, nil); err != nil {
		t.Fatal(err)
	}
	var back ResultJSON
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Medians) != 1 || len(back.Medians[0].ResourceRatios) != len(resourceFigures) || back.Runs[0].Resources == nil {
		t.Errorf("JSON medians %+v", back.Medians)
	}
}
