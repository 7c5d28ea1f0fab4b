package versus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-kv/strata/bench"
)

// Resources are one cluster's figures in the resources workload; sizes
// and RSS are summed over the members.
type Resources struct {
	// Keys were loaded (one put each, in key order), then Revisions more
	// puts were made to random keys among them.
	Keys      int `json:"keys"`
	Revisions int `json:"revisions"`
	// LoadSecs is how long the loading and the revisions took.
	LoadSecs float64 `json:"load_seconds"`
	// RSS and Disk are the resident memory and the data directories' size
	// (du) a second after loading.
	RSS  int64 `json:"rss_bytes"`
	Disk int64 `json:"disk_bytes"`
	// RestartSecs is the time from starting the stopped members again
	// until every one answers /health with 200 (a leader, a linearizable
	// read): ready to serve client requests. RestartRSS is the resident
	// memory a second after that.
	RestartSecs float64 `json:"restart_seconds"`
	RestartRSS  int64   `json:"restart_rss_bytes"`
	// CompactDisk is the data directories' size after a compaction at the
	// current revision (physical) and a defrag of every member.
	CompactDisk int64 `json:"compact_defrag_disk_bytes"`
}

// resourceFigure is one of the figures the resources bar holds to at
// most etcd's.
type resourceFigure struct {
	name  string
	get   func(r *Resources) float64
	bytes bool
}

var resourceFigures = []resourceFigure{
	{"RSS", func(r *Resources) float64 { return float64(r.RSS) }, true},
	{"disk", func(r *Resources) float64 { return float64(r.Disk) }, true},
	{"restart s", func(r *Resources) float64 { return r.RestartSecs }, false},
	{"RSS after restart", func(r *Resources) float64 { return float64(r.RestartRSS) }, true},
	{"disk after compact+defrag", func(r *Resources) float64 { return float64(r.CompactDisk) }, true},
}

