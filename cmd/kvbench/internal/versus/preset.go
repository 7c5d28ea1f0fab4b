package versus

import (
	"context"
	"fmt"
	"time"

	"github.com/strata-kv/strata/bench"
)

// runPreset runs kvbench's preset workload w (the k8s mix) against the
// cluster c through bench's client store, as `kvbench run
// --mode=endpoints` does: it loads Options.K8sRecords objects, then runs
// Options.K8sClients clients for Options.K8sDuration. The result becomes
// run's summary; BenchCPU is this process's CPU during the run, since
// kvbench is the client here.
func runPreset(ctx context.Context, cfg Config, c *procCluster, w Workload, run *BenchRun) error {
	pw, err := bench.Preset(w.Preset)
	if err != nil {
		return err
	}
	store, err := bench.NewClientStore(c.endpoints())
	if err != nil {
		return err
	}
	defer store.Close()
	rctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
	defer cancel()
	bcfg := bench.Config{
		Records:  uint64(cfg.Options.K8sRecords),
		Clients:  cfg.Options.K8sClients,
		Duration: cfg.Options.K8sDuration,
		RSSPid:   -1, // the servers are other processes; their peak RSS is sampled apart
	}
	if _, err := bench.LoadWorkload(rctx, store, pw, bcfg); err != nil {
		return fmt.Errorf("kvbench %s: load: %w", w.Preset, err)
	}
	cpu0, self0 := membersCPU(c), selfCPU()
	res, err := bench.Run(rctx, store, pw, bcfg)
	run.MemberCPU = membersCPU(c)
	for i := range run.MemberCPU {
		run.MemberCPU[i] -= cpu0[i]
	}
	run.BenchCPU = selfCPU() - self0
	if err != nil {
		if rctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("kvbench %s: %w (run timeout %v)", w.Preset, err, cfg.RunTimeout)
		}
		return fmt.Errorf("kvbench %s: %w", w.Preset, err)
	}
	run.Summary = presetSummary(res)
	run.Output = BenchOutput{"": run.Summary}
	if run.Summary.ReqPerSec == 0 {
		return fmt.Errorf("kvbench %s: every request failed (%d): %s", w.Preset, res.Errors, res.FirstError)
	}
	return nil
}

func selfCPU() time.Duration {
	d, _ := bench.ReadCPU(0)
	return d
}

// presetSummary converts a kvbench result into the benchmark tool's
// summary: requests per second counts the successful operations only,
// as the tool does, and the latencies are those of every operation kind
// together. Failed operations are counted under the run's first error.
func presetSummary(res *bench.Result) BenchSummary {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	t := res.Total
	s := BenchSummary{
		Total:   res.Elapsed,
		Average: time.Duration(t.Mean * float64(time.Microsecond)),
		Slowest: us(t.Max),
		Percentiles: map[string]time.Duration{
			"50": us(t.P50), "90": us(t.P90), "99": us(t.P99), "99.9": us(t.P999),
		},
		Errors: map[string]int{},
	}
	if secs := res.Elapsed.Seconds(); secs > 0 {
		s.ReqPerSec = float64(res.Ops-res.Errors) / secs
	}
	if res.Errors > 0 {
		msg := res.FirstError
		if msg == "" {
			msg = "failed"
		}
		s.Errors[msg] = int(res.Errors)
	}
	return s
}
