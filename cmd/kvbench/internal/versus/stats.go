package versus

import (
	"maps"
	"slices"
)

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
func roundRatios(runs []BenchRun) (rounds []int, tp, lat []float64) {
	byRound := map[int]map[string]BenchRun{}
	for _, run := range runs {
		if run.Err != "" {
			continue
		}
		if byRound[run.Round] == nil {
			byRound[run.Round] = map[string]BenchRun{}
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
func (r *Result) Ratios() (throughput, p99 float64) {
	_, tp, lat := roundRatios(r.Runs)
	return median(tp), median(lat)
}

// RatiosFor is Ratios over one workload's runs.
func (r *Result) RatiosFor(workload string) (throughput, p99 float64) {
	_, tp, lat := roundRatios(r.runsOf(workload))
	return median(tp), median(lat)
}

func (r *Result) runsOf(workload string) []BenchRun {
	var out []BenchRun
	for _, run := range r.Runs {
		if run.Workload == workload {
			out = append(out, run)
		}
	}
	return out
}

// workloads lists the result's workloads in the order they first ran.
func (r *Result) workloads() []string {
	var out []string
	for _, run := range r.Runs {
		if !slices.Contains(out, run.Workload) {
			out = append(out, run.Workload)
		}
	}
	return out
}