func (f resourceFigure) format(v float64) string {
	if f.bytes {
		return bench.FormatBytes(int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

// resourceRatios returns, per figure, the median over rounds of
// Strata/etcd, and the rounds that had both.
func resourceRatios(runs []BenchRun) (ratios []float64, rounds int) {
	byRound := map[int]map[string]*Resources{}
	for _, run := range runs {
		if run.Err != "" || run.Resources == nil {
			continue
		}
		if byRound[run.Round] == nil {
			byRound[run.Round] = map[string]*Resources{}
		}
		byRound[run.Round][run.Target] = run.Resources
	}
	per := make([][]float64, len(resourceFigures))
	for _, m := range byRound {
		e, s := m["etcd"], m["strata"]
		if e == nil || s == nil {
			continue
		}
		rounds++
		for i, f := range resourceFigures {
			if ev := f.get(e); ev > 0 {
				per[i] = append(per[i], f.get(s)/ev)
			}
		}
	}
	for i := range resourceFigures {
		ratios = append(ratios, median(per[i]))
	}
	return ratios, rounds
}

// resourcesMet tells whether every median ratio is at most 1.
func resourcesMet(ratios []float64, rounds int) bool {
	if rounds == 0 {
		return false
	}
	for _, r := range ratios {
		if !(r > 0 && r <= 1) {
			return false
		}
	}
	return true
}

// writeResources prints each run's resource figures and the median
// Strata/etcd ratio of each.
func writeResources(w io.Writer, runs []BenchRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "round\ttarget\tkeys\trevisions\tload s\t")
	for _, f := range resourceFigures {
		fmt.Fprintf(tw, "%s\t", f.name)
	}
	fmt.Fprintln(tw)
	for _, run := range runs {
		r := run.Resources
		if r == nil {
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.1f\t", run.Round, run.Target, r.Keys, r.Revisions, r.LoadSecs)
		for _, f := range resourceFigures {
			fmt.Fprintf(tw, "%s\t", f.format(f.get(r)))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	ratios, rounds := resourceRatios(runs)
	var parts []string
	for i, f := range resourceFigures {
		parts = append(parts, fmt.Sprintf("%s %.2fx", f.name, ratios[i]))
	}
	verdict := "met"
	if !resourcesMet(ratios, rounds) {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "median of per-round ratios, strata/etcd (lower is better): %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "bar: each <= 1.00x: %s\n", verdict)
}

// runResources loads the cluster, then measures it: memory and disk,
// restart to ready, and disk after compact and defrag. The load's summary
// is the run's (throughput: load puts a second).
func runResources(ctx context.Context, cfg Config, c *procCluster, run *BenchRun) (*Resources, error) {
	o := cfg.Options
	res := &Resources{Keys: o.ResourceKeys, Revisions: o.ResourceRevisions}
	start := time.Now()
	load := flagArgs("conns", o.Conns, "clients", o.Clients)
	load = append(load, "--precise", "put", "--sequential-keys")
	load = append(load, flagArgs("key-size", o.ResourceKeySize, "val-size", o.ValSize,
		"key-space-size", o.ResourceKeys, "total", o.ResourceKeys)...)
	run.BenchArgs = load
	s, err := benchOnce(ctx, cfg, c, load, run)
	if err != nil {
		return nil, err
	}
	run.Summary = s
	if o.ResourceRevisions > 0 {
		more := flagArgs("conns", o.Conns, "clients", o.Clients)
		more = append(more, "put")
		more = append(more, flagArgs("key-size", o.ResourceKeySize, "val-size", o.ValSize,
			"key-space-size", o.ResourceKeys, "total", o.ResourceRevisions)...)
		if _, err := benchOnce(ctx, cfg, c, more, run); err != nil {
			return nil, err
		}
	}
	res.LoadSecs = time.Since(start).Seconds()
	settle(ctx)
	if res.RSS, err = c.rss(); err != nil {
		return nil, err
	}
	if res.Disk, err = c.du(); err != nil {
		return nil, err
	}

	c.stop()
	start = time.Now()
	if err := c.launch(); err != nil {
		return nil, err
	}
	// A large store takes a while to open: its index is rebuilt.
	if err := c.waitHealthy(ctx, 5*time.Millisecond, cfg.RunTimeout); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	res.RestartSecs = time.Since(start).Seconds()
	settle(ctx)
	if res.RestartRSS, err = c.rss(); err != nil {
		return nil, err
	}

	rev, err := currentRevision(ctx, cfg, c)
	if err != nil {
		return nil, err
	}
	if err := compactPhysical(ctx, cfg, c, rev); err != nil {
		return nil, err
	}
	if _, err := etcdctl(ctx, cfg, c, "defrag"); err != nil {
		return nil, err
	}
	if res.CompactDisk, err = c.du(); err != nil {
		return nil, err
	}
	return res, nil
}

// settle gives the servers a second to finish what the last requests
// started (background commits, the Go runtime's scavenger) before a
// measurement.
func settle(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

// benchOnce runs the benchmark tool with args after --endpoints and
// returns its summary; the tool's warnings go into run.Stderr.
func benchOnce(ctx context.Context, cfg Config, c *procCluster, args []string, run *BenchRun) (BenchSummary, error) {
	rctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
	defer cancel()
	eps := strings.Join(c.endpoints(), ",")
	cmd := exec.CommandContext(rctx, cfg.Bench, append(append([]string{"--endpoints=" + eps}, cfg.tls.clientArgs()...), args...)...)
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 1 << 20}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	err := cmd.Run()
	run.Stderr = append(run.Stderr, benchStderr(stderr.String(), 20)...)
	if err != nil {
		return BenchSummary{}, fmt.Errorf("%s %s: %w", cfg.Bench, strings.Join(args, " "), err)
	}
	out, err := ParseEtcdBenchOutput(bytes.NewReader(stdout.Bytes()))
	if err != nil {
		return BenchSummary{}, err
	}
	s, ok := out[""]
	if !ok || s.ReqPerSec == 0 {
		return BenchSummary{}, fmt.Errorf("bench %s: no summary or every request failed", strings.Join(args, " "))
	}
	if n := s.Failed(); n > 0 {
		return BenchSummary{}, fmt.Errorf("bench %s: %d requests failed", strings.Join(args, " "), n)
	}
	return s, nil
}

// etcdctl runs etcdctl against every member, with a timeout long enough
// for a defrag of a large store.
func etcdctl(ctx context.Context, cfg Config, c *procCluster, args ...string) ([]byte, error) {
	all := append([]string{"--endpoints=" + strings.Join(c.endpoints(), ","), "--command-timeout=30m"}, cfg.tls.clientArgs()...)
	cmd := exec.CommandContext(ctx, cfg.Etcdctl, append(all, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", cfg.Etcdctl, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// compactPhysical compacts at rev and waits until the compaction is done
// on disk. Strata bounds a physical compaction's wait by its request
// timeout (etcd waits for it without one); when the call times out, it is
// made again: once the compaction is done, it fails with "required
// revision has been compacted".
func compactPhysical(ctx context.Context, cfg Config, c *procCluster, rev int64) error {
	for range 200 {
		_, err := etcdctl(ctx, cfg, c, "compact", fmt.Sprint(rev), "--physical")
		switch {
		case err == nil:
			return nil
		case strings.Contains(err.Error(), "required revision has been compacted"):
			return nil
		case !strings.Contains(err.Error(), "request timed out"):
			return err
		}
	}
	return fmt.Errorf("compact %d --physical: still timing out", rev)
}

// currentRevision asks the first member for the store's revision.
func currentRevision(ctx context.Context, cfg Config, c *procCluster) (int64, error) {
	out, err := etcdctl(ctx, cfg, c, "get", RangeKey, "--write-out=json")
	if err != nil {
		return 0, err
	}
	var resp struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return 0, fmt.Errorf("etcdctl get --write-out=json: %w", err)
	}
	if resp.Header.Revision <= 0 {
		return 0, errors.New("etcdctl get --write-out=json: no revision in the header")
	}
	return resp.Header.Revision, nil
}

// rss sums the members' resident set sizes.
func (c *procCluster) rss() (int64, error) {
	var sum int64
	for _, pid := range c.pids() {
		n, err := bench.ReadRSS(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// du sums the size of the members' data directories.
func (c *procCluster) du() (int64, error) {
	var sum int64
	for _, d := range c.dirs {
		n, err := bench.DU(d)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}
