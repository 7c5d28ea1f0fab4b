package versus

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/bench"
)

func TestPresetSummary(t *testing.T) {
	res := &bench.Result{Elapsed: 2 * time.Second, Ops: 1000, Errors: 10, FirstError: "update: boom",
		Total: bench.OpResult{Mean: 1500.5, P50: 1000, P90: 2000, P99: 4000, P999: 8000, Max: 9000}}
	s := presetSummary(res)
	if s.ReqPerSec != 495 || s.Total != 2*time.Second || s.P99() != 4*time.Millisecond ||
		s.Percentiles["99.9"] != 8*time.Millisecond || s.Slowest != 9*time.Millisecond ||
		s.Average != 1500500*time.Nanosecond || s.Failed() != 10 || s.Errors["update: boom"] != 10 {
		t.Fatalf("%+v", s)
	}
	if s := presetSummary(&bench.Result{Elapsed: time.Second, Ops: 5}); s.ReqPerSec != 5 || s.Failed() != 0 {
		t.Fatalf("no errors: %+v", s)
	}
}

// TestRunVersusPresetStrata runs the k8s workload for real, tiny, on
// one and three members, with a freshly built Strata standing in for both
// sides (the benchmark tool is not involved): the objects are loaded,
// the mix runs, and its throughput, latencies and CPU are in the summary.
func TestRunVersusPresetStrata(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	strata := filepath.Join(t.TempDir(), "strata")
	build := exec.Command("go", "build", "-o", strata, "github.com/strata-kv/strata/cmd/strata")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	o := DefaultOptions()
	o.K8sRecords, o.K8sClients, o.K8sDuration = 300, 4, time.Second
	for _, nodes := range []int{1, 3} {
		var log strings.Builder
		res, err := Run(context.Background(), Config{Etcd: strata, Strata: strata, Bench: os.DevNull,
			Nodes: nodes, Rounds: 1, Workloads: []string{"k8s"}, Options: o, Log: &log})
		if err != nil {
			t.Fatalf("%d nodes: %v\n%s", nodes, err, log.String())
		}
		if len(res.Runs) != 2 {
			t.Fatalf("%d runs", len(res.Runs))
		}
		for _, r := range res.Runs {
			if r.Err != "" || r.Summary.ReqPerSec <= 0 || r.Summary.P99() <= 0 || len(r.MemberCPU) != nodes || r.BenchCPU <= 0 {
				t.Errorf("%d nodes, %s: %+v", nodes, r.Target, r)
			}
		}
		var table strings.Builder
		res.WriteTable(&table)
		if want := "kvbench run --mode=endpoints --workload=k8s --records=300 --clients=4 --duration=1s"; !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
