package versus

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-kv/strata/bench"
)

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
func (r *Result) WriteTable(w io.Writer) {
	names := r.workloads()
	for i, name := range names {
		if i > 0 {
			fmt.Fprintln(w)
		}
		runs := r.runsOf(name)
		if name != "" {
			tool := "bench"
			if wl, ok := LookupWorkload(name); ok && wl.Preset != "" {
				tool = "kvbench run"
			}
			fmt.Fprintf(w, "== %s, %s: %s %s\n", name, nodesString(max(r.Nodes, 1)), tool, strings.Join(runs[0].BenchArgs, " "))
		}
		if r.Nodes > 1 {
			fmt.Fprintf(w, "(peak RSS is the sum of the members')\n")
		}
		writeRuns(w, runs)
		if wl, ok := LookupWorkload(name); ok && wl.Resources {
			writeResources(w, runs)
		}
	}
	if len(names) > 1 || (len(names) == 1 && names[0] != "" && names[0] != "custom") {
		fmt.Fprintf(w, "\n== the bar, %s: median of per-round strata/etcd ratios\n", nodesString(max(r.Nodes, 1)))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "workload\trounds\tthroughput\tp99\tbar\tmet")
		for _, name := range names {
			wl, ok := LookupWorkload(name)
			rounds, tp, lat := roundRatios(r.runsOf(name))
			met := "-"
			switch {
			case !ok:
			case len(rounds) == 0:
				met = "no runs"
			case wl.Resources:
				met = "NO"
				if resourcesMet(resourceRatios(r.runsOf(name))) {
					met = "yes"
				}
			case wl.Met(median(tp), median(lat)):
				met = "yes"
			default:
				met = "NO"
			}
			fmt.Fprintf(tw, "%s\t%d\t%.2fx\t%.2fx\t%s\t%s\n", name, len(rounds), median(tp), median(lat), barOrDash(wl), met)
		}
		tw.Flush()
	}
}

