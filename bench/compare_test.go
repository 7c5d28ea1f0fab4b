package bench_test

import (
	"strings"
	"testing"

	"github.com/strata-kv/strata/bench"
)

func run(mode, target, workload string, opsSec float64, p99 int64) bench.RunReport {
	r := &bench.Result{OpsSec: opsSec}
	r.Total.P99 = p99
	return bench.RunReport{Mode: mode, Target: target, Workload: workload, Durability: "nosync", Result: r}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []bench.RunReport
		want []string // substrings of the output, in order
	}{
		{
			name: "same targets match by target",
			a:    []bench.RunReport{run("engine", "bbolt", "ycsb-a", 100, 10), run("engine", "pebble", "ycsb-a", 200, 10)},
			b:    []bench.RunReport{run("engine", "bbolt", "ycsb-a", 150, 5), run("engine", "badger", "ycsb-a", 1, 1)},
			want: []string{"engine/bbolt/ycsb-a/nosync", "1.50x", "0.50x"},
		},
		{
			name: "one target each match by workload",
			a:    []bench.RunReport{run("endpoints", "etcd", "ycsb-a", 100, 20), run("endpoints", "etcd", "ycsb-b", 100, 20)},
			b:    []bench.RunReport{run("endpoints", "strata", "ycsb-b", 130, 10)},
			want: []string{"a: etcd, b: strata", "endpoints/ycsb-b/nosync", "1.30x", "0.50x"},
		},
		{
			name: "nothing in common",
			a:    []bench.RunReport{run("engine", "bbolt", "ycsb-a", 1, 1), run("engine", "pebble", "ycsb-a", 1, 1)},
			b:    []bench.RunReport{run("engine", "badger", "ycsb-a", 1, 1)},
			want: []string{"no run appears in both reports"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			bench.Compare(&out, &bench.Report{Runs: tc.a}, &bench.Report{Runs: tc.b})
			rest := out.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q after the previous parts:\n%s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
			if strings.Contains(out.String(), "ycsb-a") && tc.name == "one target each match by workload" {
				t.Fatalf("ycsb-a is in one report only:\n%s", out.String())
			}
		})
	}
}