func writeRuns(w io.Writer, runs []BenchRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\ttarget\treq/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tpeak RSS\tfailed\t")
	med := map[string][][]float64{}
	for _, run := range runs {
		s := run.Summary
		if run.Err != "" {
			fmt.Fprintf(tw, "%d\t%s\tFAILED\t\t\t\t\t%s\t%d\t\n", run.Round, run.Target, bench.FormatBytes(run.PeakRSS), s.Failed())
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", run.Round, run.Target, s.ReqPerSec,
			msOrDash(s.Percentiles["50"]), msOrDash(s.Percentiles["90"]), msOrDash(s.P99()), msOrDash(s.Percentiles["99.9"]),
			bench.FormatBytes(run.PeakRSS), s.Failed())
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
				bench.FormatBytes(int64(median(m[2]))))
		}
	}
	tw.Flush()
	_, tps, lats := roundRatios(runs)
	tp, p99 := median(tps), median(lats)
	fmt.Fprintf(w, "median of per-round ratios, strata/etcd: throughput %.2fx (higher is better), p99 %.2fx (lower is better)\n", tp, p99)
	if len(runs) > 0 {
		if wl, ok := LookupWorkload(runs[0].Workload); ok && !wl.Resources {
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

// ResultJSON is what --json writes: every run and, per workload, the
// medians and the bar.
type ResultJSON struct {
	Started    time.Time    `json:"started"`
	GoVersion  string       `json:"go_version"`
	CPUs       int          `json:"cpus"`
	Args       []string     `json:"args,omitempty"`
	Nodes      int          `json:"nodes"`
	Etcd       string       `json:"etcd,omitempty"`
	Strata     string       `json:"strata,omitempty"`
	Bench      string       `json:"bench,omitempty"`
	EtcdArgs   []string     `json:"etcd_args,omitempty"`
	StrataArgs []string     `json:"strata_args,omitempty"`
	Runs       []RunJSON    `json:"runs"`
	Medians    []MedianJSON `json:"medians"`
}

// StatsJSON are one run's figures, or medians over runs. Latencies
// are in milliseconds; an absent percentile is left out.
type StatsJSON struct {
	Throughput float64 `json:"throughput"` // requests (events for watch-latency) a second
	P50        float64 `json:"p50_ms,omitempty"`
	P90        float64 `json:"p90_ms,omitempty"`
	P99        float64 `json:"p99_ms,omitempty"`
	P999       float64 `json:"p99_9_ms,omitempty"`
	PeakRSS    int64   `json:"peak_rss_bytes,omitempty"`
}

// RunJSON is one run. ThroughputRatio and P99Ratio are this round's
// Strata/etcd, on both targets' runs, when both succeeded.
type RunJSON struct {
	Workload string `json:"workload"`
	Nodes    int    `json:"nodes"`
	Round    int    `json:"round"`
	Target   string `json:"target"`
	StatsJSON
	ThroughputRatio float64        `json:"throughput_ratio,omitempty"`
	P99Ratio        float64        `json:"p99_ratio,omitempty"`
	Failed          int            `json:"failed_requests,omitempty"`
	Errors          map[string]int `json:"errors,omitempty"`
	Err             string         `json:"error,omitempty"`
	Stderr          []string       `json:"bench_stderr,omitempty"`
	ServerLog       []string       `json:"server_log,omitempty"`
	BenchArgs       []string       `json:"bench_args,omitempty"`
	Resources       *Resources     `json:"resources,omitempty"`
}

// MedianJSON is one workload's medians over rounds.
type MedianJSON struct {
	Workload string    `json:"workload"`
	Nodes    int       `json:"nodes"`
	Rounds   int       `json:"rounds"` // rounds with both runs successful
	Etcd     StatsJSON `json:"etcd"`
	Strata   StatsJSON `json:"strata"`
	// Median of the per-round ratios.
	ThroughputRatio float64 `json:"throughput_ratio"`
	P99Ratio        float64 `json:"p99_ratio"`
	MinThroughput   float64 `json:"bar_min_throughput_ratio,omitempty"`
	MaxP99          float64 `json:"bar_max_p99_ratio,omitempty"`
	Met             *bool   `json:"bar_met,omitempty"`
	// ResourceRatios are the resources workload's median Strata/etcd
	// ratios, by figure.
	ResourceRatios map[string]float64 `json:"resource_ratios,omitempty"`
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func statsOf(s BenchSummary, rss int64) StatsJSON {
	return StatsJSON{Throughput: s.ReqPerSec, P50: msf(s.Percentiles["50"]), P90: msf(s.Percentiles["90"]),
		P99: msf(s.P99()), P999: msf(s.Percentiles["99.9"]), PeakRSS: rss}
}

// JSON returns the result as written by WriteJSON, with cfg's binaries
// and flags for the record.
func (r *Result) JSON(cfg Config, args []string) ResultJSON {
	out := ResultJSON{Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Args: args,
		Nodes: max(r.Nodes, 1), Etcd: cfg.Etcd, Strata: cfg.Strata, Bench: cfg.Bench,
		EtcdArgs: cfg.EtcdArgs, StrataArgs: cfg.StrataArgs, Runs: []RunJSON{}, Medians: []MedianJSON{}}
	for _, name := range r.workloads() {
		runs := r.runsOf(name)
		rounds, tps, lats := roundRatios(runs)
		perRound := map[int][2]float64{}
		for i, rd := range rounds {
			perRound[rd] = [2]float64{tps[i], lats[i]}
		}
		med := map[string][]StatsJSON{}
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
			rj := RunJSON{Workload: run.Workload, Nodes: run.Nodes, Round: run.Round, Target: run.Target,
				StatsJSON: st, Failed: run.Summary.Failed(), Errors: errs, Err: run.Err,
				Stderr: run.Stderr, ServerLog: run.ServerLog, BenchArgs: run.BenchArgs, Resources: run.Resources}
			if pr, ok := perRound[run.Round]; ok {
				rj.ThroughputRatio, rj.P99Ratio = pr[0], pr[1]
			}
			out.Runs = append(out.Runs, rj)
			if run.Err == "" {
				med[run.Target] = append(med[run.Target], st)
			}
		}
		mj := MedianJSON{Workload: name, Nodes: max(r.Nodes, 1), Rounds: len(rounds),
			Etcd: medianStats(med["etcd"]), Strata: medianStats(med["strata"]),
			ThroughputRatio: median(tps), P99Ratio: median(lats)}
		if wl, ok := LookupWorkload(name); ok {
			mj.MinThroughput, mj.MaxP99 = wl.MinThroughput, wl.MaxP99
			met := len(rounds) > 0 && wl.Met(mj.ThroughputRatio, mj.P99Ratio)
			if wl.Resources {
				ratios, n := resourceRatios(runs)
				met = resourcesMet(ratios, n)
				mj.ResourceRatios = map[string]float64{}
				for i, f := range resourceFigures {
					mj.ResourceRatios[f.name] = ratios[i]
				}
			}
			mj.Met = &met
		}
		out.Medians = append(out.Medians, mj)
	}
	return out
}

func medianStats(ss []StatsJSON) StatsJSON {
	pick := func(f func(StatsJSON) float64) float64 {
		var xs []float64
		for _, s := range ss {
			if v := f(s); v > 0 {
				xs = append(xs, v)
			}
		}
		return median(xs)
	}
	return StatsJSON{
		Throughput: pick(func(s StatsJSON) float64 { return s.Throughput }),
		P50:        pick(func(s StatsJSON) float64 { return s.P50 }),
		P90:        pick(func(s StatsJSON) float64 { return s.P90 }),
		P99:        pick(func(s StatsJSON) float64 { return s.P99 }),
		P999:       pick(func(s StatsJSON) float64 { return s.P999 }),
		PeakRSS:    int64(pick(func(s StatsJSON) float64 { return float64(s.PeakRSS) })),
	}
}

// WriteJSON writes r.JSON(cfg, args), indented.
func (r *Result) WriteJSON(w io.Writer, cfg Config, args []string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r.JSON(cfg, args))
}
